package cookie

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// PromoterToken is what a promoter's API token says: it reads promoter's
// own data from Issued until Expires. Times have one-microsecond
// precision, so that a token issued right after a revocation (which the
// caller compares Issued with) is told from one issued right before.
type PromoterToken struct {
	Promoter string
	Issued   time.Time
	Expires  time.Time
}

// A promoter token is "p1.KID.PAYLOAD.MAC", signed with the same keys as
// attribution cookies but under its own purpose: its MAC covers
// promoterPurpose before the text, and its prefix differs, so that no
// attribution token (which anyone who clicks a link gets) verifies as a
// promoter token or the other way round. The payload is the issue time in
// Unix microseconds and the lifetime in microseconds (uvarints), then the
// promoter id (one length byte and its bytes).
const (
	promoterVersion = "p1"
	promoterPurpose = "refgate promoter token\x00"
)

// SignPromoter returns the signed text form of t, made with the first key.
// It fails for an empty or too long (over 255 bytes) promoter, and for a
// token that expires before it is issued.
func (s *Signer) SignPromoter(t *PromoterToken) (string, error) {
	if t.Promoter == "" || len(t.Promoter) > maxField {
		return "", fmt.Errorf("promoter id of %d bytes: want 1 to %d", len(t.Promoter), maxField)
	}
	issued, expires := t.Issued.UnixMicro(), t.Expires.UnixMicro()
	if issued < 0 || expires <= issued {
		return "", errors.New("promoter token expires before it is issued")
	}
	var p []byte
	p = binary.AppendUvarint(p, uint64(issued))
	p = binary.AppendUvarint(p, uint64(expires-issued))
	p = appendField(p, t.Promoter)
	k := s.keys[0]
	msg := append([]byte(promoterVersion+"."+k.id+"."), b64.EncodeToString(p)...)
	var sum [macLen]byte
	k.purposeMAC(promoterPurpose, msg, &sum)
	return string(msg) + "." + b64.EncodeToString(sum[:]), nil
}

// VerifyPromoter checks tok's signature with any key and its expiry against
// now, and decodes it into t. It returns ErrInvalid for anything that is
// not a promoter token this Signer's keys made (an attribution token
// among them) and ErrExpired for a genuine one at or past its expiry;
// whether the promoter exists or revoked it is the caller's to check.
func (s *Signer) VerifyPromoter(tok []byte, now time.Time, t *PromoterToken) error {
	if len(tok) > maxToken || !bytes.HasPrefix(tok, []byte(promoterVersion+".")) {
		return ErrInvalid
	}
	rest := tok[len(promoterVersion)+1:]
	kid, _, ok := bytes.Cut(rest, []byte("."))
	lastDot := bytes.LastIndexByte(tok, '.')
	payloadAt := len(promoterVersion) + 1 + len(kid) + 1
	if !ok || lastDot < payloadAt {
		return ErrInvalid
	}
	var k *signingKey
	for _, c := range s.keys {
		if string(kid) == c.id {
			k = c
			break
		}
	}
	if k == nil {
		return ErrInvalid
	}
	var got [macLen]byte
	if encMAC := tok[lastDot+1:]; len(encMAC) != b64.EncodedLen(macLen) {
		return ErrInvalid
	} else if n, err := b64.Decode(got[:], encMAC); err != nil || n != macLen {
		return ErrInvalid
	}
	var sum [macLen]byte
	k.purposeMAC(promoterPurpose, tok[:lastDot], &sum)
	if !hmac.Equal(sum[:], got[:]) {
		return ErrInvalid
	}
	p, err := b64.DecodeString(string(tok[payloadAt:lastDot]))
	if err != nil {
		return ErrInvalid
	}
	issued, n := binary.Uvarint(p)
	if n <= 0 || issued > 1<<60 {
		return ErrInvalid
	}
	p = p[n:]
	life, n := binary.Uvarint(p)
	if n <= 0 || life == 0 || life > 1<<60 {
		return ErrInvalid
	}
	p = p[n:]
	if len(p) < 2 || int(p[0]) != len(p)-1 {
		return ErrInvalid
	}
	*t = PromoterToken{Promoter: string(p[1:]), Issued: time.UnixMicro(int64(issued)).UTC(),
		Expires: time.UnixMicro(int64(issued + life)).UTC()}
	if !now.Before(t.Expires) {
		return ErrExpired
	}
	return nil
}

// purposeMAC is mac over purpose and msg: one key serves several kinds of
// token, each under its own purpose, so that none can stand for another.
func (k *signingKey) purposeMAC(purpose string, msg []byte, out *[macLen]byte) {
	st := k.pool.Get().(*macState)
	st.h.Reset()
	st.h.Write([]byte(purpose))
	st.h.Write(msg)
	st.h.Sum(st.sum[:0])
	copy(out[:], st.sum[:macLen])
	k.pool.Put(st)
}
