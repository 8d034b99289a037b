package cookie

import (
	"bytes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
)

// Errors Verify returns.
var (
	ErrInvalid = errors.New("token invalid")
	ErrExpired = errors.New("token expired")
)

// Token is what an attribution cookie says: a click on a link of a program,
// by a visitor, valid from Issued until Expires. Times have one-second
// precision.
type Token struct {
	Program  string
	Promoter string
	Link     string
	Click    string
	Visitor  string
	Issued   time.Time
	Expires  time.Time
}

const (
	version  = '1'
	macLen   = 16
	maxToken = 1024 // a cookie value; anything longer is not ours
	maxField = 255
)

var b64 = base64.RawURLEncoding.Strict()

// Key is one signing key.
type Key struct {
	ID     string
	Secret []byte
}

type signingKey struct {
	id     string
	prefix []byte // "1.<kid>."
	pool   sync.Pool
	aead   cipher.AEAD // Seal's; safe for concurrent use
}

// macState is a pooled HMAC with the buffer its sum goes to: a sum buffer on
// the stack would escape through the hash.Hash interface and allocate.
type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// mac returns the first macLen bytes of HMAC-SHA256 over msg.
func (k *signingKey) mac(msg []byte, out *[macLen]byte) {
	st := k.pool.Get().(*macState)
	st.h.Reset()
	st.h.Write(msg)
	st.h.Sum(st.sum[:0])
	copy(out[:], st.sum[:macLen])
	k.pool.Put(st)
}

// Signer signs with the first of its keys and verifies with any of them.
// It is safe for concurrent use.
type Signer struct {
	keys []*signingKey
}

// NewSigner returns a Signer over keys; the first signs. Key ids are 1 to 16
// bytes of [A-Za-z0-9_-], secrets at least 16 bytes, ids unique.
func NewSigner(keys []Key) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no cookie key")
	}
	s := &Signer{}
	seen := map[string]bool{}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("cookie key id %q appears twice", k.ID)
		}
		seen[k.ID] = true
		secret := bytes.Clone(k.Secret)
		sk := &signingKey{id: k.ID, prefix: []byte(string(version) + "." + k.ID + "."), aead: sealAEAD(secret)}
		// HMAC states are pooled: hmac.New allocates ~500 bytes and the click
		// path signs once per click.
		sk.pool.New = func() any { return &macState{h: hmac.New(sha256.New, secret)} }
		s.keys = append(s.keys, sk)
	}
	return s, nil
}

func checkKey(k Key) error {
	if len(k.ID) == 0 || len(k.ID) > 16 {
		return fmt.Errorf("cookie key id %q must be 1 to 16 characters", k.ID)
	}
	for i := 0; i < len(k.ID); i++ {
		c := k.ID[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("cookie key id %q must use only A-Z a-z 0-9 _ -", k.ID)
		}
	}
	if len(k.Secret) < 16 {
		return fmt.Errorf("cookie key %q: secret must be at least 16 bytes", k.ID)
	}
	return nil
}

// ParseKeys reads "kid:secret,kid2:secret2", the --cookie-keys syntax.
func ParseKeys(s string) ([]Key, error) {
	var keys []Key
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, secret, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("cookie key %q: want kid:secret", redact(part))
		}
		k := Key{ID: id, Secret: []byte(secret)}
		if err := checkKey(k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no cookie key in list")
	}
	return keys, nil
}

func redact(s string) string {
	if id, _, ok := strings.Cut(s, ":"); ok {
		return id + ":***"
	}
	return "***"
}

// SigningKeyID is the id of the key new tokens are signed with.
func (s *Signer) SigningKeyID() string { return s.keys[0].id }

// AppendToken appends the signed text form of t to dst and returns the
// extended slice. It fails only when a field is longer than 255 bytes.
func (s *Signer) AppendToken(dst []byte, t *Token) ([]byte, error) {
	if n := max(len(t.Program), len(t.Promoter), len(t.Link), len(t.Click), len(t.Visitor)); n > maxField {
		return dst, fmt.Errorf("token field of %d bytes is over %d", n, maxField)
	}
	if t.Expires.Before(t.Issued) {
		return dst, errors.New("token expires before it is issued")
	}
	// The payload is built in dst's spare room, then encoded after it and
	// moved down over it: a reused dst needs no allocation, and the stack no
	// payload-sized array (every connection's goroutine would keep it).
	start := len(dst)
	dst = binary.AppendUvarint(dst, uint64(t.Issued.Unix()))
	dst = binary.AppendUvarint(dst, uint64(t.Expires.Unix()-t.Issued.Unix()))
	dst = appendField(dst, t.Program)
	dst = appendField(dst, t.Promoter)
	dst = appendField(dst, t.Link)
	dst = appendField(dst, t.Click)
	dst = appendField(dst, t.Visitor)
	payload := len(dst) - start
	k := s.keys[0]
	dst = append(dst, k.prefix...)
	dst = b64.AppendEncode(dst, dst[start:start+payload])
	n := copy(dst[start:], dst[start+payload:])
	dst = dst[:start+n]
	var sum [macLen]byte
	k.mac(dst[start:], &sum)
	dst = append(dst, '.')
	return b64.AppendEncode(dst, sum[:]), nil
}

func appendField(dst []byte, f string) []byte {
	dst = append(dst, byte(len(f)))
	return append(dst, f...)
}

// Verify checks tok's signature with any key and its expiry against now, and
// decodes it into t. It returns ErrInvalid for anything that is not a token
// this Signer's keys made (unknown key, changed byte, bad encoding) and
// ErrExpired for a genuine token at or past its expiry. t's strings are
// fresh copies; tok is not retained.
func (s *Signer) Verify(tok []byte, now time.Time, t *Token) error {
	if len(tok) > maxToken || len(tok) < 4 || tok[0] != version || tok[1] != '.' {
		return ErrInvalid
	}
	lastDot := bytes.LastIndexByte(tok, '.')
	kidEnd := bytes.IndexByte(tok[2:], '.') + 2
	if kidEnd < 2 || lastDot <= kidEnd {
		return ErrInvalid
	}
	var k *signingKey
	for _, c := range s.keys {
		if string(tok[:kidEnd+1]) == string(c.prefix) {
			k = c
			break
		}
	}
	if k == nil {
		return ErrInvalid
	}
	encMAC := tok[lastDot+1:]
	if len(encMAC) != b64.EncodedLen(macLen) {
		return ErrInvalid
	}
	var got [macLen]byte
	n, err := b64.Decode(got[:], encMAC)
	if err != nil || n != macLen {
		return ErrInvalid
	}
	var sum [macLen]byte
	k.mac(tok[:lastDot], &sum)
	if !hmac.Equal(sum[:], got[:]) {
		return ErrInvalid
	}
	// Authentic from here on: the payload is ours, but decode it defensively
	// all the same (an old key may have signed an older layout).
	var raw [maxToken]byte // len(tok) <= maxToken, so the payload fits
	n, err = b64.Decode(raw[:], tok[kidEnd+1:lastDot])
	if err != nil {
		return ErrInvalid
	}
	if err := decodePayload(raw[:n], t); err != nil {
		return err
	}
	if !now.Before(t.Expires) {
		return ErrExpired
	}
	return nil
}

func decodePayload(p []byte, t *Token) error {
	issued, n := binary.Uvarint(p)
	if n <= 0 || issued > 1<<40 {
		return ErrInvalid
	}
	p = p[n:]
	ttl, n := binary.Uvarint(p)
	if n <= 0 || ttl > 1<<32 {
		return ErrInvalid
	}
	p = p[n:]
	var fields [5]string
	for i := range fields {
		if len(p) == 0 || int(p[0]) > len(p)-1 {
			return ErrInvalid
		}
		fields[i] = string(p[1 : 1+p[0]])
		p = p[1+p[0]:]
	}
	if len(p) != 0 {
		return ErrInvalid
	}
	*t = Token{
		Issued:   time.Unix(int64(issued), 0).UTC(),
		Expires:  time.Unix(int64(issued+ttl), 0).UTC(),
		Program:  fields[0],
		Promoter: fields[1],
		Link:     fields[2],
		Click:    fields[3],
		Visitor:  fields[4],
	}
	return nil
}
