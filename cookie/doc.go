// Package cookie holds refgate's signed attribution token, the visitor id and
// the signing keys with their rotation.
//
// A token is compact, URL-safe text, so it fits a cookie value and a query
// parameter alike:
//
//	1.<kid>.<payload>.<mac>
//
// "1" is the format version, kid names the key that signed it, payload is the
// unpadded base64url of a binary record (issued and expiry times, program,
// promoter, link, click id and visitor id) and mac is the unpadded base64url
// of the first 16 bytes of HMAC-SHA256 over "1.<kid>.<payload>". Verification
// is constant-time and strict: a base64 string with non-zero padding bits, an
// unknown version or key, trailing bytes or a changed byte anywhere fail.
//
// Several keys may verify (rotation): the first signs, all verify. A token
// carries its own expiry, so a cookie replayed past its Max-Age still fails.
package cookie
