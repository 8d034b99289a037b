// Package geo looks client IPs up in MaxMind GeoIP2 / GeoLite2 databases
// (a City database and, optionally, an ASN database) and reloads them when
// the files change on disk, without a restart and without a failed lookup
// during the swap.
package geo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/oschwald/geoip2-golang/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Result is what the databases say of one IP.
type Result struct {
	Country string // ISO 3166-1 alpha-2
	City    string // English name
	ASN     uint
	ASOrg   string
}

// DB is a pair of databases that can be swapped for newer files while
// lookups go on.
type DB struct {
	cityPath, asnPath string
	log               *slog.Logger
	cur               atomic.Pointer[readers]
	reloads           *prometheus.CounterVec
}

type readers struct {
	city, asn *geoip2.Reader
}

// Open loads the City database at cityPath and, if asnPath is not empty,
// the ASN database. reg takes the reload counter; nil for none.
func Open(cityPath, asnPath string, log *slog.Logger, reg prometheus.Registerer) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &DB{cityPath: cityPath, asnPath: asnPath, log: log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refgate_geoip_reloads_total",
			Help: "GeoIP database reloads after the files changed on disk, by result (ok, error)."}, []string{"result"})}
	d.reloads.WithLabelValues("ok")
	d.reloads.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(d.reloads)
	}
	r, err := d.load()
	if err != nil {
		return nil, err
	}
	d.cur.Store(r)
	return d, nil
}

// load reads both files whole into memory. A reader over a byte slice needs
// no Close: the one a reload replaces stays valid for lookups still using
// it and is freed by the garbage collector, so a swap never fails a lookup
// (an mmap'ed reader closed under a lookup would).
func (d *DB) load() (*readers, error) {
	r := &readers{}
	var err error
	if r.city, err = openFile(d.cityPath, "City"); err != nil {
		return nil, err
	}
	if d.asnPath != "" {
		if r.asn, err = openFile(d.asnPath, "ASN"); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func openFile(path, kind string) (*geoip2.Reader, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := geoip2.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if t := r.Metadata().DatabaseType; !strings.Contains(t, kind) && !(kind == "City" && strings.Contains(t, "Enterprise")) {
		return nil, fmt.Errorf("%s is a %s database, want a %s database", path, t, kind)
	}
	return r, nil
}

// Lookup fills r with what the databases know of ip and reports whether
// they know anything.
func (d *DB) Lookup(ip netip.Addr, r *Result) bool {
	rd := d.cur.Load()
	ip = ip.Unmap()
	found := false
	if c, err := rd.city.City(ip); err == nil && c.HasData() {
		r.Country, r.City = c.Country.ISOCode, c.City.Names.English
		found = r.Country != "" || r.City != ""
	}
	if rd.asn != nil {
		if a, err := rd.asn.ASN(ip); err == nil && a.HasData() {
			r.ASN, r.ASOrg = a.AutonomousSystemNumber, a.AutonomousSystemOrganization
			found = true
		}
	}
	return found
}

// Reload reads the files again and swaps them in; on error the databases
// in use stay.
func (d *DB) Reload() error {
	r, err := d.load()
	if err != nil {
		d.reloads.WithLabelValues("error").Inc()
		return err
	}
	d.cur.Store(r)
	d.reloads.WithLabelValues("ok").Inc()
	return nil
}

// Watch reloads the databases whenever their files change, until ctx ends.
// It watches the files' directories, so the usual replace-by-rename of
// geoipupdate is seen as well as a copy in place; events are debounced, and
// a file caught half-written fails to load, keeps the old database and is
// tried again on the next change.
func (d *DB) Watch(ctx context.Context, debounce time.Duration) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	names := map[string]bool{}
	for _, p := range []string{d.cityPath, d.asnPath} {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		names[abs] = true
		if err := w.Add(filepath.Dir(abs)); err != nil {
			return err
		}
	}
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("geoip watcher closed")
			}
			abs, _ := filepath.Abs(ev.Name)
			if names[abs] && ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Rename) != 0 {
				timer = time.After(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("geoip watcher closed")
			}
			d.log.Warn("geoip file watcher", "err", err)
		case <-timer:
			timer = nil
			if err := d.Reload(); err != nil {
				d.log.Warn("geoip database changed but cannot be loaded; keeping the one in use", "err", err)
			} else {
				d.log.Info("geoip database reloaded", "city", d.cityPath, "asn", d.asnPath)
			}
		}
	}
}
