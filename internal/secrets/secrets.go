// Package secrets keeps generated secrets (the cookie signing key, the
// fingerprint key) in files under the data dir, so a restart keeps
// verifying the cookies and matching the fingerprints it made before.
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
