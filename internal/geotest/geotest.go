// Package geotest writes small MaxMind DB files for tests, with
// maxmind/mmdbwriter, in the layout of GeoLite2 City and ASN.
package geotest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// City is one network's entry in a City database.
type City struct {
	Network string // CIDR
	Country string // ISO code
	Name    string // English city name
}

// ASN is one network's entry in an ASN database.
type ASN struct {
	Network string
	Number  uint32
	Org     string
}

// WriteCity writes a GeoLite2-City database with entries to path, by way of
// a temporary file renamed into place (as geoipupdate does).
func WriteCity(tb testing.TB, path string, entries ...City) {
	tb.Helper()
	t := tree(tb, "GeoLite2-City")
	for _, e := range entries {
		insert(tb, t, e.Network, mmdbtype.Map{
			"country": mmdbtype.Map{"iso_code": mmdbtype.String(e.Country),
				"names": mmdbtype.Map{"en": mmdbtype.String(e.Country)}},
			"city": mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(e.Name)}},
		})
	}
	write(tb, t, path)
}

// WriteASN writes a GeoLite2-ASN database with entries to path.
func WriteASN(tb testing.TB, path string, entries ...ASN) {
	tb.Helper()
	t := tree(tb, "GeoLite2-ASN")
	for _, e := range entries {
		insert(tb, t, e.Network, mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(e.Number),
			"autonomous_system_organization": mmdbtype.String(e.Org),
		})
	}
	write(tb, t, path)
}

func tree(tb testing.TB, typ string) *mmdbwriter.Tree {
	t, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: typ, RecordSize: 24,
		IncludeReservedNetworks: true})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func insert(tb testing.TB, t *mmdbwriter.Tree, cidr string, v mmdbtype.Map) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		tb.Fatal(err)
	}
	if err := t.Insert(n, v); err != nil {
		tb.Fatal(err)
	}
}

func write(tb testing.TB, t *mmdbwriter.Tree, path string) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mmdb-*")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := t.WriteTo(tmp); err != nil {
		tb.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		tb.Fatal(err)
	}
}
