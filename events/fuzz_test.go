package events

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzSpoolReplay writes arbitrary bytes as a spool segment left by an
// earlier run (a crash can leave anything at its end) and replays it: no
// panic, every record returned has an id, and the spool ends empty.
func FuzzSpoolReplay(f *testing.F) {
	f.Add([]byte(`{"id":"a","subject":"link/x"}` + "\n" + `{"id":"b"`))
	f.Add([]byte("\n\n{}\n" + `{"id":1}` + "\n"))
	f.Add([]byte(`{"id":"c","subject":"customer/u1","data":{}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "spool-000000001.jsonl"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		sp, err := OpenSpool(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; !sp.Empty(); i++ {
			if i > len(data)+1 {
				t.Fatalf("replay does not progress: %d bytes left", sp.Bytes())
			}
			recs, pos, err := sp.Peek(3)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.ID == "" {
					t.Fatalf("record without an id: %q", r.JSON)
				}
			}
			sp.Advance(pos)
		}
	})
}
