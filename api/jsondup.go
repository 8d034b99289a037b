package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// duplicateKey finds the first object key in the JSON text b that its
// object already had, at any depth, and returns it with the path of that
// object ("" for the top level, else like "customer_info.fingerprints" or
// "items[2]"). JSON leaves duplicates undefined and parsers differ: most
// keep the last, some the first, some refuse. encoding/json keeps the last
// and also matches struct fields ignoring case, so {"amount":1,"AMOUNT":2}
// is an amount of 2 to refgate, while a gateway in front that validated
// the body may have read 1. Keys equal under Unicode case folding (as
// bytes.EqualFold, which encoding/json uses) therefore count as the same.
// Keys are compared as decoded, so "a" and "\u0061" are one key too.
//
// Text that is not JSON reports nothing up to where it stops being JSON:
// the decoder that runs next says what is wrong with it.
func duplicateKey(b []byte) (key, path string, found bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers are skipped, not parsed
	type frame struct {
		object  bool
		wantKey bool                // in an object: the next token is a key or '}'
		keys    map[string]struct{} // folded keys seen
		name    string              // in an object: the current key; in an array: unused
		index   int                 // in an array: the current element
	}
	var stack []frame
	pathOf := func() string {
		var p strings.Builder
		for i := range stack[:len(stack)-1] { // the last frame is the object holding the duplicate
			f := &stack[i]
			if f.object {
				if p.Len() > 0 {
					p.WriteByte('.')
				}
				p.WriteString(f.name)
			} else {
				p.WriteString("[" + strconv.Itoa(f.index) + "]")
			}
		}
		return p.String()
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "", false // the end, or not JSON: decode reports that
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if k, ok := tok.(string); ok {
				top := &stack[n-1]
				fk := foldKey(k)
				if _, dup := top.keys[fk]; dup {
					return k, pathOf(), true
				}
				top.keys[fk] = struct{}{}
				top.name, top.wantKey = k, false
				continue
			}
		}
		switch tok {
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		}
		// A value begins: its parent then wants the next key or element.
		if n := len(stack); n > 0 {
			if top := &stack[n-1]; top.object {
				top.wantKey = true
			} else {
				top.index++
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true, keys: map[string]struct{}{}})
		case json.Delim('['):
			stack = append(stack, frame{index: -1})
		}
	}
}

// foldKey maps every string to one representative of its case-folding
// class: foldKey(x) == foldKey(y) exactly when bytes.EqualFold(x, y).
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s) // the least rune of each ASCII letter's orbit
	}
	var b strings.Builder
	for _, r := range s {
		// The smallest rune of r's simple-folding orbit stands for all of
		// them (K, k and the Kelvin sign K are one orbit).
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}
