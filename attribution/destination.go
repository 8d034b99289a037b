package attribution

import (
	"net/netip"
	"net/url"
	"strings"
)

// ParseDestination checks raw as a browser would parse it before it is ever
// put in a Location header, and returns the URL in canonical form with its
// host lower-cased and in IDNA ASCII form.
//
// It refuses what browsers and servers disagree on, which is where open
// redirects come from: control characters and spaces (browsers strip tabs and
// newlines, so "ht\ttp" and "java\nscript" change meaning), backslashes
// (a browser reads "https://a.com\@b.com" as host a.com, Go as user info),
// user info, percent-encoded hosts, schemes other than http and https, and
// URLs without a host. The returned host is the one to check with
// Program.AllowsHost.
func ParseDestination(raw string) (u *url.URL, host string, err error) {
	if raw == "" || len(raw) > 4096 {
		return nil, "", Errorf(EInvalid, "destination must be 1 to 4096 bytes")
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c == 0x7f || c == '\\' {
			return nil, "", Errorf(EInvalid, "destination holds a space, control character or backslash")
		}
	}
	u, err = url.Parse(raw)
	if err != nil {
		return nil, "", Errorf(EInvalid, "destination is not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", Errorf(EInvalid, "destination must be an http or https URL")
	}
	if u.Opaque != "" || u.Host == "" || !strings.HasPrefix(raw[len(u.Scheme)+1:], "//") {
		return nil, "", Errorf(EInvalid, "destination must be an absolute URL with a host")
	}
	if u.User != nil {
		return nil, "", Errorf(EInvalid, "destination must not carry user information")
	}
	h := u.Hostname()
	if strings.ContainsAny(h, "%[]") || strings.HasSuffix(h, ".") {
		return nil, "", Errorf(EInvalid, "destination host %q is not a plain host name", h)
	}
	port := u.Port()
	if port != "" {
		if len(port) > 5 || !allDigits(port) || port > "65535" && len(port) == 5 {
			return nil, "", Errorf(EInvalid, "destination port %q is not valid", port)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, "", Errorf(EInvalid, "destination has an empty port")
	}
	host, err = asciiHost(h)
	if err != nil {
		return nil, "", err
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
		u.Host = "[" + host + "]"
	} else {
		u.Host = host
	}
	if port != "" {
		u.Host += ":" + port
	}
	return u, host, nil
}

func isIPLiteral(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil
}
