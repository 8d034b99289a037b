package attribution

import "strings"

// Identifier limits. Identifiers end up in Redis keys (inside hash tags, so
// they must not hold braces), in cookie names and in URLs, so they are kept to
// a small alphabet.
const (
	maxIDLen   = 128
	MinCodeLen = 3
	MaxCodeLen = 64
)

// ValidProgramID reports whether s can name a program. Program ids become part
// of the cookie name rg_{program}, so they use only [A-Za-z0-9_-], at most 64.
func ValidProgramID(s string) bool {
	return len(s) >= 1 && len(s) <= 64 && allCodeBytes(s)
}

// ValidID reports whether s can name a promoter or a customer: 1 to 128
// bytes of [A-Za-z0-9._:@-], enough for numeric ids, UUIDs and e-mail-like
// account names.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isCodeByte(c) && c != '.' && c != ':' && c != '@' {
			return false
		}
	}
	return true
}

// ValidRefundID reports whether s can name a refund: 1 to 128 bytes of
// [A-Za-z0-9._:-].
func ValidRefundID(s string) bool {
	return ValidID(s) && !strings.Contains(s, "@")
}

// ValidCode reports whether s can be a link code: 3 to 64 bytes of
// [A-Za-z0-9_-], the URL-safe alphabet, so a code never needs escaping.
func ValidCode(s string) bool {
	return len(s) >= MinCodeLen && len(s) <= MaxCodeLen && allCodeBytes(s)
}

func allCodeBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isCodeByte(s[i]) {
			return false
		}
	}
	return true
}

func isCodeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func checkID(what, s string) error {
	if !ValidID(s) {
		return Errorf(EInvalid, "%s %q must be 1 to %d characters of A-Z a-z 0-9 . _ : @ -", what, s, maxIDLen)
	}
	return nil
}
