package cookie

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"strings"
)

// Seal encrypts and authenticates plain under the first key, for purpose
// (which Open must be given alike): for values handed out that must not be
// read, such as a page cursor that holds a customer id shown to a
// promoter only masked. The text form is "s1.KID.DATA" (URL-safe). Each
// call gives a new text (a random nonce).
func (s *Signer) Seal(purpose string, plain []byte) string {
	k := s.keys[0]
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	rand.Read(nonce) // never fails (crypto/rand)
	return sealVersion + "." + k.id + "." + b64.EncodeToString(k.aead.Seal(nonce, nonce, plain, []byte(purpose)))
}

// Open returns what Seal sealed for purpose under any of the keys, or
// ErrInvalid.
func (s *Signer) Open(purpose, sealed string) ([]byte, error) {
	if len(sealed) > 4*maxToken {
		return nil, ErrInvalid
	}
	v, rest, ok := strings.Cut(sealed, ".")
	kid, data, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || v != sealVersion {
		return nil, ErrInvalid
	}
	for _, k := range s.keys {
		if k.id != kid {
			continue
		}
		raw, err := b64.DecodeString(data)
		if err != nil || len(raw) < k.aead.NonceSize()+k.aead.Overhead() {
			return nil, ErrInvalid
		}
		n := k.aead.NonceSize()
		plain, err := k.aead.Open(nil, raw[:n], raw[n:], []byte(purpose))
		if err != nil {
			return nil, ErrInvalid
		}
		return plain, nil
	}
	return nil, ErrInvalid
}

const sealVersion = "s1"

// sealAEAD is the AES-256-GCM of a key's secret, keyed apart from its
// HMAC: the key is the secret's HMAC of a label of its own.
func sealAEAD(secret []byte) cipher.AEAD {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("refgate seal key\x00"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}
