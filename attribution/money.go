package attribution

import (
	"math"
	"math/bits"
)

// MaxAmount is the largest order amount accepted, in minor units (10^15,
// e.g. ten trillion yuan in fen). Within it every commission and refund
// proportion is computed exactly: amount × a combined rate of at most
// 2 × RateScale is below 2^64 before the division, and so is granted × kept
// for a commission of at most 2 × MaxAmount and kept ≤ MaxAmount.
const MaxAmount int64 = 1_000_000_000_000_000

// MulDivHalfUp returns a × b / c rounded half up (a remainder of exactly
// half rounds away from zero). The product is held in 128 bits, so it never
// overflows. It needs a ≥ 0, b ≥ 0 and c > 0; ok is false, with a result of
// 0, if they are not or if the rounded quotient does not fit in an int64.
//
// It serves both commission (a = amount, b = rate, c = RateScale) and a
// refund's proportion (a = granted, b = kept, c = amount).
func MulDivHalfUp(a, b, c int64) (int64, bool) {
	if a < 0 || b < 0 || c <= 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) { // quotient ≥ 2^64; bits.Div64 would panic
		return 0, false
	}
	q, rem := bits.Div64(hi, lo, uint64(c))
	if q > math.MaxInt64 {
		return 0, false
	}
	// rem < c ≤ MaxInt64, so rem ≥ c - rem is 2·rem ≥ c without overflow.
	if rem >= uint64(c)-rem {
		if q == math.MaxInt64 {
			return 0, false
		}
		q++
	}
	return int64(q), true
}

// AddCapped returns a + b, saturated at math.MaxInt64 and math.MinInt64
// instead of wrapping: a running total (such as a customer's cap use) can
// only stick at the bound, never turn negative.
func AddCapped(a, b int64) int64 {
	s := a + b
	switch {
	case a > 0 && b > 0 && s < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && s >= 0:
		return math.MinInt64
	}
	return s
}
