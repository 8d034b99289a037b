package embedded

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/refgate/refgate/attribution"
)

// BenchmarkRecordClicks writes batches of 512 attributed clicks, each of a
// new visitor, over 64 links of 4 promoters: the load generator's mix.
func BenchmarkRecordClicks(b *testing.B) {
	st, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const batch = 512
	clicks := make([]attribution.Click, batch)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	v := 0
	for i := 0; i < b.N; i++ {
		for j := range clicks {
			v++
			l := (v * 7919) % 64
			clicks[j] = attribution.Click{ID: "c" + strconv.Itoa(v), Program: "shop", Promoter: "p" + strconv.Itoa(l%4),
				Link: fmt.Sprintf("link-%02d", l), Visitor: "v" + strconv.Itoa(v), At: now, ExpiresAt: now.Add(time.Hour),
				Outcome: attribution.OutcomeAttributed}
		}
		if err := st.RecordClicks(b.Context(), "b"+strconv.Itoa(i), clicks); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/click")
}
