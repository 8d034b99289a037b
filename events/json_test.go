package events

import (
	"encoding/json"
	"testing"
	"time"
)

// TestFastJSONMatchesStd: events are encoded with goccy/go-json for speed,
// into a reused buffer; the bytes must be exactly what encoding/json
// writes, escaping included (HTML characters, control characters, invalid
// UTF-8 in a user agent), and earlier records must survive later ones.
func TestFastJSONMatchesStd(t *testing.T) {
	var es encodeState
	var got, want [][]byte
	ts := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	for _, ua := range []string{
		"Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0",
		"<script>alert(1)</script> & \"quotes\" \\ back",
		"ctl \x00\x01\x1f\x7f tab\t nl\n",
		"bad utf8 \xff\xfe \xc3\x28 end",
		"line sep \u2028 para \u2029 emoji 🙂",
	} {
		e := &Event{SpecVersion: "1.0", ID: NewID(), Source: "refgate/h", Type: TypeClick, Subject: "link/x", Time: ts,
			DataContentType: "application/json",
			Data: Data{Program: "p", Promoter: "a", Link: "x", Visitor: "v", Outcome: "attributed", UserAgent: ua,
				Referer: ua, IP: "203.0.113.0", ExpiresAt: &ts, Commission: Int64(3000), Rate: json.RawMessage(`0.3`)}}
		w, err1 := json.Marshal(e)
		g, err2 := es.json(e)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		want, got = append(want, w), append(got, g)
	}
	for i := range got {
		_ = append(got[i], '\n') // a sink appending a newline must not touch the next record
	}
	for i := range want {
		if string(got[i]) != string(want[i]) {
			t.Errorf("record %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func FuzzFastJSONMatchesStd(f *testing.F) {
	f.Add("Mozilla/5.0", "https://t.co/x?a=<b>&c")
	f.Add("\xff\x00<>&\u2028", "")
	f.Fuzz(func(t *testing.T, ua, ref string) {
		e := &Event{ID: "x", Type: TypeClick, Data: Data{UserAgent: ua, Referer: ref}}
		var es encodeState
		want, err1 := json.Marshal(e)
		got, err2 := es.json(e)
		if (err1 == nil) != (err2 == nil) || string(got) != string(want) {
			t.Fatalf("got %s %v\nwant %s %v", got, err2, want, err1)
		}
	})
}
