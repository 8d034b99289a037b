package attribution

import (
	"math"
	"strconv"
	"strings"
)

// Rate is a fraction held exactly, in parts per million: 0.29 is 290000.
// Commission arithmetic on rates never goes through a binary float, so
// 10000 × 0.29 is 2900 and not 2899.
type Rate int64

// RateScale is the number of parts a Rate of 1 (100 %) has.
const RateScale = 1_000_000

// ParseRate reads a decimal fraction such as "0.3", "0.025" or "1".
// At most six decimal places are accepted; exponents are not.
func ParseRate(s string) (Rate, error) {
	if s == "" {
		return 0, Errorf(EInvalid, "empty rate")
	}
	neg := false
	if s[0] == '-' {
		neg = true
		s = s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && frac == "") || !allDigits(whole) || !allDigits(frac) {
		return 0, Errorf(EInvalid, "rate %q is not a plain decimal number", s)
	}
	if len(frac) > 6 {
		return 0, Errorf(EInvalid, "rate %q has more than 6 decimal places", s)
	}
	if len(whole) > 6 {
		return 0, Errorf(EInvalid, "rate %q is too large", s)
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	frac += strings.Repeat("0", 6-len(frac))
	f, _ := strconv.ParseInt(frac, 10, 64)
	r := Rate(w*RateScale + f)
	if neg {
		r = -r
	}
	return r, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String formats r as the shortest exact decimal: 290000 is "0.29".
func (r Rate) String() string {
	neg := r < 0
	if neg {
		r = -r
	}
	s := strconv.FormatInt(int64(r/RateScale), 10)
	if f := int64(r % RateScale); f != 0 {
		fs := strconv.FormatInt(f+RateScale, 10)[1:] // zero-padded to 6 digits
		s += "." + strings.TrimRight(fs, "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// MarshalJSON writes r as a JSON number with its exact decimal digits.
func (r Rate) MarshalJSON() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalJSON reads a JSON number (or a string holding one) exactly,
// without a float64 on the way.
func (r *Rate) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := ParseRate(s)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Apply returns amount × r rounded half up to a whole minor unit, amount
// being in minor units. For 0 ≤ amount ≤ MaxAmount and 0 ≤ r ≤ 2 × RateScale
// (a base rate plus a tier bonus, each at most 1) it is exact and cannot
// overflow: the product is held in 128 bits (see MulDivHalfUp). Outside that
// domain it does not wrap either: a negative amount or rate gives 0, and a
// result too large for an int64 saturates at math.MaxInt64. Callers that
// must reject such inputs (with a 422) check them before calling.
func (r Rate) Apply(amount int64) int64 {
	if amount <= 0 || r <= 0 {
		return 0
	}
	c, ok := MulDivHalfUp(amount, int64(r), RateScale)
	if !ok {
		return math.MaxInt64
	}
	return c
}
