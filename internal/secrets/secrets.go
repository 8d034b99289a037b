// Package secrets keeps generated secrets (the cookie signing key, the
// fingerprint key) in files under the data dir, so a restart keeps
// verifying the cookies and matching the fingerprints it made before, and
// holds the rules a configured secret must meet (Check).
package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// Random returns n random bytes as unpadded base64url.
func Random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// LoadOrCreate returns the secret kept at path, creating the file (mode
// 0600, with gen's value) if it does not exist. created says whether it was
// made now.
func LoadOrCreate(path string, gen func() string) (value string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", false, fmt.Errorf("%s is empty; remove it to generate a new secret", path)
		}
		return v, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, err
	}
	v := gen()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process won the race: use theirs
		return LoadOrCreate(path, gen)
	}
	if err != nil {
		return "", false, err
	}
	if _, err := f.WriteString(v + "\n"); err != nil {
		f.Close()
		return "", false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", false, err
	}
	return v, true, f.Close()
}

// MinLen is the shortest configured token or key accepted, in bytes.
const MinLen = 16

// Placeholders are the values the repository's example files
// (deploy/**/*.example) hold where a secret goes. A test reads those files
// and fails on a value that Placeholder does not recognise.
var Placeholders = []string{
	"CHANGE-ME",
	"CHANGE-ME-AT-LEAST-16-BYTES",
	"CHANGE-ME-ADMIN-PASSWORD",
	"CHANGE-ME-REFGATE-PASSWORD",
}

// placeholderWords are what a placeholder says, lower-cased and without
// punctuation: "CHANGE-ME", "change_me", "ChangeMe-admin-password" and
// "k1:CHANGE-ME" all say "changeme".
var placeholderWords = []string{"changeme", "replaceme"}

// Placeholder reports whether v is a placeholder rather than a secret: one
// of Placeholders, or any value that says "change me" or "replace me" in
// any case, with any punctuation or none, anywhere in it (a value copied
// from an example file and edited a little is still one).
func Placeholder(v string) bool {
	for _, p := range Placeholders {
		if strings.EqualFold(strings.TrimSpace(v), p) {
			return true
		}
	}
	var b strings.Builder
	for _, r := range v {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	norm := b.String()
	for _, w := range placeholderWords {
		if strings.Contains(norm, w) {
			return true
		}
	}
	return false
}

// Check says what is wrong with a configured token or key: shorter than
// MinLen bytes, or a placeholder. The error never holds the value, so it
// can be printed; the caller names the setting.
func Check(v string) error {
	if Placeholder(v) {
		return errors.New("is a placeholder from an example file, not a secret: generate one, e.g. openssl rand -base64 32")
	}
	if len(v) < MinLen {
		return fmt.Errorf("is shorter than %d bytes: generate one, e.g. openssl rand -base64 32", MinLen)
	}
	return nil
}
