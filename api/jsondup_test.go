package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestDuplicateKey(t *testing.T) {
	f := func(body, wantKey, wantPath string) {
		t.Helper()
		key, path, found := duplicateKey([]byte(body))
		if wantKey == "" && found {
			t.Errorf("%s: found %q at %q, want none", body, key, path)
		}
		if wantKey != "" && (!found || key != wantKey || path != wantPath) {
			t.Errorf("%s: got %q at %q (%v), want %q at %q", body, key, path, found, wantKey, wantPath)
		}
	}
	f(`{}`, "", "")
	f(`{"a":1,"b":2}`, "", "")
	f(`{"a":1,"a":2}`, "a", "")
	f(`{"amount":100,"AMOUNT":1}`, "AMOUNT", "")
	f(`{"a":1,"\u0061":2}`, "a", "")
	f(`{"k":1,"\u212a":2}`, "\u212a", "") // the Kelvin sign folds to k, as encoding/json matches fields
	f(`{"S":1,"ſ":2}`, "ſ", "")
	f(`{"a":{"b":1,"b":2}}`, "b", "a")
	f(`{"customer_info":{"fingerprints":{"ips":[],"ips":["1.2.3.4"]}}}`, "ips", "customer_info.fingerprints")
	f(`{"a":[{"x":1},{"x":1,"x":2}]}`, "x", "a[1]")
	f(`[[1],[2,{"y":[],"y":0}]]`, "y", "[1][1]")
	f(`{"a":{"x":1},"a":2}`, "a", "")
	f(`{"a":{"a":1},"b":{"a":1}}`, "", "")
	f(`[{"a":1},{"a":1}]`, "", "")
	f(`{"a":"a","b":"a","c":["a","a"]}`, "", "")
	f(`{"a":{"b":{}},"b":{"a":{}}}`, "", "")
	f(`{"a":1,"b":`, "", "")     // not JSON: the decoder says so
	f(`{"a":1} {"a":2}`, "", "") // two values: trailing data, refused elsewhere
	f(`"a"`, "", "")
	if key, path, found := duplicateKey([]byte(`{"":1,"":2}`)); !found || key != "" || path != "" {
		t.Errorf(`{"":1,"":2}: %q %q %v`, key, path, found)
	}
	deep := strings.Repeat(`{"a":`, 200) + `{"z":1,"z":2}` + strings.Repeat(`}`, 200)
	if _, path, found := duplicateKey([]byte(deep)); !found || path != strings.TrimSuffix(strings.Repeat("a.", 200), ".") {
		t.Errorf("deep: %v %q", found, path)
	}
}

func TestFoldKey(t *testing.T) {
	for _, pair := range [][2]string{{"a", "A"}, {"k", "\u212a"}, {"s", "ſ"}, {"straße", "STRASSE"}, {"Σ", "ς"}, {"ab", "aB"}, {"\u00e9", "\u00c9"}} {
		if got, want := foldKey(pair[0]) == foldKey(pair[1]), bytes.EqualFold([]byte(pair[0]), []byte(pair[1])); got != want {
			t.Errorf("foldKey(%q) == foldKey(%q) is %v, bytes.EqualFold says %v", pair[0], pair[1], got, want)
		}
	}
}

// TestDuplicateKeyRefused: every JSON body of the API goes through the
// check: a duplicate at any depth is a 400 that names the key.
func TestDuplicateKeyRefused(t *testing.T) {
	e := newEnv(t, false)
	e.seed()
	f := func(method, path, token, body, key string) {
		t.Helper()
		r := e.call(method, path, token, body)
		if r.status != 400 || r.errCode() != "malformed" || !strings.Contains(r.raw, `duplicate key \"`+key+`\"`) {
			t.Errorf("%s %s %s: %d %s, want 400 naming %q", method, path, body, r.status, r.raw, key)
		}
	}
	f("POST", "/v1/conversions", sfTok, `{"program":"shop","order":"o1","customer":"c1","amount":100,"currency":"CNY","product":"cvm","prepaid":true,"amount":1}`, "amount")
	f("POST", "/v1/conversions", sfTok, `{"program":"shop","order":"o1","customer":"c1","amount":100,"AMOUNT":1,"currency":"CNY","product":"cvm","prepaid":true}`, "AMOUNT")
	f("POST", "/v1/bind", sfTok, `{"program":"shop","customer":"c1","event":"register","customer_info":{"paid":false,"paid":true}}`, "paid")
	f("PUT", "/v1/customers/c1", sfTok, `{"fingerprints":{"emails":["a@example.com"],"Emails":[]}}`, "Emails")
	f("PUT", "/v1/admin/programs/shop", adminTok, `{"cookie_days":30,"allowed_hosts":["shop.example.com"],"rates":{"protected":0.1,"protected":0.9}}`, "protected")
	f("PUT", "/v1/admin/promoters/alice", adminTok, `{"status":"active","status":"suspended"}`, "status")
	f("POST", "/v1/conversions/o1/refunds", sfTok, `{"refund":"r1","amount":1,"amount":2}`, "amount")
	r := e.call("POST", "/v1/conversions", sfTok, `{"program":"shop","order":"o1","customer":"c1","amount":100,"currency":"CNY","product":"cvm","prepaid":true,"amount":1}`)
	if !strings.Contains(r.raw, "the top-level object") {
		t.Errorf("the message says where: %s", r.raw)
	}
	if r := e.call("POST", "/v1/bind", sfTok, `{"program":"shop","customer":"c1","event":"register","customer_info":{"paid":false,"paid":true}}`); !strings.Contains(r.raw, "at customer_info") {
		t.Errorf("the message says where: %s", r.raw)
	}
	// The same keys in different objects are no duplicates.
	if r := e.call("PUT", "/v1/admin/promoters/bob", adminTok, `{"status":"active","fingerprints":{"ips":["203.0.113.9"],"emails":["bob@example.com"]}}`); r.status != 200 {
		t.Errorf("no duplicate: %d %s", r.status, r.raw)
	}
}

// dupGen writes a JSON value chosen by plan, with object keys from a few
// spellings in a few case-folding classes, and knows whether it put two
// keys of one class in one object.
type dupGen struct {
	plan []byte
	buf  bytes.Buffer
}

// keySpellings are written as JSON string contents; class is what they
// decode to under folding.
var keySpellings = []struct{ text, class string }{
	{"a", "a"}, {"A", "a"}, {`\u0061`, "a"}, {`\u0041`, "a"},
	{"b", "b"}, {"B", "b"},
	{"k", "k"}, {"K", "k"}, {`\u212a`, "k"}, {"\u212a", "k"},
	{"s", "s"}, {"ſ", "s"},
	{"ab", "ab"}, {"aB", "ab"}, {"a b", "a b"}, {"", ""},
}

func (g *dupGen) next() int {
	if len(g.plan) == 0 {
		return 0
	}
	b := g.plan[0]
	g.plan = g.plan[1:]
	return int(b)
}

func (g *dupGen) ws() {
	if g.next()%3 == 0 {
		g.buf.WriteString(" \n\t"[:1+g.next()%3])
	}
}

// value writes one value and reports whether it holds a duplicate.
func (g *dupGen) value(depth int) bool {
	g.ws()
	kind := g.next() % 5
	if depth >= 5 {
		kind %= 2
	}
	dup := false
	switch kind {
	case 0:
		g.buf.WriteString([]string{"1", "-0.5e3", "true", "null"}[g.next()%4])
	case 1:
		g.buf.WriteString(`"a"`) // a string value that looks like a key
	case 2, 3:
		g.buf.WriteByte('{')
		seen := map[string]bool{}
		n := g.next() % 5
		for i := range n {
			if i > 0 {
				g.buf.WriteByte(',')
			}
			k := keySpellings[g.next()%len(keySpellings)]
			if seen[k.class] {
				dup = true
			}
			seen[k.class] = true
			g.ws()
			g.buf.WriteString(`"` + k.text + `"`)
			g.ws()
			g.buf.WriteByte(':')
			dup = g.value(depth+1) || dup
		}
		g.ws()
		g.buf.WriteByte('}')
	case 4:
		g.buf.WriteByte('[')
		n := g.next() % 4
		for i := range n {
			if i > 0 {
				g.buf.WriteByte(',')
			}
			dup = g.value(depth+1) || dup
		}
		g.buf.WriteByte(']')
	}
	g.ws()
	return dup
}

// FuzzDuplicateKey builds JSON from the fuzzer's plan, knowing whether it
// holds two keys of one object that encoding/json would treat as one, and
// checks that duplicateKey says the same.
func FuzzDuplicateKey(f *testing.F) {
	f.Add([]byte{2, 3, 0, 0, 0, 1, 1})
	f.Add([]byte{2, 2, 0, 3, 2, 2, 1, 8, 0, 9, 0})
	f.Add([]byte{4, 3, 2, 2, 0, 0, 1, 2, 2, 0, 1, 1, 0})
	f.Add([]byte{2, 4, 6, 2, 2, 10, 1, 11, 1, 12, 0, 13, 0})
	f.Fuzz(func(t *testing.T, plan []byte) {
		g := &dupGen{plan: plan}
		want := g.value(0)
		b := g.buf.Bytes()
		if !json.Valid(b) {
			t.Fatalf("the generator wrote invalid JSON: %s", b)
		}
		key, path, found := duplicateKey(b)
		if found != want {
			t.Fatalf("%s: duplicateKey says %v (%q at %q), want %v", b, found, key, path, want)
		}
	})
}

// FuzzDuplicateKeyRaw feeds duplicateKey any bytes: it must not panic, and
// valid JSON it passes keeps every key when decoded (no object loses one
// to another) and passes again once re-encoded.
func FuzzDuplicateKeyRaw(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":[{"a":2}]}`))
	f.Add([]byte(`{"a":1,"A":2}`))
	f.Add([]byte(`{"a":{"b":1,"b":2}}`))
	f.Add([]byte(`[{"\u0061":1,"a":2}]`))
	f.Add([]byte(`{"a":1,`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, found := duplicateKey(b)
		if found || !json.Valid(b) {
			return
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		if got, want := countKeys(v), keyTokens(t, b); got != want {
			t.Fatalf("%s: no duplicate reported, yet decoding kept %d of %d keys", b, got, want)
		}
		again, _ := json.Marshal(v)
		if _, _, found := duplicateKey(again); found {
			t.Fatalf("%s passed, its re-encoding %s did not", b, again)
		}
	})
}

// countKeys counts the keys of every object in a decoded value.
func countKeys(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		n += len(v)
		for _, x := range v {
			n += countKeys(x)
		}
	case []any:
		for _, x := range v {
			n += countKeys(x)
		}
	}
	return n
}

// keyTokens counts the keys written in the JSON text b.
func keyTokens(t *testing.T, b []byte) int {
	type frame struct{ object, wantKey bool }
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(b))
	n := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return n
		}
		if l := len(stack); l > 0 && stack[l-1].wantKey {
			if _, ok := tok.(string); ok {
				n++
				stack[l-1].wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		}
		if l := len(stack); l > 0 && stack[l-1].object {
			stack[l-1].wantKey = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		}
	}
}
