package deploy

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnit checks the VM unit and its environment file example:
// hardened, a state directory for the data dir, only real REFGATE_*
// settings, the public URL set (to the host nginx serves), and nginx and
// refgate agreeing on who may set X-Forwarded-For.
func TestSystemdUnit(t *testing.T) {
	unit := mustRead(t, "systemd/refgate.service")
	for _, want := range []string{"ExecStart=/usr/local/bin/refgate serve", "DynamicUser=yes", "StateDirectory=refgate",
		"Environment=REFGATE_DATA_DIR=/var/lib/refgate", "ProtectSystem=strict", "NoNewPrivileges=yes", "KillSignal=SIGTERM",
		"EnvironmentFile=/etc/refgate/refgate.env\n",
		"install -m 0600 deploy/systemd/refgate.env.example /etc/refgate/refgate.env"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	flags := envNames(t)
	for _, m := range regexp.MustCompile(`Environment=(REFGATE_[A-Z_]+)=`).FindAllStringSubmatch(unit, -1) {
		if !flags[m[1]] {
			t.Errorf("unit sets %s, which is no refgate flag", m[1])
		}
	}
	env := map[string]string{}
	for _, line := range strings.Split(mustRead(t, "systemd/refgate.env.example"), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "# ") // commented settings too
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "REFGATE_") && !strings.Contains(k, " ") {
			env[k] = v
			if !flags[k] {
				t.Errorf("refgate.env.example sets %s, which is no refgate flag", k)
			}
		}
	}
	nginx := mustRead(t, "nginx/refgate.conf")
	u, err := url.Parse(env["REFGATE_PUBLIC_URL"])
	if err != nil || u.Scheme != "https" || u.Path != "" || !strings.Contains(nginx, "server_name "+u.Host+";") {
		t.Errorf("REFGATE_PUBLIC_URL %q in refgate.env.example: want https://HOST, HOST nginx's server_name", env["REFGATE_PUBLIC_URL"])
	}
	for _, k := range []string{"REFGATE_ADMIN_TOKEN", "REFGATE_STOREFRONT_TOKEN", "REFGATE_METRICS_TOKEN"} {
		if _, ok := env[k]; !ok {
			t.Errorf("refgate.env.example does not set %s", k)
		}
	}
	if !strings.Contains(nginx, "proxy_set_header X-Forwarded-For $remote_addr;") || !strings.Contains(unit, "REFGATE_TRUSTED_PROXIES=127.0.0.1/32") {
		t.Error("nginx must replace X-Forwarded-For with the peer, and refgate trust only the local nginx")
	}
}
