package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/refgate/refgate/api"
	"github.com/refgate/refgate/attribution"
	"github.com/refgate/refgate/cookie"
	"github.com/refgate/refgate/events"
	"github.com/refgate/refgate/geo"
	"github.com/refgate/refgate/internal/clock"
	"github.com/refgate/refgate/internal/connlimit"
	"github.com/refgate/refgate/internal/secrets"
	"github.com/refgate/refgate/redirect"
	"github.com/refgate/refgate/store"
	"github.com/refgate/refgate/store/embedded"
	"github.com/refgate/refgate/store/redisstore"
)

// Main is one running refgate server. Tests build one, set Config (binding
// to 127.0.0.1:0), Run it and Close it, without flag parsing.
type Main struct {
	Config    Config
	LogOutput io.Writer

	Logger   *slog.Logger
	Registry *prometheus.Registry
	Clock    *clock.Clock
	Store    store.Store
	// Pipeline carries every click's record to the store and every event
	// to the sink, through the local log.
	Pipeline *events.Pipeline
	Geo      *geo.DB             // nil without --geoip-db
	stream   *events.RedisStream // the sink on Redis; nil otherwise
	Edge     *redirect.Handler
	API      *api.Server

	edgeSrv, apiSrv *fasthttp.Server
	edgeLn, apiLn   net.Listener

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closing   atomic.Bool
	done      chan struct{}
	errOnce   sync.Once
	err       error
	closeOnce sync.Once
	closeErr  error
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	m := &Main{done: make(chan struct{})}
	m.Config.flags(flagSink())
	return m
}

// Done is closed when a listener fails; Err says why.
func (m *Main) Done() <-chan struct{} { return m.done }

// Err is the error that closed Done, if any.
func (m *Main) Err() error { return m.err }

func (m *Main) fail(err error) {
	m.errOnce.Do(func() { m.err = err; close(m.done) })
}

// EdgeAddr and APIAddr are the bound addresses (useful with port 0).
func (m *Main) EdgeAddr() string { return m.edgeLn.Addr().String() }
func (m *Main) APIAddr() string  { return m.apiLn.Addr().String() }

// Run opens the store, starts the background work and both listeners, and
// returns once they accept connections.
func (m *Main) Run(ctx context.Context) (err error) {
	c := &m.Config
	if m.LogOutput == nil {
		m.LogOutput = os.Stderr
	}
	m.Logger = newLogger(m.LogOutput, c.LogFormat, c.LogLevel)
	log := m.Logger
	redis.SetLogger(redisPrinter{log})
	trusted, err := redirect.ParsePrefixes(c.TrustedProxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	bots, err := c.bots()
	if err != nil {
		return err
	}

	m.Registry = prometheus.NewRegistry()
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.Registry.MustRegister(buildInfoGauge())
	m.Clock = new(clock.Clock)

	generated := map[string]string{}
	adminToken, sfToken := c.AdminToken, c.StorefrontToken
	if adminToken == "" {
		adminToken = secrets.Random(24)
		generated["admin_token"] = adminToken
	}
	if sfToken == "" {
		sfToken = secrets.Random(24)
		generated["storefront_token"] = sfToken
	}
	keys, err := m.cookieKeys()
	if err != nil {
		return err
	}
	signer, err := cookie.NewSigner(keys)
	if err != nil {
		return fmt.Errorf("--cookie-keys: %w", err)
	}
	fpKey, err := m.secret(c.FingerprintKey, "fingerprint-key", "--fingerprint-key")
	if err != nil {
		return err
	}
	hasher, err := attribution.NewFingerprintHasherWithRegion([]byte(fpKey), c.PhoneRegion)
	if err != nil {
		return fmt.Errorf("--phone-region: %w", err)
	}

	st, err := m.openStore()
	if err != nil {
		return err
	}
	inst := store.Instrument(st, m.Registry)
	m.Store = inst
	pingCtx, cancelPing := context.WithTimeout(context.Background(), 5*time.Second)
	err = inst.Ping(pingCtx)
	cancelPing()
	storeAnswered := err == nil
	if !storeAnswered {
		// Start anyway: the edge's /healthz says starting and /readyz
		// unavailable until the store answers.
		log.Error("the store does not answer yet; starting, not ready", "err", err)
	}

	bgCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if err := m.openPipeline(bgCtx, st); err != nil {
		return err
	}
	if rs, ok := st.(*redisstore.Store); ok {
		m.checkRedisMemory(rs)
		mem := redisstore.NewMemoryGauges(rs, m.Registry)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			mem.Run(bgCtx, 5*time.Second)
		}()
	}
	if m.stream != nil {
		// The consumer groups' lag against the cap: the cap trims entries
		// whether or not every group has read them.
		mon := events.NewStreamMonitor(events.StreamMonitorConfig{Client: m.stream.Client(), Keys: m.stream.Keys(),
			MaxLen: m.stream.MaxLen(), Logger: log, Registerer: m.Registry})
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			mon.Run(bgCtx)
		}()
	}

	metrics := redirect.NewMetrics(m.Registry)
	cache := redirect.NewLinkCache(m.Store, redirect.LinkCacheConfig{TTL: c.LinkCacheTTL, Logger: log, Metrics: metrics})
	m.Edge = redirect.New(redirect.Config{Links: cache, Log: m.Pipeline, Signer: signer, Hasher: hasher,
		Now: m.Clock.Now, TrustedProxies: trusted, CookieDomain: c.CookieDomain, CookieSecure: c.CookieSecure,
		Logger: log, Metrics: metrics, Bots: bots, AttributionRate: c.AttributionRate})
	// The edge is ready once the store has answered once; from then on a
	// store outage is reported (/readyz, refgate_store_up, an alert), not
	// a reason to leave the load balancer: the link cache answers clicks.
	m.Edge.SetStarting(!storeAnswered)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		inst.Watch(bgCtx, 2*time.Second, time.Second, func() {
			if m.Edge.Starting() {
				log.Info("the store answers; ready")
			}
			m.Edge.SetStarting(false)
		})
	}()
	var apiEvents api.Emitter
	if c.Events { // an interface holding a nil pointer would not be nil
		apiEvents = m.Pipeline
	}

	if m.edgeLn, err = net.Listen("tcp", c.Listen); err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if m.apiLn, err = net.Listen("tcp", c.APIListen); err != nil {
		return fmt.Errorf("--api-listen: %w", err)
	}
	publicURL := c.PublicURL
	if publicURL == "" {
		_, port, _ := net.SplitHostPort(m.EdgeAddr())
		publicURL = "http://localhost:" + port
		if !loopbackOnly(c.Listen) {
			log.Warn("--public-url is not set: links report "+publicURL+"/r/… to the admin API; set REFGATE_PUBLIC_URL to the edge's public base URL (https://go.example.com)",
				"listen", c.Listen)
		}
	}
	authLimit := c.AuthFailureLimit
	if authLimit == 0 {
		authLimit = -1 // the flag's 0 is no limit; the API's is its default
	}
	m.API = api.New(api.Config{Store: m.Store, AdminToken: adminToken, StorefrontToken: sfToken,
		MetricsToken: c.MetricsToken, Clock: m.Clock, TestClock: c.TestClock, Hasher: hasher, Signer: signer,
		PublicURL: publicURL, Gatherer: m.Registry, Registerer: m.Registry, Logger: log, Events: apiEvents, Log: m.Pipeline,
		StoreWrites: inst, TrustedProxies: trusted, AuthFailureLimit: authLimit, AccessLog: c.AccessLog})
	// Drop cached links, programs and promoters whenever any instance
	// changes one.
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.watchInvalidations(bgCtx, cache)
	}()

	m.edgeSrv = &fasthttp.Server{
		Handler:               m.Edge.ServeFastHTTP,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           5 * time.Second,
		WriteTimeout:          5 * time.Second,
		IdleTimeout:           c.EdgeIdleTimeout,
		// Buffers go back to their pools between requests, so an idle
		// connection holds no 16 KiB read buffer.
		ReduceMemoryUsage: true,
		Concurrency:       c.EdgeMaxConns,
		// 16 KiB: a browser with an 8 KB cookie header must not get 431.
		ReadBufferSize:     16 << 10,
		MaxRequestBodySize: 4 << 10, // the edge takes no bodies
		CloseOnShutdown:    true,
		Logger:             slogPrinter{log},
	}
	m.edgeLn = connlimit.New(m.edgeLn, connlimit.Config{MaxConns: c.EdgeMaxConns, MaxPerAddr: c.EdgeMaxConnsPerIP,
		Exempt: trusted, Registerer: m.Registry, Name: "edge"})
	m.apiLn = connlimit.New(m.apiLn, connlimit.Config{MaxConns: c.APIMaxConns, Registerer: m.Registry, Name: "api"})
	m.apiSrv = &fasthttp.Server{
		Handler:               m.API.ServeFastHTTP,
		ErrorHandler:          m.API.ErrorHandler,
		NoDefaultServerHeader: true,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          30 * time.Second, // pprof profiles take a while
		IdleTimeout:           60 * time.Second,
		ReadBufferSize:        16 << 10,
		MaxRequestBodySize:    api.MaxBodySize,
		CloseOnShutdown:       true,
		Logger:                slogPrinter{log},
	}
	// Logged before the listeners answer, so that whoever sees /readyz
	// answer can already read the generated tokens.
	log.Info("refgate starting", append([]any{"version", Version()}, c.Redacted()...)...)
	for k, v := range generated {
		log.Warn("generated a "+strings.ReplaceAll(k, "_", " ")+" for this run only; set it to keep one", k, v)
	}
	for _, s := range []struct {
		srv *fasthttp.Server
		ln  net.Listener
	}{{m.edgeSrv, m.edgeLn}, {m.apiSrv, m.apiLn}} {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := s.srv.Serve(s.ln); err != nil && !m.closing.Load() {
				m.fail(fmt.Errorf("listener %s: %w", s.ln.Addr(), err))
			}
		}()
	}

	log.Info("refgate serving", "edge", m.EdgeAddr(), "api", m.APIAddr(), "store", storeKind(c), "public_url", publicURL,
		"bots", bots.String())
	return nil
}

// loopbackOnly reports whether addr (host:port) listens on a loopback
// address only: a run on one machine, where localhost is the right base URL.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func storeKind(c *Config) string {
	switch {
	case c.RedisURL == "" && c.RedisAddrs == "":
		return "embedded"
	case c.RedisCluster || c.RedisAddrs != "":
		return "redis-cluster"
	}
	return "redis"
}

func (m *Main) openStore() (store.Store, error) {
	c := &m.Config
	if c.RedisURL == "" && c.RedisAddrs == "" {
		// Swept by the server's clock, the one the rules read: with
		// --test-clock, moving it expires records as it expires cookies.
		sweep := c.SweepInterval
		if sweep == 0 {
			sweep = -1 // off
		}
		s, err := embedded.New(embedded.Config{Dir: c.DataDir, Now: m.Clock.Now, SweepInterval: sweep,
			ReportRetention: c.ReportRetention, Registerer: m.Registry, Logger: m.Logger})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	rc := redisstore.Config{URL: c.RedisURL, Cluster: c.RedisCluster || c.RedisAddrs != "",
		Username: c.RedisUsername, Password: c.RedisPassword,
		PoolSize: c.RedisPoolSize, ReadTimeout: c.RedisTimeout, WriteTimeout: c.RedisTimeout,
		ReportRetention: c.ReportRetention}
	for _, a := range strings.Split(c.RedisAddrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			rc.Addrs = append(rc.Addrs, a)
		}
	}
	s, err := redisstore.New(rc)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// openPipeline opens the GeoIP databases and starts the pipeline with the
// sink that goes with the store: the Redis Stream(s) on Redis, its own log
// as JSON Lines event files in the data dir on the embedded store. Its log
// lives in the data dir in both cases.
func (m *Main) openPipeline(ctx context.Context, st store.Store) error {
	c, log := &m.Config, m.Logger
	host, _ := os.Hostname()
	cfg := events.Config{Store: m.Store, MaxBytes: c.SpoolMaxBytes, QueueSize: c.QueueSize, BatchSize: c.BatchSize,
		FlushInterval: c.FlushInterval, WriteTimeout: max(2*c.RedisTimeout, time.Second),
		Source: "refgate/" + host, KeepFullIP: c.KeepFullIP, Logger: log, Registerer: m.Registry}
	if !c.Events {
		log.Info("events are off (--events=false)")
	} else {
		if c.GeoIPDB == "" {
			log.Warn("no --geoip-db: click events carry no geo fields")
		} else {
			db, err := geo.Open(c.GeoIPDB, c.GeoIPASNDB, log, m.Registry)
			if err != nil {
				return fmt.Errorf("--geoip-db: %w", err)
			}
			m.Geo = db
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				if err := db.Watch(ctx, 500*time.Millisecond); err != nil {
					log.Error("cannot watch the geoip database files; they will not be reloaded", "err", err)
				}
			}()
			cfg.Geo = func(ip netip.Addr, g *events.Geo) bool {
				var r geo.Result
				if !db.Lookup(ip, &r) {
					return false
				}
				*g = events.Geo{Country: r.Country, City: r.City, ASN: r.ASN, ASOrg: r.ASOrg}
				return true
			}
		}
		switch s := st.(type) {
		case *redisstore.Store:
			m.stream = events.NewRedisStream(s.Client(), events.StreamKeys(storeKind(c) == "redis-cluster", c.EventsStreams), c.EventsStreamMaxLen)
			cfg.Sink = m.stream
		default:
			cfg.Files, cfg.SegmentBytes = true, c.EventsFileMaxBytes
			cfg.FileKeep, cfg.FileKeepBytes, cfg.FileMaxAge = c.EventsFileKeep, c.EventsFileKeepBytes, c.EventsFileMaxAge
		}
	}
	cfg.Dir = events.LogDir(c.DataDir, cfg.Files)
	p, err := events.New(cfg)
	if err != nil {
		return fmt.Errorf("log of clicks and events: %w", err)
	}
	m.Pipeline = p
	return nil
}

// checkRedisMemory reads Redis's memory settings (INFO memory, on every
// master of a Cluster) and logs a warning for each that puts the
// attribution state at risk (redisstore.MemoryWarnings): no maxmemory, an
// eviction policy, or event streams that at their cap would take more than
// a third of it, at events.StreamEntryBytes per entry. It only warns: a
// deliberate setup (a Redis of its own for the stream) is the operator's
// call.
func (m *Main) checkRedisMemory(st *redisstore.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nodes, err := st.Memory(ctx)
	if err != nil {
		m.Logger.Warn("cannot read Redis's memory settings (INFO memory); check maxmemory and maxmemory-policy yourself", "err", err)
		return
	}
	streams := map[string]int64{} // stream keys per node
	var maxLen int64
	if m.stream != nil {
		maxLen = m.stream.MaxLen()
		for _, k := range m.stream.Keys() {
			addr, err := st.NodeFor(ctx, k)
			if err != nil {
				m.Logger.Warn("cannot tell which Redis holds the event stream", "key", k, "err", err)
				continue
			}
			streams[addr]++
		}
	}
	for _, n := range nodes {
		reserved := streams[n.Addr] * maxLen * events.StreamEntryBytes
		if streams[n.Addr] > 0 && maxLen == 0 {
			reserved = -1
		}
		for _, w := range redisstore.MemoryWarnings(n, reserved) {
			m.Logger.Warn(w, "redis", n.Addr, "maxmemory", n.MaxMemory, "maxmemory_policy", n.Policy,
				"used_memory", n.Used, "stream_keys", streams[n.Addr], "stream_bytes_at_cap", max(reserved, 0))
		}
	}
}

// cookieKeys returns --cookie-keys, or the key kept in the data dir
// (generated on first start), so a restart keeps verifying old cookies.
func (m *Main) cookieKeys() ([]cookie.Key, error) {
	v, err := m.secret(m.Config.CookieKeys, "cookie-keys", "--cookie-keys")
	if err != nil {
		return nil, err
	}
	keys, err := cookie.ParseKeys(v)
	if err != nil {
		return nil, fmt.Errorf("--cookie-keys: %w", err)
	}
	return keys, nil
}

// secret returns the flag's value, or the one kept in the data dir file
// name, generating it on first use.
func (m *Main) secret(flagValue, name, flagName string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	path := filepath.Join(m.Config.DataDir, name)
	gen := func() string { return secrets.Random(32) }
	if name == "cookie-keys" {
		gen = func() string { return "k" + time.Now().UTC().Format("20060102") + ":" + secrets.Random(32) }
	}
	v, created, err := secrets.LoadOrCreate(path, gen)
	if err != nil {
		return "", fmt.Errorf("%s not set and cannot keep one in %s: %w", flagName, path, err)
	}
	if created {
		m.Logger.Warn("generated "+name+" and kept it in the data dir; instances sharing a Redis store must share it via "+flagName, "path", path)
	}
	return v, nil
}

func (m *Main) watchInvalidations(ctx context.Context, cache *redirect.LinkCache) {
	for ctx.Err() == nil {
		err := m.Store.WatchInvalidations(ctx, func(inv store.Invalidation) {
			cache.Invalidate(inv)
			m.API.Invalidate(inv)
		})
		if ctx.Err() != nil {
			return
		}
		// Whatever happened, cached entries may be stale now.
		cache.Invalidate(store.Invalidation{Kind: store.All})
		m.API.Invalidate(store.Invalidation{Kind: store.All})
		m.Logger.Warn("cache invalidation feed stopped; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Close shuts down in order: readiness goes 503, the drain delay passes, the
// listeners close (in-flight requests finish), the pipeline writes what is
// queued to its log and delivers what it can, background work stops, the
// store closes. Safe to call twice.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	var errs []error
	m.closing.Store(true)
	if m.Edge != nil {
		m.Edge.SetDraining(true)
	}
	if m.API != nil {
		m.API.SetDraining(true)
	}
	if m.Config.ShutdownDelay > 0 && m.edgeSrv != nil {
		m.Logger.Info("draining: readiness is 503", "for", m.Config.ShutdownDelay)
		time.Sleep(m.Config.ShutdownDelay)
	}
	// Not the caller's context: shutdown must finish even if the signal
	// context is already cancelled. --shutdown-timeout bounds all of it, so
	// that a dead store or sink cannot hold a restart for longer.
	ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
	defer cancel()
	// fasthttp waits for a connection's first request until its read
	// timeout; clients' spare connections, opened ahead of requests that
	// will not come now, are closed instead.
	sweepDone := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			for _, ln := range []net.Listener{m.edgeLn, m.apiLn} {
				if l, ok := ln.(*connlimit.Listener); ok {
					l.CloseUnused(time.Second)
				}
			}
			select {
			case <-sweepDone:
				return
			case <-t.C:
			}
		}
	}()
	defer close(sweepDone)
	for _, s := range []*fasthttp.Server{m.edgeSrv, m.apiSrv} {
		if s != nil {
			if err := s.ShutdownWithContext(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shutdown: %w", err))
			}
		}
	}
	// A Serve that had not yet registered its listener when Shutdown ran
	// would never return: closing the listeners ends it either way.
	for _, ln := range []net.Listener{m.edgeLn, m.apiLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if m.Pipeline != nil {
		// Every click and decision is queued by now: write them to the
		// log, then one more delivery attempt while the store and the sink
		// answer; the rest stays in the log for the next start.
		if err := m.Pipeline.Close(ctx); err != nil {
			errs = append(errs, err)
		}
		if m.Logger != nil {
			m.Logger.Info("pipeline stopped", "log_bytes", m.Pipeline.LogBytes())
		}
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.Store != nil {
		if err := m.Store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.Logger != nil {
		m.Logger.Info("refgate stopped")
	}
	return errors.Join(errs...)
}
