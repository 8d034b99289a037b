package events

import "bytes"

// refererParts returns what a click event keeps of a Referer header: its
// scheme with "://" (head) and its host, port and path (tail), together at
// most maxReferer bytes. The query and fragment (session ids, search terms,
// e-mail addresses in tracking parameters) and any user part
// ("user:password@") are dropped. Anything that is not
// scheme://authority[/path] with a host, or that holds a space, a control
// character or a backslash where it would be kept, is dropped whole: a
// header the client made up can hold anything, and an event must carry none
// of it. Both parts are subslices of ref: the click path copies them into
// its buffer without allocating.
//
// Cutting happens after the stripping, so that a long user part cannot push
// its "@" past the cut and pass for the host.
func refererParts(ref []byte) (head, tail []byte) {
	i := bytes.Index(ref, []byte("://"))
	if i <= 0 || !isScheme(ref[:i]) {
		return nil, nil
	}
	head, rest := ref[:i+3], ref[i+3:]
	// A backslash ends the authority too, as browsers read one in http(s)
	// URLs: then it is in what would be kept, and the whole is dropped.
	end := bytes.IndexAny(rest, "/?#\\")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	if at := bytes.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:]
	}
	if len(authority) == 0 || authority[0] == ':' {
		return nil, nil // no host
	}
	path := rest[end:]
	if q := bytes.IndexAny(path, "?#"); q >= 0 {
		path = path[:q]
	}
	// authority and path are adjacent in ref: the user part, if any, came
	// before the host.
	tail = rest[end-len(authority) : end+len(path)]
	for _, c := range tail {
		if c <= ' ' || c == 0x7f || c == '\\' {
			return nil, nil
		}
	}
	if n := maxReferer - len(head); len(tail) > n {
		tail = tail[:n]
	}
	return head, tail
}

// isScheme reports whether s is an RFC 3986 scheme: a letter, then letters,
// digits, "+", "-" or ".".
func isScheme(s []byte) bool {
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return len(s) > 0 && len(s) <= 32
}
