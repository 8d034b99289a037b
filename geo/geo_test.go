package geo

import (
	"context"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refgate/refgate/internal/geotest"
)

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	city, asn := filepath.Join(dir, "City.mmdb"), filepath.Join(dir, "ASN.mmdb")
	geotest.WriteCity(t, city, geotest.City{Network: "81.2.69.0/24", Country: "GB", Name: "London"},
		geotest.City{Network: "2001:db8::/32", Country: "DE", Name: "Berlin"})
	geotest.WriteASN(t, asn, geotest.ASN{Network: "81.2.0.0/16", Number: 64500, Org: "Example Net"})
	d, err := Open(city, asn, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ip   string
		want Result
		ok   bool
	}{
		{"81.2.69.142", Result{"GB", "London", 64500, "Example Net"}, true},
		{"::ffff:81.2.69.142", Result{"GB", "London", 64500, "Example Net"}, true},
		{"81.2.1.1", Result{ASN: 64500, ASOrg: "Example Net"}, true},
		{"2001:db8::1", Result{Country: "DE", City: "Berlin"}, true},
		{"198.51.100.1", Result{}, false},
	} {
		var r Result
		ok := d.Lookup(netip.MustParseAddr(c.ip), &r)
		if ok != c.ok || r != c.want {
			t.Errorf("%s: %+v %v, want %+v %v", c.ip, r, ok, c.want, c.ok)
		}
	}
	// The City path given an ASN file is refused.
	if _, err := Open(asn, "", nil, nil); err == nil {
		t.Error("an ASN database accepted as the City database")
	}
	if _, err := Open(filepath.Join(dir, "missing.mmdb"), "", nil, nil); err == nil {
		t.Error("missing file accepted")
	}
}

// TestHotReload swaps the database file (rename, as geoipupdate does) while
// lookups run on other goroutines: every lookup answers from the old or the
// new database, none fails, and the new one is in use soon after.
func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	city := filepath.Join(dir, "City.mmdb")
	geotest.WriteCity(t, city, geotest.City{Network: "81.2.69.0/24", Country: "GB", Name: "London"})
	d, err := Open(city, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Watch(ctx, 20*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // the watch is in place

	var failed, london, paris atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := netip.MustParseAddr("81.2.69.142")
			for {
				select {
				case <-stop:
					return
				default:
				}
				var r Result
				switch ok := d.Lookup(ip, &r); {
				case ok && r.City == "London":
					london.Add(1)
				case ok && r.City == "Paris":
					paris.Add(1)
				default:
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	geotest.WriteCity(t, city, geotest.City{Network: "81.2.69.0/24", Country: "FR", Name: "Paris"})
	deadline := time.Now().Add(5 * time.Second)
	for paris.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || london.Load() == 0 || paris.Load() == 0 {
		t.Fatalf("lookups: %d London, %d Paris, %d failed", london.Load(), paris.Load(), failed.Load())
	}
	t.Logf("%d lookups before the swap, %d after, 0 failed", london.Load(), paris.Load())
}
