package attribution

import "testing"

var mulDivSink int64

// BenchmarkMulDivHalfUp measures the math/bits MulDivHalfUp against the
// math/big reference on commission and refund inputs near the top of the
// allowed range (the products need more than 64 bits).
func BenchmarkMulDivHalfUp(b *testing.B) {
	type in3 struct{ a, b, c int64 }
	cases := []struct {
		name string
		in   []in3
	}{
		{"commission", []in3{{MaxAmount, 2 * RateScale, RateScale}, {MaxAmount - 1, 1_999_999, RateScale}, {9_300_000_000_000, 290000, RateScale}, {10000, 290000, RateScale}}},
		{"refund", []in3{{2 * MaxAmount, MaxAmount - 1, MaxAmount}, {1_500_000_000, 4_000_000_000, 5_000_000_000}, {2*MaxAmount - 1, MaxAmount / 2, MaxAmount}, {123_456_789_012, 987_654_321_098, 999_999_999_999_999}}},
	}
	impls := []struct {
		name string
		fn   func(a, b, c int64) (int64, bool)
	}{
		{"bits", MulDivHalfUp},
		{"big", mulDivHalfUpBig},
	}
	for _, tc := range cases {
		for _, im := range impls {
			b.Run(tc.name+"/"+im.name, func(b *testing.B) {
				b.ReportAllocs()
				var s int64
				i := 0
				for b.Loop() {
					x := tc.in[i&3]
					v, _ := im.fn(x.a, x.b, x.c)
					s += v
					i++
				}
				mulDivSink = s
			})
		}
	}
}
