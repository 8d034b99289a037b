package events

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzLogReplay writes arbitrary bytes as a log segment left by an earlier
// run (a crash can leave anything at its end) and delivers it: no panic,
// every record delivered has an id, every click record a link, and the log
// ends empty.
func FuzzLogReplay(f *testing.F) {
	f.Add([]byte(`{"id":"a","subject":"link/x"}` + "\n" + `{"id":"b"`))
	f.Add([]byte("\n\n{}\n" + `{"id":1}` + "\n"))
	f.Add([]byte(`{"id":"c","type":"refgate.click","subject":"link/x","time":"2026-11-01T00:00:00Z","data":{"program":"p","link":"x","click_id":"k"}}` + "\n"))
	f.Add([]byte(`{"id":"d","type":"refgate.click","time":"not a time","data":{"link":"x","expires_at":1}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "spool-000000001.jsonl"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		sink, st := &testSink{}, newTestStore()
		cfg := testConfig(dir, st, sink)
		cfg.FlushInterval = time.Millisecond
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for p.LogBytes() > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if b := p.LogBytes(); b > 0 {
			t.Fatalf("replay does not progress: %d bytes left", b)
		}
		p.Close(context.Background())
		for _, r := range sink.got {
			if r.ID == "" {
				t.Fatalf("record without an id: %q", r.JSON)
			}
		}
	})
}
