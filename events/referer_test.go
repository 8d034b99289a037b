package events

import (
	"net/url"
	"strings"
	"testing"
)

func stripReferer(ref string) string {
	head, tail := refererParts([]byte(ref))
	return string(head) + string(tail)
}

func TestStripReferer(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := stripReferer(in); got != want {
			t.Errorf("stripReferer(%q) = %q, want %q", in, got, want)
		}
	}
	f("https://blog.example/", "https://blog.example/")
	f("https://blog.example/post/42?session=5f3a9c&utm_source=x", "https://blog.example/post/42")
	f("https://blog.example/post#comments", "https://blog.example/post")
	f("https://blog.example/post?q=1#frag", "https://blog.example/post")
	f("https://blog.example?session=abc", "https://blog.example")
	f("https://blog.example#x", "https://blog.example")
	f("https://blog.example", "https://blog.example")
	f("https://blog.example:8443/p;v=1", "https://blog.example:8443/p;v=1")
	f("https://[2001:db8::1]:8443/p?x", "https://[2001:db8::1]:8443/p")
	f("HTTPS://Blog.Example/Post", "HTTPS://Blog.Example/Post")
	f("android-app://com.google.android.gm/", "android-app://com.google.android.gm/")
	// User parts go, however many "@" there are; an "@" in the path or
	// query is not one.
	f("https://alice:s3cret@blog.example/p?x", "https://blog.example/p")
	f("https://alice@blog.example", "https://blog.example")
	f("https://a@b:c@blog.example/p", "https://blog.example/p")
	f("https://@blog.example/", "https://blog.example/")
	f("https://blog.example/u/alice@example.net?to=bob@example.net", "https://blog.example/u/alice@example.net")
	f("https://blog.example?to=bob@example.net/x", "https://blog.example")
	// No host, or no URL at all: nothing.
	f("", "")
	f("https://", "")
	f("https://alice@", "")
	f("https://alice@/p", "")
	f("https://:443/", "")
	f("https:///path", "")
	f("//blog.example/p", "")
	f("/relative/path?x", "")
	f("blog.example/p", "")
	f("about:blank", "")
	f("1http://blog.example/", "")
	f("ht tp://blog.example/", "")
	f("https://blog example/", "")
	f("https://blog.example/a b", "")
	f("https://blog.example/\x00", "")
	f("https://blog.example/\x7f", "")
	f("https://evil\\@blog.example/", "")
	f("https://blog.example/p\tx?y", "")
	f("\xff\xfe://x", "")
	// Control characters after the cut are not kept, so they do not matter.
	f("https://blog.example/p?a b\x00", "https://blog.example/p")

	// Long values are cut after the stripping: a long user part cannot
	// push its "@" past the cut and pass for the host.
	long := "https://" + strings.Repeat("u", 3*maxReferer) + "@blog.example/p"
	f(long, "https://blog.example/p")
	longQuery := "https://blog.example/p?" + strings.Repeat("session=abc&", 500)
	f(longQuery, "https://blog.example/p")
	longPath := "https://blog.example/" + strings.Repeat("a", 2*maxReferer) + "?x"
	if got := stripReferer(longPath); len(got) != maxReferer || !strings.HasPrefix(got, "https://blog.example/aaa") {
		t.Errorf("a long path is cut to %d bytes: got %d bytes %.40q", maxReferer, len(got), got)
	}
}

// FuzzStripReferer: whatever the header, what is kept is a URL with a host
// and no user part, query or fragment, at most maxReferer bytes, with the
// scheme and host of the header; stripping it again changes nothing.
func FuzzStripReferer(f *testing.F) {
	for _, s := range []string{"https://blog.example/post?session=1#top", "https://u:p@h/p", "https://a@b@c/",
		"android-app://com.google.android.gm/", "https://[::1]:80/x", "http://h?x@y/z", "x://", "about:blank", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := stripReferer(in)
		if got == "" {
			return
		}
		if len(got) > maxReferer {
			t.Fatalf("%d bytes kept of %q", len(got), in)
		}
		if again := stripReferer(got); again != got && len(got) < maxReferer {
			t.Fatalf("not stable: %q -> %q -> %q", in, got, again)
		}
		scheme, rest, ok := strings.Cut(got, "://")
		if !ok || !isScheme([]byte(scheme)) || !strings.HasPrefix(in, scheme+"://") {
			t.Fatalf("scheme of %q kept as %q", in, got)
		}
		if strings.ContainsAny(rest, "?#\\ \x00") {
			t.Fatalf("%q keeps a query, fragment or odd character: %q", in, got)
		}
		host, _, _ := strings.Cut(rest, "/")
		if host == "" || strings.Contains(host, "@") || !strings.Contains(in, host) {
			t.Fatalf("host of %q kept as %q", in, host)
		}
		// Where the standard library reads the header as a URL with a
		// host, it reads what is kept as one with the same scheme and
		// host, and no user part, query or fragment.
		if u, err := url.Parse(in); err == nil && u.Host != "" && len(got) < maxReferer {
			k, err := url.Parse(got)
			if err != nil || !strings.EqualFold(u.Scheme, k.Scheme) || u.Host != k.Host {
				t.Fatalf("url.Parse(%q): scheme %q host %q; kept %q: %+v %v", in, u.Scheme, u.Host, got, k, err)
			}
			if k.User != nil || k.RawQuery != "" || k.Fragment != "" {
				t.Fatalf("%q kept as %q, which has %v %q %q", in, got, k.User, k.RawQuery, k.Fragment)
			}
		}
	})
}
