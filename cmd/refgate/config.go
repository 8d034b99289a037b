package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/refgate/refgate/api"
	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/geo"
	"github.com/refgate/refgate/internal/secrets"
	"github.com/refgate/refgate/redirect"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/redisstore"
)

// Config is refgate serve's configuration. Its flag names (and the
// REFGATE_* environment variables and YAML keys derived from them) are part
// of the contract in docs/design.md.
type Config struct {
	Listen           string
	APIListen        string
	DataDir          string
	RedisURL         string
	RedisAddrs       string
	RedisCluster     bool
	RedisUsername    string
	RedisPassword    string
	RedisPoolSize    int
	RedisTimeout     time.Duration
	AdminToken       string
	StorefrontToken  string
	MetricsToken     string
	AuthFailureLimit int
	CookieKeys       string
	CookieDomain     string
	CookieSecure     bool
	FingerprintKey   string
	PhoneRegion      string
	GeoIPDB          string
	BotPatterns      string
	TrustedProxies   string
	TestClock        bool
	ConfigFile       string
	LogFormat        string
	LogLevel         string
	AccessLog        bool
	ShutdownDelay    time.Duration
	ShutdownTimeout  time.Duration
	KeepFullIP       bool
	PublicURL        string
	LinkCacheTTL     time.Duration
	QueueSize        int
	BatchSize        int
	FlushInterval    time.Duration

	GeoIPASNDB          string
	Events              bool
	EventsStreamMaxLen  int64
	EventsStreams       int
	EventsFileMaxBytes  int64
	EventsFileKeep      int
	EventsFileKeepBytes int64
	EventsFileMaxAge    time.Duration
	SpoolMaxBytes       int64
	SweepInterval       time.Duration
	ReportRetention     time.Duration

	EdgeMaxConns      int
	APIMaxConns       int
	EdgeMaxConnsPerIP int
	EdgeIdleTimeout   time.Duration
	AttributionRate   float64
}

// secretFlags are masked when the effective configuration is logged.
var secretFlags = map[string]bool{"admin-token": true, "storefront-token": true, "metrics-token": true,
	"cookie-keys": true, "fingerprint-key": true, "redis-password": true}

func (c *Config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", ":8080", "public edge address: clicks (/r/{code}) and /healthz only")
	fs.StringVar(&c.APIListen, "api-listen", "127.0.0.1:8081", "API address: /v1, /metrics, /readyz, /livez, pprof")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "data directory: embedded store, generated keys")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL (redis://host:6379/0, rediss://, unix:///path); empty = embedded store")
	fs.StringVar(&c.RedisAddrs, "redis-addrs", "", "comma-separated Redis Cluster node addresses (host:port,...)")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", false, "treat the Redis address(es) as a Redis Cluster")
	fs.StringVar(&c.RedisUsername, "redis-username", "", "Redis ACL user (overrides the URL's)")
	fs.StringVar(&c.RedisPassword, "redis-password", "", "Redis password (overrides the URL's)")
	fs.IntVar(&c.RedisPoolSize, "redis-pool-size", 32, "Redis connections per node")
	fs.DurationVar(&c.RedisTimeout, "redis-timeout", 500*time.Millisecond, "Redis read/write timeout per call")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bearer token for /v1/admin/*, /metrics and pprof (16+ bytes, not the storefront token); empty = generate and log once")
	fs.StringVar(&c.StorefrontToken, "storefront-token", "", "bearer token for the storefront API (16+ bytes); empty = generate and log once")
	fs.StringVar(&c.MetricsToken, "metrics-token", "", "optional bearer token that may read /metrics only (16+ bytes, not another role's)")
	fs.IntVar(&c.AuthFailureLimit, "auth-failure-limit", api.DefaultAuthFailureLimit, "failed API authentications (no or unknown token) one client address (IPv4, IPv6 /64) may have per minute before its requests without a known token get 429; 0 = no limit")
	fs.StringVar(&c.CookieKeys, "cookie-keys", "", "cookie signing keys kid:secret,kid2:secret2 (first signs, all verify; secrets 16+ bytes); empty = generate and keep one in the data dir")
	fs.StringVar(&c.CookieDomain, "cookie-domain", "", "Domain attribute of the cookies; empty = host-only")
	fs.BoolVar(&c.CookieSecure, "cookie-secure", true, "Secure attribute on the cookies")
	fs.StringVar(&c.FingerprintKey, "fingerprint-key", "", "key for hashing identity fingerprints (16+ bytes); empty = generate and keep one in the data dir")
	fs.StringVar(&c.PhoneRegion, "phone-region", attribution.DefaultPhoneRegion, "region whose national numbers a fingerprint phone without + or 00 is read as (CN, US, ...)")
	fs.StringVar(&c.GeoIPDB, "geoip-db", "", "GeoIP2/GeoLite2 City database file, reloaded when it changes; empty = no enrichment")
	fs.StringVar(&c.GeoIPASNDB, "geoip-asn-db", "", "optional GeoLite2 ASN database file, reloaded when it changes")
	fs.StringVar(&c.BotPatterns, "bot-patterns", "", "crawler list in the crawler-user-agents JSON format, read at start, replacing the built-in one; empty = built-in")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "127.0.0.0/8,::1/128", "proxies whose X-Forwarded-For is believed (CIDRs)")
	fs.IntVar(&c.EdgeMaxConns, "edge-max-conns", 10000, "edge: open connections in all; past it new ones are closed on accept")
	fs.IntVar(&c.APIMaxConns, "api-max-conns", 1024, "API: open connections in all; past it new ones are closed on accept")
	fs.IntVar(&c.EdgeMaxConnsPerIP, "edge-max-conns-per-ip", 256, "edge: open connections per client address (IPv4 address, IPv6 /64; trusted proxies exempt); 0 = no cap")
	fs.DurationVar(&c.EdgeIdleTimeout, "edge-idle-timeout", 10*time.Second, "edge: how long a keep-alive connection may wait for its next request")
	fs.Float64Var(&c.AttributionRate, "attribution-rate", 5, "attributable clicks per second per client address (IPv4 address, IPv6 /64), burst 4x; past it a click is redirected without a cookie (rate_limited); 0 = no limit")
	fs.BoolVar(&c.TestClock, "test-clock", false, "enable POST /v1/admin/test-clock")
	fs.StringVar(&c.ConfigFile, "config", "", "YAML file with the same keys as the flags")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&c.AccessLog, "access-log", false, "log every API request (method, route, path without the query, status, duration, client); clicks are in the events")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", 0, "readiness answers 503 this long before the listeners close")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "longest shutdown takes after the drain delay: in-flight requests, one more delivery of the click and event queues")
	fs.BoolVar(&c.KeepFullIP, "keep-full-ip", false, "store and emit full IPs instead of anonymised ones (IPv4 /24, IPv6 /48)")
	fs.StringVar(&c.PublicURL, "public-url", "", "the edge's public base URL, for links' url field; empty = http://localhost:<listen port>")
	fs.DurationVar(&c.LinkCacheTTL, "link-cache-ttl", time.Minute, "longest a cached link is used before it is read again (deletions reach every instance within 1s regardless)")
	fs.IntVar(&c.QueueSize, "queue-size", 65536, "clicks and events held in memory before they are written to the local log (about a millisecond's worth)")
	fs.IntVar(&c.BatchSize, "batch-size", 512, "click records per store write, events per sink write")
	fs.DurationVar(&c.FlushInterval, "flush-interval", 50*time.Millisecond, "longest a click record or an event waits in the log for a full delivery batch")
	fs.BoolVar(&c.Events, "events", true, "emit click and decision events (Redis Stream on Redis, JSON Lines files on the embedded store)")
	fs.Int64Var(&c.EventsStreamMaxLen, "events-stream-maxlen", events.DefaultStreamMaxLen, "approximate number of events kept in the Redis event stream(s), all keys together (XADD MAXLEN ~, each key its share); 0 = uncapped")
	fs.IntVar(&c.EventsStreams, "events-streams", 8, "on Redis Cluster, how many stream keys events are spread over")
	fs.Int64Var(&c.EventsFileMaxBytes, "events-file-max-bytes", 64<<20, "embedded store: size at which a JSON Lines event file is closed and the next begun")
	fs.IntVar(&c.EventsFileKeep, "events-file-keep", 0, "embedded store: most event files kept, oldest deleted first once the store has taken them; 0 = no bound on the count")
	fs.Int64Var(&c.EventsFileKeepBytes, "events-file-keep-bytes", 10<<30, "embedded store: most bytes of event files kept, oldest deleted first once the store has taken them; 0 = no bound on the size")
	fs.DurationVar(&c.EventsFileMaxAge, "events-file-max-age", 720*time.Hour, "embedded store: an event file last written longer ago is deleted once the store has taken it; 0 = no bound on the age")
	fs.Int64Var(&c.SpoolMaxBytes, "spool-max-bytes", 1<<30, "bound of the local log of clicks and events that the store or the sink has not taken; past it new ones are dropped")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", time.Hour, "embedded store: how often records expired for a week (visitors' clicks, click claims, associations) are deleted; 0 = never")
	c.ReportRetention = store.DefaultReportRetention
	fs.Var((*dayDuration)(&c.ReportRetention), "report-retention", "how long a report's day is kept after it ends: days (400d) or a Go duration (9600h)")
}

// dayDuration is a duration flag that also takes whole days, "400d", as
// retentions are given; it prints whole days that way.
type dayDuration time.Duration

func (d *dayDuration) String() string {
	v := time.Duration(*d)
	if v != 0 && v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d *dayDuration) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 32)
		if err != nil {
			return fmt.Errorf("%q: want whole days such as 400d, or a duration such as 9600h", s)
		}
		*d = dayDuration(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: want whole days such as 400d, or a duration such as 9600h", s)
	}
	*d = dayDuration(v)
	return nil
}

// ParseFlags reads args, then REFGATE_* environment variables, then the YAML
// file named by --config / REFGATE_CONFIG; the first to set a value wins.
// Asked for help (-h, --help), it writes the flags to help and returns
// flag.ErrHelp; a command line it cannot read is a usageError.
func (c *Config) ParseFlags(name string, args []string, help io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.flags(fs)
	if err := parseFlags(fs, args, help, commandDoc(name)); err != nil {
		return err
	}
	return c.Validate()
}

// Validate checks values the flag package cannot.
func (c *Config) Validate() error {
	var errs []error
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format must be text or json, got %q", c.LogFormat))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %v", err))
	}
	if c.RedisURL != "" && c.RedisAddrs != "" {
		errs = append(errs, errors.New("give --redis-url or --redis-addrs, not both"))
	}
	if c.RedisCluster && c.RedisURL == "" && c.RedisAddrs == "" {
		errs = append(errs, errors.New("--redis-cluster needs --redis-addrs or --redis-url"))
	}
	if c.AuthFailureLimit < 0 {
		errs = append(errs, errors.New("--auth-failure-limit must not be negative (0 = no limit)"))
	}
	if c.ShutdownDelay < 0 {
		errs = append(errs, errors.New("--shutdown-delay must not be negative"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	errs = append(errs, c.checkSecrets()...)
	if !attribution.ValidPhoneRegion(c.PhoneRegion) {
		errs = append(errs, fmt.Errorf("--phone-region %q is not a region phonenumbers knows: want a two-letter code such as CN or US", c.PhoneRegion))
	}
	if c.QueueSize < 1 || c.BatchSize < 1 || c.FlushInterval <= 0 || c.LinkCacheTTL <= 0 {
		errs = append(errs, errors.New("--queue-size, --batch-size, --flush-interval and --link-cache-ttl must be positive"))
	}
	if c.EventsStreams < 1 || c.EventsFileMaxBytes < 1 || c.SpoolMaxBytes < 1 {
		errs = append(errs, errors.New("--events-streams, --events-file-max-bytes and --spool-max-bytes must be positive"))
	}
	if c.SweepInterval < 0 {
		errs = append(errs, errors.New("--sweep-interval must not be negative"))
	}
	if c.ReportRetention < 24*time.Hour {
		errs = append(errs, errors.New("--report-retention must be at least a day (1d)"))
	}
	if c.EventsStreamMaxLen < 0 || c.EventsFileKeep < 0 || c.EventsFileKeepBytes < 0 || c.EventsFileMaxAge < 0 {
		errs = append(errs, errors.New("--events-stream-maxlen, --events-file-keep, --events-file-keep-bytes and --events-file-max-age must not be negative"))
	}
	if c.EdgeMaxConns < 1 || c.EdgeMaxConnsPerIP < 0 || c.EdgeIdleTimeout <= 0 || c.AttributionRate < 0 {
		errs = append(errs, errors.New("--edge-max-conns and --edge-idle-timeout must be positive, --edge-max-conns-per-ip and --attribution-rate not negative"))
	}
	if c.APIMaxConns < 1 {
		errs = append(errs, errors.New("--api-max-conns must be at least 1"))
	}
	if c.GeoIPASNDB != "" && c.GeoIPDB == "" {
		errs = append(errs, errors.New("--geoip-asn-db needs --geoip-db"))
	}
	errs = append(errs, c.checkValues()...)
	return errors.Join(errs...)
}

// checkSecrets refuses configured secrets that anyone could guess or that
// give one client another's rights: a token or key under secrets.MinLen
// bytes or a placeholder from an example file, the same token for two
// roles, a placeholder as the Redis password. An empty token or key is
// generated, and fine. The errors name the setting, never the value.
func (c *Config) checkSecrets() []error {
	var errs []error
	bad := func(flag string, err error) {
		errs = append(errs, fmt.Errorf("%s (%s) %w", flag, envName(flag), err))
	}
	for _, s := range []struct{ flag, v string }{{"--admin-token", c.AdminToken}, {"--storefront-token", c.StorefrontToken},
		{"--metrics-token", c.MetricsToken}, {"--fingerprint-key", c.FingerprintKey}} {
		if s.v == "" {
			continue
		}
		if err := secrets.Check(s.v); err != nil {
			bad(s.flag, err)
		}
	}
	if c.AdminToken != "" && c.AdminToken == c.StorefrontToken {
		errs = append(errs, errors.New("--admin-token and --storefront-token must differ: the storefront would have admin rights"))
	}
	if c.MetricsToken != "" && (c.MetricsToken == c.AdminToken || c.MetricsToken == c.StorefrontToken) {
		errs = append(errs, errors.New("--metrics-token must differ from --admin-token and --storefront-token: it is meant to read /metrics only"))
	}
	if c.CookieKeys != "" {
		n := len(errs)
		for _, kv := range strings.Split(c.CookieKeys, ",") {
			id, secret, _ := strings.Cut(strings.TrimSpace(kv), ":")
			if secrets.Placeholder(secret) {
				bad("--cookie-keys", fmt.Errorf("key %q %w", id, secrets.Check(secret)))
			} else if _, err := cookie.ParseKeys(kv); err != nil && strings.TrimSpace(kv) != "" {
				errs = append(errs, fmt.Errorf("--cookie-keys (REFGATE_COOKIE_KEYS): %w", err))
			}
		}
		if _, err := cookie.ParseKeys(c.CookieKeys); err != nil && len(errs) == n {
			errs = append(errs, fmt.Errorf("--cookie-keys (REFGATE_COOKIE_KEYS): %w", err))
		}
	}
	if secrets.Placeholder(c.RedisPassword) {
		bad("--redis-password", errors.New("is a placeholder from an example file: use the password set in the Redis ACL"))
	}
	if u, err := url.Parse(c.RedisURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && secrets.Placeholder(pw) {
			bad("--redis-url", errors.New("holds a placeholder password from an example file: use the password set in the Redis ACL"))
		}
	}
	return errs
}

// envName is the environment variable of a flag: --admin-token is
// REFGATE_ADMIN_TOKEN.
func envName(flag string) string {
	return "REFGATE_" + strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(flag, "--"), "-", "_"))
}

// Redacted returns the effective configuration as key/value pairs for one
// log line, with secrets masked.
func (c *Config) Redacted() []any {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	saved := *c
	c.flags(fs) // binds the flags to c's fields, resetting them to defaults...
	*c = saved  // ...so put the effective values back
	var out []any
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		switch {
		case secretFlags[f.Name] && v != "":
			v = mask(f.Name, v)
		case f.Name == "redis-url":
			v = maskURL(v)
		}
		out = append(out, f.Name, v)
	})
	return out
}

func mask(name, v string) string {
	if name == "cookie-keys" {
		var ids []string
		for _, kv := range strings.Split(v, ",") {
			id, _, _ := strings.Cut(strings.TrimSpace(kv), ":")
			ids = append(ids, id+":***")
		}
		return strings.Join(ids, ",")
	}
	return "***"
}

func maskURL(v string) string {
	// redis://user:password@host → redis://user:***@host
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return v
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return v
	}
	user, _, hasPw := strings.Cut(userinfo, ":")
	if hasPw {
		return scheme + "://" + user + ":***@" + host
	}
	return v
}

// Check goes further than Validate (which has checked the secrets, cookie
// keys among them), parsing every value serve would parse (addresses,
// proxies, the Redis URL, the GeoIP database) without opening a store or a
// listener: `refgate validate` runs it for CI/CD pipelines.
func (c *Config) Check() error {
	var errs []error
	for name, addr := range map[string]string{"--listen": c.Listen, "--api-listen": c.APIListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %v", name, addr, err))
		}
	}
	if _, err := redirect.ParsePrefixes(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("--trusted-proxies: %w", err))
	}
	if c.RedisURL != "" {
		if _, err := (redisstore.Config{URL: c.RedisURL}).Options(); err != nil {
			errs = append(errs, fmt.Errorf("--redis-url: %w", err))
		}
	}
	if _, err := c.bots(); err != nil {
		errs = append(errs, err)
	}
	if c.GeoIPDB != "" {
		if _, err := geo.Open(c.GeoIPDB, c.GeoIPASNDB, nil, nil); err != nil {
			errs = append(errs, fmt.Errorf("--geoip-db: %w", err))
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--public-url %q: want an http(s) URL", c.PublicURL))
		}
	}
	return errors.Join(errs...)
}

// bots returns the crawler list of --bot-patterns, or the built-in one.
func (c *Config) bots() (*redirect.BotList, error) {
	if c.BotPatterns == "" {
		return redirect.DefaultBotList(), nil
	}
	l, err := redirect.LoadBotList(c.BotPatterns)
	if err != nil {
		return nil, fmt.Errorf("--bot-patterns: %w", err)
	}
	return l, nil
}
