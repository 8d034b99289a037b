package events

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"time"
	"unsafe"

	gojson "github.com/goccy/go-json"
	"github.com/google/uuid"
)

// encodeState is the pipeline writer's reusable memory for encoding. The
// records of one write point into js and strs until the writer has copied
// them into the chunk it hands the consumers, then reset makes the memory
// available again: encoding a click allocates next to nothing once the
// buffers have grown.
type encodeState struct {
	js    bytes.Buffer
	enc   *gojson.Encoder
	strs  []byte
	click Event
	// Pointed to by click.Data when set.
	expires   time.Time
	geo       Geo
	site      string
	activated bool
}

func (s *encodeState) reset() {
	s.js.Reset()
	s.strs = s.strs[:0]
}

// json encodes v into the state's buffer and returns the bytes, valid until
// reset. goccy/go-json writes the same bytes as encoding/json (checked by
// TestFastJSONMatchesStd and its fuzzer) in about a third of the time;
// encoding every click is the pipeline's largest cost.
func (s *encodeState) json(v any) ([]byte, error) {
	if s.enc == nil {
		s.enc = gojson.NewEncoder(&s.js)
	}
	start := s.js.Len()
	if err := s.enc.Encode(v); err != nil {
		s.js.Truncate(start)
		return nil, err
	}
	b := s.js.Bytes()
	// Without Encode's newline, and capped: appending to one record must
	// never write over the next. A later growth of js moves its contents;
	// the slices handed out keep the old memory alive and intact.
	return b[start : len(b)-1 : len(b)-1], nil
}

// concat returns a+b as a string living in the state's string arena, valid
// until reset.
func (s *encodeState) concat(a, b string) string {
	start := len(s.strs)
	s.strs = append(append(s.strs, a...), b...)
	return unsafe.String(unsafe.SliceData(s.strs[start:]), len(s.strs)-start)
}

// ip returns a as a string living in the state's string arena ("" for
// the zero Addr), valid until reset.
func (s *encodeState) ip(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	start := len(s.strs)
	s.strs = a.AppendTo(s.strs)
	return unsafe.String(unsafe.SliceData(s.strs[start:]), len(s.strs)-start)
}

// id returns a new event id (NewID's) living in the state's string arena,
// valid until reset.
func (s *encodeState) id() string {
	u, err := uuid.NewV7()
	if err != nil {
		return NewID()
	}
	start := len(s.strs)
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	hex.Encode(b[9:13], u[4:6])
	hex.Encode(b[14:18], u[6:8])
	hex.Encode(b[19:23], u[8:10])
	hex.Encode(b[24:], u[10:])
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	s.strs = append(s.strs, b[:]...)
	return unsafe.String(unsafe.SliceData(s.strs[start:]), 36)
}

// view returns the arena bytes of sp as a string without copying; valid
// until the buffer is reused.
func (b *buffer) view(sp span) string {
	if sp.n == 0 {
		return ""
	}
	return unsafe.String(&b.arena[sp.off], int(sp.n))
}
