package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// Just enough RESP2/RESP3 to find where one command or one reply ends: the
// proxy forwards bytes as they came and never rewrites a frame.

var (
	errProtocol = errors.New("faultproxy: malformed RESP")
	errTooLarge = errors.New("faultproxy: frame over the size limit")
)

// maxDepth bounds nested aggregates; Redis itself nests a few levels at most.
const maxDepth = 64

// readLine appends one CRLF-terminated line to buf and returns it with the
// line's content (without the type byte and CRLF), which lives in buf.
func readLine(r *bufio.Reader, buf []byte, limit int) ([]byte, []byte, error) {
	line, err := r.ReadSlice('\n') // a line longer than the reader's buffer is an error: bounded
	if err != nil {
		return buf, nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return buf, nil, errProtocol
	}
	if len(buf)+len(line) > limit {
		return buf, nil, errTooLarge
	}
	start := len(buf)
	buf = append(buf, line...)
	if len(line) == 2 { // an empty line: no type byte; only inline commands have them
		return buf, nil, nil
	}
	return buf, buf[start+1 : len(buf)-2], nil
}

// readN appends n bytes and their CRLF to buf.
func readN(r *bufio.Reader, buf []byte, n, limit int) ([]byte, error) {
	if n > limit-len(buf)-2 {
		return buf, errTooLarge
	}
	start := len(buf)
	buf = append(buf, make([]byte, n+2)...)
	if _, err := io.ReadFull(r, buf[start:]); err != nil {
		return buf, err
	}
	if !bytes.HasSuffix(buf, []byte("\r\n")) {
		return buf, errProtocol
	}
	return buf, nil
}

func length(b []byte) (int, error) {
	n, err := strconv.Atoi(string(b))
	if err != nil || n < -1 {
		return 0, errProtocol
	}
	return n, nil
}

// readValue appends one RESP value, raw, to buf.
func readValue(r *bufio.Reader, buf []byte, limit, depth int) ([]byte, error) {
	if depth > maxDepth {
		return buf, errProtocol
	}
	start := len(buf)
	buf, body, err := readLine(r, buf, limit)
	if err != nil {
		return buf, err
	}
	switch buf[start] {
	case '+', '-', ':', '_', ',', '#', '(':
		return buf, nil
	case '$', '!', '=':
		n, err := length(body)
		if err != nil || n < 0 {
			return buf, err // $-1: the RESP2 null
		}
		return readN(r, buf, n, limit)
	case '*', '~', '>', '%', '|':
		n, err := length(body)
		if err != nil || n < 0 {
			return buf, err // *-1: the RESP2 null array
		}
		if buf[start] == '%' || buf[start] == '|' {
			n *= 2
		}
		if n > (limit-len(buf))/3 { // every value takes at least 3 bytes
			return buf, errTooLarge
		}
		for range n {
			if buf, err = readValue(r, buf, limit, depth+1); err != nil {
				return buf, err
			}
		}
		return buf, nil
	}
	// Streamed strings and aggregates ($?, *?) are RESP3 too, but Redis
	// never sends them.
	return buf, errProtocol
}

// readReply appends one reply to buf. An attribute (|) belongs to the value
// after it. push says the value is an out-of-band push (>), not the reply to
// a command.
func readReply(r *bufio.Reader, buf []byte, limit int) (_ []byte, push bool, err error) {
	for {
		start := len(buf)
		if buf, err = readValue(r, buf, limit, 0); err != nil {
			return buf, false, err
		}
		switch buf[start] {
		case '|':
			continue
		case '>':
			return buf, true, nil
		}
		return buf, false, nil
	}
}

// readCommand appends one client command to buf and returns its arguments,
// pointing into buf. A command with no arguments (an empty line, *0) gets
// no reply from Redis.
func readCommand(r *bufio.Reader, buf []byte, limit int) ([]byte, [][]byte, error) {
	first, err := r.Peek(1)
	if err != nil {
		return buf, nil, err
	}
	if first[0] != '*' { // an inline command, as typed into telnet
		start := len(buf)
		buf, _, err := readLine(r, buf, limit)
		if err != nil {
			return buf, nil, err
		}
		return buf, bytes.Fields(buf[start : len(buf)-2]), nil
	}
	buf, body, err := readLine(r, buf, limit)
	if err != nil {
		return buf, nil, err
	}
	n, err := length(body)
	if err != nil {
		return buf, nil, err
	}
	if n > (limit-len(buf))/4 { // "$0\r\n\r\n" at least, really
		return buf, nil, errTooLarge
	}
	type span struct{ off, n int }
	spans := make([]span, 0, n)
	for range n {
		start := len(buf)
		if buf, body, err = readLine(r, buf, limit); err != nil {
			return buf, nil, err
		}
		if buf[start] != '$' {
			return buf, nil, errProtocol
		}
		m, err := length(body)
		if err != nil || m < 0 {
			return buf, nil, errProtocol
		}
		spans = append(spans, span{len(buf), m})
		if buf, err = readN(r, buf, m, limit); err != nil {
			return buf, nil, err
		}
	}
	args := make([][]byte, len(spans))
	for i, s := range spans {
		args[i] = buf[s.off : s.off+s.n : s.off+s.n]
	}
	return buf, args, nil
}
