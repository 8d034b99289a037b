package attribution

import "testing"

func TestMaskCustomer(t *testing.T) {
	f := func(id, want string) {
		t.Helper()
		if got := MaskCustomer(id); got != want {
			t.Errorf("MaskCustomer(%q) = %q, want %q", id, got, want)
		}
	}
	f("", "***")
	f("a", "***")
	f("abcd", "***")
	f("abcde", "ab***de")
	f("alice@example.com", "al***om")
	f("13800000000", "13***00")
	f("u:42:zz", "u:***zz")
	f("客户编号甲乙", "客户***甲乙")
	f("erased:AbCdEfGhIjKlMnOpQrStUv", "er***Uv")
}
