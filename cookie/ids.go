package cookie

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// VisitorIDLen is the length of a visitor id: 16 random bytes in unpadded
// base64url.
const VisitorIDLen = 22

// AppendVisitorID appends a new random visitor id to dst.
func AppendVisitorID(dst []byte) []byte {
	var b [16]byte
	rand.Read(b[:])
	return b64.AppendEncode(dst, b[:])
}

// ValidVisitorID reports whether v has the form AppendVisitorID makes. A
// visitor cookie of any other form is replaced by a new id.
func ValidVisitorID(v []byte) bool {
	if len(v) != VisitorIDLen {
		return false
	}
	var b [17]byte
	n, err := b64.Decode(b[:], v)
	return err == nil && n == 16
}

// AppendClickID appends a new click id to dst: a 48-bit millisecond
// timestamp and 80 random bits, like a UUIDv7, in unpadded base64url (22
// bytes). Ids are unique and sort roughly by time within one byte order.
func AppendClickID(dst []byte, now time.Time) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:])
	return b64.AppendEncode(dst, b[:])
}
