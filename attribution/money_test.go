package attribution

import (
	"math"
	"math/big"
	"testing"
)

// mulDivHalfUpBig is MulDivHalfUp done with math/big: the reference the
// fuzz tests compare against, and the rival in BenchmarkMulDivHalfUp.
func mulDivHalfUpBig(a, b, c int64) (int64, bool) {
	if a < 0 || b < 0 || c <= 0 {
		return 0, false
	}
	n := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	d := big.NewInt(c)
	q, r := n.QuoRem(n, d, new(big.Int))
	if r.Lsh(r, 1).Cmp(d) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, false
	}
	return q.Int64(), true
}

// rateApplyBig is Rate.Apply's documented contract done with math/big.
func rateApplyBig(r Rate, amount int64) int64 {
	if amount <= 0 || r <= 0 {
		return 0
	}
	if v, ok := mulDivHalfUpBig(amount, int64(r), RateScale); ok {
		return v
	}
	return math.MaxInt64
}

const maxRate = 2 * RateScale // a base rate plus a tier bonus, each at most 1

// thirdOfMaxUint64 × 3 is 2^64 - 1, so over 2 it is MaxInt64 + ½.
const thirdOfMaxUint64 = 6148914691236517205

func TestMulDivHalfUp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		a, b, c int64
		want    int64
		ok      bool
	}{
		// commission: amount × rate / RateScale
		{"10000 × 0.29", 10000, 290000, RateScale, 2900, true},
		{"5e9 × 0.30", 5_000_000_000, 300000, RateScale, 1_500_000_000, true},
		{"10^15 × 2.0", MaxAmount, maxRate, RateScale, 2 * MaxAmount, true},
		{"10^15 × 1.0", MaxAmount, RateScale, RateScale, MaxAmount, true},
		{"10^15 × 0.000001", MaxAmount, 1, RateScale, 1_000_000_000, true},
		{"10^15 × 1.999999", MaxAmount, maxRate - 1, RateScale, 1_999_999_000_000_000, true},
		{"(10^15-1) × 1.999999", MaxAmount - 1, maxRate - 1, RateScale, 1_999_998_999_999_998, true}, // …998.000001
		{"0 × 2.0", 0, maxRate, RateScale, 0, true},
		{"10^15 × 0", MaxAmount, 0, RateScale, 0, true},
		{"1 × 0.3 rounds down", 1, 300000, RateScale, 0, true},
		{"1 × 0.499999 rounds down", 1, 499999, RateScale, 0, true},
		{"3 × 0.25 rounds up", 3, 250000, RateScale, 1, true},
		// ties go up (away from zero), not to even
		{"tie 1 × 0.5", 1, 500000, RateScale, 1, true},
		{"tie 3 × 0.5", 3, 500000, RateScale, 2, true},
		{"tie 5 × 0.1", 5, 100000, RateScale, 1, true},
		{"tie 25 × 0.1", 25, 100000, RateScale, 3, true},
		{"tie (10^15-1) × 0.5", MaxAmount - 1, 500000, RateScale, 500_000_000_000_000, true},
		{"tie (10^15-1) × 1.5", MaxAmount - 1, 1_500_000, RateScale, 1_499_999_999_999_999, true}, // …998.5
		{"tie 1/2", 1, 1, 2, 1, true},
		{"1/3 down", 1, 1, 3, 0, true},
		{"2/3 up", 2, 1, 3, 1, true},
		// refund: granted × kept / amount
		{"refund 1.5e9 kept 4e9 of 5e9", 1_500_000_000, 4_000_000_000, 5_000_000_000, 1_200_000_000, true},
		{"refund max granted kept all", 2 * MaxAmount, MaxAmount, MaxAmount, 2 * MaxAmount, true},
		{"refund max granted kept all but 1", 2 * MaxAmount, MaxAmount - 1, MaxAmount, 2*MaxAmount - 2, true},
		{"refund max granted kept 1", 2 * MaxAmount, 1, MaxAmount, 2, true},
		{"refund kept none", 2 * MaxAmount, 0, MaxAmount, 0, true},
		{"refund tie 1 kept 1 of 2", 1, 1, 2, 1, true},
		{"refund tie 3 kept 1 of 2", 3, 1, 2, 2, true},
		{"refund tie big", 2*MaxAmount - 1, MaxAmount / 2, MaxAmount, MaxAmount, true}, // 999999999999999.5
		{"refund 1 kept 10^15-1 of 10^15", 1, MaxAmount - 1, MaxAmount, 1, true},
		{"refund 1 kept 1 of 10^15", 1, 1, MaxAmount, 0, true},
		// the int64 edges
		{"MaxInt64 × 1 / 1", math.MaxInt64, 1, 1, math.MaxInt64, true},
		{"MaxInt64 × MaxInt64 / MaxInt64", math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64, true},
		{"MaxInt64 × 2 / 2", math.MaxInt64, 2, 2, math.MaxInt64, true},
		{"MaxInt64 × 3 / 2 overflows", math.MaxInt64, 3, 2, 0, false},
		{"MaxInt64 × MaxInt64 / 1 overflows", math.MaxInt64, math.MaxInt64, 1, 0, false},
		{"2^62 × 8 / 2: quotient ≥ 2^64", 1 << 62, 8, 2, 0, false},
		{"(2^64-1) / 2 = MaxInt64 + ½ rounds past int64", 3, thirdOfMaxUint64, 2, 0, false},
		{"(2^64-2) / 2 = MaxInt64 exactly", 2, math.MaxInt64, 2, math.MaxInt64, true},
		{"(2^64-1) / 3", 3, thirdOfMaxUint64, 3, thirdOfMaxUint64, true},
		// out of domain
		{"negative a", -1, 1, 1, 0, false},
		{"negative b", 1, -1, 1, 0, false},
		{"zero c", 1, 1, 0, 0, false},
		{"negative c", 1, 1, -1, 0, false},
		{"MinInt64 a", math.MinInt64, 1, 1, 0, false},
	} {
		got, ok := MulDivHalfUp(tc.a, tc.b, tc.c)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: MulDivHalfUp(%d, %d, %d) = %d, %v; want %d, %v", tc.name, tc.a, tc.b, tc.c, got, ok, tc.want, tc.ok)
		}
		if bg, bok := mulDivHalfUpBig(tc.a, tc.b, tc.c); bg != tc.want || bok != tc.ok {
			t.Errorf("%s: math/big reference = %d, %v; want %d, %v", tc.name, bg, bok, tc.want, tc.ok)
		}
	}
}

func TestRateApply(t *testing.T) {
	for _, tc := range []struct {
		r      Rate
		amount int64
		want   int64
	}{
		{290000, 10000, 2900},
		{300000, 5_000_000_000, 1_500_000_000},
		{maxRate, MaxAmount, 2 * MaxAmount},
		{500000, 1, 1},
		{500000, 3, 2},
		{100000, 25, 3},
		{300000, 1, 0},
		{0, MaxAmount, 0},
		{RateScale, 0, 0},
		// past ~9.2e12 the old amount × r wrapped
		{RateScale, 9_300_000_000_000, 9_300_000_000_000},
		{290000, MaxAmount, 290_000_000_000_000},
		// out of domain: no wrap
		{RateScale, -5, 0},
		{-290000, 10000, 0},
		{maxRate, math.MaxInt64, math.MaxInt64},
		{math.MaxInt64, MaxAmount, math.MaxInt64},
		{RateScale, math.MaxInt64, math.MaxInt64},
	} {
		if got := tc.r.Apply(tc.amount); got != tc.want {
			t.Errorf("Rate(%d).Apply(%d) = %d, want %d", tc.r, tc.amount, got, tc.want)
		}
	}
}

func TestAddCapped(t *testing.T) {
	for _, tc := range []struct{ a, b, want int64 }{
		{1, 2, 3},
		{-1, 2, 1},
		{2 * MaxAmount, 2 * MaxAmount, 4 * MaxAmount},
		{math.MaxInt64, 0, math.MaxInt64},
		{math.MaxInt64, 1, math.MaxInt64},
		{math.MaxInt64 - 1, 1, math.MaxInt64},
		{math.MaxInt64, math.MaxInt64, math.MaxInt64},
		{math.MaxInt64, math.MinInt64, -1},
		{math.MinInt64, -1, math.MinInt64},
		{math.MinInt64, math.MinInt64, math.MinInt64},
		{math.MinInt64 + 1, -1, math.MinInt64},
		{-1, math.MinInt64 + 1, math.MinInt64},
	} {
		if got := AddCapped(tc.a, tc.b); got != tc.want {
			t.Errorf("AddCapped(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := AddCapped(tc.b, tc.a); got != tc.want {
			t.Errorf("AddCapped(%d, %d) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
}

// in maps any int64 onto 0..n-1, so raw fuzz values cover a whole domain.
func in(v int64, n int64) int64 { return int64(uint64(v) % uint64(n)) }

// FuzzMulDivHalfUp compares MulDivHalfUp with math/big. mode 0 takes the
// raw inputs (any int64s, so out of domain and overflow too); mode 1 maps
// them onto the commission domain (amount 0..10^15, rate 0..2e6, c =
// RateScale) and mode 2 onto the refund domain (granted 0..2×10^15, amount
// 1..10^15, kept 0..amount), where the answer must also be ok.
func FuzzMulDivHalfUp(f *testing.F) {
	edges := []int64{0, 1, 2, 3, RateScale / 2, RateScale, maxRate - 1, maxRate,
		MaxAmount / 2, MaxAmount - 1, MaxAmount, 2*MaxAmount - 1, 2 * MaxAmount, thirdOfMaxUint64,
		1 << 62, math.MaxInt64 - 1, math.MaxInt64, -1, math.MinInt64}
	for _, a := range edges {
		for _, b := range []int64{0, 1, maxRate, MaxAmount - 1, MaxAmount, math.MaxInt64, -1} {
			for mode := range uint8(3) {
				f.Add(a, b, MaxAmount, mode)
				f.Add(a, b, int64(RateScale), mode)
			}
		}
	}
	f.Add(int64(1_500_000_000), int64(4_000_000_000), int64(5_000_000_000), uint8(0))
	f.Add(int64(3), int64(thirdOfMaxUint64), int64(2), uint8(0))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), int64(1), uint8(0))
	f.Fuzz(func(t *testing.T, a, b, c int64, mode uint8) {
		mustFit := true
		switch mode % 3 {
		case 0:
			mustFit = false
		case 1: // commission
			a, b, c = in(a, MaxAmount+1), in(b, maxRate+1), RateScale
		case 2: // refund: a = granted, b = kept, c = amount
			c = 1 + in(c, MaxAmount)
			a, b = in(a, 2*MaxAmount+1), in(b, c+1)
		}
		got, ok := MulDivHalfUp(a, b, c)
		want, wok := mulDivHalfUpBig(a, b, c)
		if got != want || ok != wok {
			t.Fatalf("MulDivHalfUp(%d, %d, %d) = %d, %v; math/big says %d, %v", a, b, c, got, ok, want, wok)
		}
		if mustFit && !ok {
			t.Fatalf("MulDivHalfUp(%d, %d, %d) not ok inside the allowed domain", a, b, c)
		}
	})
}

// FuzzRateApply compares Rate.Apply with math/big, on raw inputs and on
// the allowed domain (amount 0..10^15, rate 0..2e6), where it must never
// saturate.
func FuzzRateApply(f *testing.F) {
	for _, amount := range []int64{0, 1, 3, 10000, 9_300_000_000_000, MaxAmount - 1, MaxAmount, math.MaxInt64, -1, math.MinInt64} {
		for _, r := range []int64{0, 1, 290000, RateScale / 2, RateScale, maxRate - 1, maxRate, math.MaxInt64, -1} {
			f.Add(amount, r, false)
			f.Add(amount, r, true)
		}
	}
	f.Fuzz(func(t *testing.T, amount, r int64, domain bool) {
		if domain {
			amount, r = in(amount, MaxAmount+1), in(r, maxRate+1)
		}
		got := Rate(r).Apply(amount)
		if want := rateApplyBig(Rate(r), amount); got != want {
			t.Fatalf("Rate(%d).Apply(%d) = %d; math/big says %d", r, amount, got, want)
		}
		if domain && (got < 0 || got > 2*MaxAmount) {
			t.Fatalf("Rate(%d).Apply(%d) = %d, outside 0..2×MaxAmount", r, amount, got)
		}
	})
}
