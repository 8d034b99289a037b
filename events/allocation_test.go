//go:build !race

package events

import (
	"github.com/refgate/refgate/attribution"
	"net/netip"
	"testing"
	"time"
)

// TestClickAllocations: queueing a click allocates nothing once the buffer
// has grown, the referer's stripping included. (The writer is held off,
// since AllocsPerRun counts every goroutine's allocations.)
func TestClickAllocations(t *testing.T) {
	cfg := testConfig(t.TempDir(), newTestStore(), nil)
	cfg.WriteInterval, cfg.SyncInterval, cfg.FlushInterval = time.Hour, time.Hour, time.Hour
	cfg.QueueSize = 1 << 20
	p := newPipeline(t, cfg)
	c := click(1)
	seen := &attribution.Seen{IP: netip.MustParseAddr("81.2.69.142"), UserAgent: []byte("Mozilla/5.0 (X11; Linux x86_64)"),
		Referer: []byte("https://reader:pw@blog.example/post?session=5f3a9c#comments")}
	p.Click(c, seen)
	if n := testing.AllocsPerRun(1000, func() { p.Click(c, seen) }); n > 0 {
		t.Errorf("%.1f allocations per queued click, want 0", n)
	}
}
