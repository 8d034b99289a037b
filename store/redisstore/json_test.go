package redisstore

import (
	"encoding/json"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/refgate/refgate/attribution"
)

// TestClickJSONMatchesStd: RecordClicks encodes with goccy/go-json and
// VisitorClick decodes with encoding/json; the bytes must be the same.
func TestClickJSONMatchesStd(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	for _, c := range []attribution.Click{
		{ID: "c1", Program: "p", Promoter: "alice", Link: "x1", Visitor: "v1", At: at, ExpiresAt: at.Add(time.Hour), Model: attribution.LastClick, Outcome: attribution.OutcomeAttributed},
		{ID: "c<2>&", Program: "p", Link: "x", At: at.In(time.FixedZone("x", 3600)), Outcome: attribution.OutcomeBot},
		{},
	} {
		want, _ := json.Marshal(&c)
		got, err := gojson.Marshal(&c)
		if err != nil || string(got) != string(want) {
			t.Errorf("got %s %v\nwant %s", got, err, want)
		}
	}
}
