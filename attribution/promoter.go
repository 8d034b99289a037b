package attribution

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unsafe"

	"github.com/nyaruka/phonenumbers"
)

// Promoter statuses.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// Fingerprints are identity data in the clear, as the API receives them. They
// are normalised and hashed (Hash) before anything keeps them.
type Fingerprints struct {
	IPs       []string `json:"ips,omitempty"`
	Phones    []string `json:"phones,omitempty"`
	Emails    []string `json:"emails,omitempty"`
	IDNumbers []string `json:"id_numbers,omitempty"`
	Devices   []string `json:"devices,omitempty"`
}

// Fingerprint kinds, the prefixes of a FingerprintSet's entries.
const (
	FPIP       = "ip"
	FPPhone    = "phone"
	FPEmail    = "email"
	FPIDNumber = "id"
	FPDevice   = "device"
)

// FingerprintSet is a sorted set of keyed hashes "kind:hash". Two sets that
// share an entry belong to the same person (docs/rules.md "Same person").
type FingerprintSet []string

// Promoter is someone who shares links and earns commission.
type Promoter struct {
	ID           string         `json:"id"`
	Status       string         `json:"status"`
	Tier         int            `json:"tier"`
	Fingerprints FingerprintSet `json:"fingerprint_hashes,omitempty"` // keyed hashes; the API never echoes them
	// TokensRevokedAt is when the promoter's tokens were last revoked:
	// a promoter token issued at or before it is refused. A PUT of the
	// promoter keeps it.
	TokensRevokedAt *time.Time `json:"tokens_revoked_at,omitempty"`
}

// Validate reports a bad id, status or tier as an *Error with code EInvalid.
// An empty status is taken as active.
func (p *Promoter) Validate() error {
	if err := checkID("promoter id", p.ID); err != nil {
		return err
	}
	if p.Status == "" {
		p.Status = StatusActive
	}
	if p.Status != StatusActive && p.Status != StatusSuspended {
		return Errorf(EInvalid, "status must be %q or %q, got %q", StatusActive, StatusSuspended, p.Status)
	}
	if p.Tier < 0 || p.Tier > 100 {
		return Errorf(EInvalid, "tier must be between 0 and 100, got %d", p.Tier)
	}
	return nil
}

// Normalize functions bring each kind of fingerprint to one form, so that
// " Bob@Example.com" and "bob@example.com", or "+86 138-0000-0000" and
// "13800000000", hash alike. They return "" for a value that is not one of
// its kind (Hash reports it as invalid); a value they return normalises to
// itself again.
func NormalizeIP(s string) string {
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return ""
	}
	return ip.Unmap().WithZone("").String()
}

// DefaultPhoneRegion is the region whose national numbers a phone written
// without "+" or "00" is read as, unless the hasher is given another.
const DefaultPhoneRegion = "CN"

// ValidPhoneRegion reports whether region (a two-letter region code such as
// "CN" or "us") is one that phonenumbers has metadata for.
func ValidPhoneRegion(region string) bool {
	return phonenumbers.GetSupportedRegions()[strings.ToUpper(region)]
}

// NormalizePhone returns s in E.164 ("+8613800000000"). A number that starts
// with "+" or "00" is international; any other is a national number of
// region (any case), so with region "CN" "+86 138-0000-0000", "008613800000000" and
// "138 0000 0000" are one phone. It returns "" for anything phonenumbers
// cannot parse or that cannot be a number of its length.
func NormalizePhone(s, region string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsFunc(s, unicode.IsDigit) {
		return "" // phonenumbers reads letters as keypad digits: a phone needs a digit of its own
	}
	if rest, ok := strings.CutPrefix(s, "00"); ok {
		s = "+" + rest // "00" is the international prefix whatever the region's own is
	}
	n, err := phonenumbers.Parse(s, strings.ToUpper(region))
	if err != nil || !phonenumbers.IsPossibleNumber(n) {
		return ""
	}
	e164 := phonenumbers.Format(n, phonenumbers.E164)
	// Some nonsense (a run of zeros, say) formats to a string that parses
	// as another number; a phone that is not its own normal form is none.
	if back, err := phonenumbers.Parse(e164, "ZZ"); err != nil || phonenumbers.Format(back, phonenumbers.E164) != e164 {
		return ""
	}
	return e164
}

// NormalizeEmail trims and lower-cases s. It returns "" unless s is a
// plausible address: one "@" between a non-empty local part and domain, no
// spaces or control characters.
func NormalizeEmail(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") ||
		strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return ""
	}
	return s
}

func NormalizeIDNumber(s string) string {
	// Upper-casing first also replaces invalid UTF-8, whose pieces could
	// otherwise join into a space once the fields are put together.
	return strings.Join(strings.Fields(strings.ToUpper(s)), "")
}

func NormalizeDevice(s string) string { return strings.TrimSpace(s) }

// FingerprintHasher turns normalised identity data into keyed hashes, so a
// leaked store does not leak phone numbers. The key must be the same on every
// instance that shares a store. It is safe for concurrent use.
type FingerprintHasher struct {
	pool   sync.Pool // *hmacState: the edge hashes a client IP per click
	region string    // national phone numbers are read as this region's
}

var zeroByte = []byte{0}

type hmacState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// NewFingerprintHasher returns a hasher keyed with key (at least 16 bytes)
// that reads national phone numbers as DefaultPhoneRegion's.
func NewFingerprintHasher(key []byte) *FingerprintHasher {
	h, _ := NewFingerprintHasherWithRegion(key, DefaultPhoneRegion)
	return h
}

// NewFingerprintHasherWithRegion is NewFingerprintHasher reading national
// phone numbers as phoneRegion's ("" = DefaultPhoneRegion). It returns an
// error if ValidPhoneRegion(phoneRegion) is false.
func NewFingerprintHasherWithRegion(key []byte, phoneRegion string) (*FingerprintHasher, error) {
	if phoneRegion == "" {
		phoneRegion = DefaultPhoneRegion
	}
	if !ValidPhoneRegion(phoneRegion) {
		return nil, fmt.Errorf("unknown phone region %q: want a two-letter region code such as CN or US", phoneRegion)
	}
	key = slices.Clone(key)
	h := &FingerprintHasher{region: strings.ToUpper(phoneRegion)}
	h.pool.New = func() any { return &hmacState{h: hmac.New(sha256.New, key)} }
	return h, nil
}

// AppendSum appends the entry "kind:hash" for an already normalised value to
// dst. It does not allocate once warm.
func (h *FingerprintHasher) AppendSum(dst []byte, kind string, normalized []byte) []byte {
	st := h.pool.Get().(*hmacState)
	st.h.Reset()
	st.h.Write(unsafe.Slice(unsafe.StringData(kind), len(kind)))
	st.h.Write(zeroByte) // a literal here would escape through hash.Hash and allocate
	st.h.Write(normalized)
	st.h.Sum(st.sum[:0])
	dst = append(dst, kind...)
	dst = append(dst, ':')
	dst = base64.RawURLEncoding.AppendEncode(dst, st.sum[:16])
	h.pool.Put(st)
	return dst
}

// Sum returns the entry "kind:hash" for an already normalised value.
func (h *FingerprintHasher) Sum(kind, normalized string) string {
	return string(h.AppendSum(nil, kind, []byte(normalized)))
}

// AliasPrefix starts every CustomerAlias.
const AliasPrefix = "erased:"

// CustomerAlias is the keyed hash that stands for customer id in what is
// kept of it once it is erased (its orders): "erased:" and 22 characters of
// URL-safe base64, itself a valid customer id. The same id gives the same
// alias under the same key, so that an order of an erased customer
// reported again is recognised as theirs; without the key the id cannot be
// recovered from it, nor checked against a guess.
func (h *FingerprintHasher) CustomerAlias(id string) string {
	return string(h.AppendSum(nil, AliasPrefix[:len(AliasPrefix)-1], []byte(id)))
}

// IP returns the entry for an IP address, or "" if ip is not one.
func (h *FingerprintHasher) IP(ip string) string {
	n := NormalizeIP(ip)
	if n == "" {
		return ""
	}
	return h.Sum(FPIP, n)
}

// Hash normalises and hashes every value of f into a sorted set without
// duplicates. A value that does not normalise (see the Normalize functions;
// an empty string, an ID number or device of only spaces) is an *Error with
// code EInvalid that names it, such as
// `fingerprints.ips[1]: "999.1.1.1" is not an IP address`, and no set.
func (h *FingerprintHasher) Hash(f Fingerprints) (FingerprintSet, error) {
	var set FingerprintSet
	kinds := [...]struct {
		kind, field, want string
		vals              []string
		norm              func(string) string
	}{
		{FPIP, "ips", "is not an IP address", f.IPs, NormalizeIP},
		{FPPhone, "phones", "is not a phone number", f.Phones, h.normalizePhone},
		{FPEmail, "emails", "is not an e-mail address", f.Emails, NormalizeEmail},
		{FPIDNumber, "id_numbers", "is empty", f.IDNumbers, NormalizeIDNumber},
		{FPDevice, "devices", "is empty", f.Devices, NormalizeDevice},
	}
	for _, k := range kinds {
		for i, v := range k.vals {
			n := k.norm(v)
			if n == "" {
				return nil, Errorf(EInvalid, "fingerprints.%s[%d]: %q %s", k.field, i, v, k.want)
			}
			set = append(set, h.Sum(k.kind, n))
		}
	}
	slices.Sort(set)
	return slices.Compact(set), nil
}

func (h *FingerprintHasher) normalizePhone(s string) string { return NormalizePhone(s, h.region) }

// Has reports whether s holds entry.
func (s FingerprintSet) Has(entry string) bool {
	_, ok := slices.BinarySearch(s, entry)
	return ok
}

// HasBytes is Has for an entry held in a byte slice, without converting it.
func (s FingerprintSet) HasBytes(entry []byte) bool {
	i, j := 0, len(s)
	for i < j {
		m := int(uint(i+j) >> 1)
		if s[m] < string(entry) { // no allocation: comparison only
			i = m + 1
		} else {
			j = m
		}
	}
	return i < len(s) && s[i] == string(entry)
}

// Shares reports whether s and o have an entry in common.
func (s FingerprintSet) Shares(o FingerprintSet) bool {
	for i, j := 0, 0; i < len(s) && j < len(o); {
		switch strings.Compare(s[i], o[j]) {
		case 0:
			return true
		case -1:
			i++
		default:
			j++
		}
	}
	return false
}
