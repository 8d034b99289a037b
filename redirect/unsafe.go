package redirect

import "unsafe"

// s2b and b2s convert without copying, for values that are only read while
// the request is served (fasthttp copies header values it is given).
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
