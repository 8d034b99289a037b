package deploy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for host and its key, PEM, into dir.
func selfSigned(t *testing.T, dir, host string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	return certFile, keyFile
}

// TestNginxConfig runs the distribution's nginx (Debian 12: 1.22) on the
// snippet, as /etc/nginx/conf.d/ includes it in the http block: `nginx -t`
// must pass with the certificate paths pointed at a throwaway certificate,
// and warn of nothing but what a newer nginx says of "listen ... http2".
// Everything nginx writes goes to a temporary directory.
func TestNginxConfig(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is needed to test deploy/nginx/refgate.conf (apt-get install -y nginx-light): ", err)
	}
	dir := t.TempDir()
	snippet := mustRead(t, "nginx/refgate.conf")
	paths := regexp.MustCompile(`(?m)^\s*(ssl_certificate|ssl_certificate_key)\s+(\S+);`).FindAllStringSubmatch(snippet, -1)
	if len(paths) != 2 {
		t.Fatalf("the snippet has %d ssl_certificate(_key) lines, want 2", len(paths))
	}
	host := regexp.MustCompile(`(?m)^\s*server_name\s+(\S+);`).FindStringSubmatch(snippet)
	if host == nil {
		t.Fatal("the snippet has no server_name")
	}
	cert, key := selfSigned(t, dir, host[1])
	for _, p := range paths {
		file := cert
		if p[1] == "ssl_certificate_key" {
			file = key
		}
		snippet = strings.Replace(snippet, p[2], file, 1)
	}
	writeFile(t, filepath.Join(dir, "conf.d/refgate.conf"), snippet)
	temp := ""
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		temp += fmt.Sprintf("    %s_temp_path %s;\n", d, filepath.Join(dir, d))
	}
	conf := filepath.Join(dir, "nginx.conf")
	writeFile(t, conf, fmt.Sprintf(`# As Debian's /etc/nginx/nginx.conf, reduced to what the test needs.
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
    access_log off;
%[2]s    include %[1]s/conf.d/*.conf;
}
`, dir, temp))
	ver, _ := exec.Command(nginx, "-v").CombinedOutput()
	out, err := exec.Command(nginx, "-t", "-p", dir, "-c", conf).CombinedOutput()
	t.Logf("%s%s", ver, out)
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t on deploy/nginx/refgate.conf: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "[warn]") && !strings.Contains(line, `the "listen ... http2" directive is deprecated`) {
			t.Errorf("nginx warns: %s", line)
		}
	}
}
