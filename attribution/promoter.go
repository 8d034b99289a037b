package attribution

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"unsafe"
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
// share an entry belong to the same person (RULES.md "Same person").
type FingerprintSet []string

// Promoter is someone who shares links and earns commission.
type Promoter struct {
	ID           string         `json:"id"`
	Status       string         `json:"status"`
	Tier         int            `json:"tier"`
	Fingerprints FingerprintSet `json:"fingerprint_hashes,omitempty"` // keyed hashes; the API never echoes them
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
// "8613800000000", hash alike. They return "" for a value that holds nothing.
func NormalizeIP(s string) string {
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return ""
	}
	return ip.Unmap().WithZone("").String()
}

func NormalizePhone(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func NormalizeIDNumber(s string) string {
	return strings.ToUpper(strings.Join(strings.Fields(s), ""))
}

func NormalizeDevice(s string) string { return strings.TrimSpace(s) }

// FingerprintHasher turns normalised identity data into keyed hashes, so a
// leaked store does not leak phone numbers. The key must be the same on every
// instance that shares a store. It is safe for concurrent use.
type FingerprintHasher struct {
	pool sync.Pool // *hmacState: the edge hashes a client IP per click
}

var zeroByte = []byte{0}

type hmacState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// NewFingerprintHasher returns a hasher keyed with key (at least 16 bytes).
func NewFingerprintHasher(key []byte) *FingerprintHasher {
	key = slices.Clone(key)
	h := &FingerprintHasher{}
	h.pool.New = func() any { return &hmacState{h: hmac.New(sha256.New, key)} }
	return h
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

// IP returns the entry for an IP address, or "" if ip is not one.
func (h *FingerprintHasher) IP(ip string) string {
	n := NormalizeIP(ip)
	if n == "" {
		return ""
	}
	return h.Sum(FPIP, n)
}

// Hash normalises and hashes every value of f into a sorted set without
// duplicates. Values that normalise to nothing are dropped.
func (h *FingerprintHasher) Hash(f Fingerprints) FingerprintSet {
	var set FingerprintSet
	add := func(kind string, vals []string, norm func(string) string) {
		for _, v := range vals {
			if n := norm(v); n != "" {
				set = append(set, h.Sum(kind, n))
			}
		}
	}
	add(FPIP, f.IPs, NormalizeIP)
	add(FPPhone, f.Phones, NormalizePhone)
	add(FPEmail, f.Emails, NormalizeEmail)
	add(FPIDNumber, f.IDNumbers, NormalizeIDNumber)
	add(FPDevice, f.Devices, NormalizeDevice)
	slices.Sort(set)
	return slices.Compact(set)
}

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
