package main

import (
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Stamped at build time, as make build, make release and the Dockerfile do:
//
//	-ldflags "-X main.version=v1.2.3 -X main.revision=1a2b3c4d5e6f -X main.buildDate=2026-12-01T10:00:00Z"
//
// Each one left empty is read from the build info the go command records
// (the module version, vcs.revision, vcs.time and vcs.modified).
var (
	version   = ""
	revision  = ""
	buildDate = "" // the commit's time, UTC, RFC 3339: the same source builds the same binary
)

// build is what one binary says of itself: `refgate version` and the
// refgate_build_info metric.
type build struct {
	Version  string // "devel" when neither stamped nor in the build info
	Revision string // short commit hash, "-dirty" when built from a modified tree; "" when unknown
	Date     string // "" when unknown
	Go       string // runtime.Version()
	Platform string // GOOS/GOARCH
}

// readBuild is this binary's build, from the stamped variables and then
// the build info.
func readBuild() build {
	bi, _ := debug.ReadBuildInfo()
	return buildFrom(version, revision, buildDate, bi)
}

// buildFrom fills what the stamped values leave empty from bi (nil: no
// build info).
func buildFrom(v, rev, date string, bi *debug.BuildInfo) build {
	b := build{Version: v, Revision: rev, Date: date, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		var vcsRev, vcsTime string
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if b.Revision == "" && vcsRev != "" {
			b.Revision = vcsRev[:min(12, len(vcsRev))]
			if dirty {
				b.Revision += "-dirty"
			}
		}
		if b.Date == "" {
			b.Date = vcsTime
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// String is the version line without the program name:
// v0.15.0 (revision 1a2b3c4d5e6f, built 2026-12-01T10:00:00Z, go1.27.3 linux/amd64).
func (b build) String() string {
	var parts []string
	if b.Revision != "" {
		parts = append(parts, "revision "+b.Revision)
	}
	if b.Date != "" {
		parts = append(parts, "built "+b.Date)
	}
	parts = append(parts, b.Go+" "+b.Platform)
	return b.Version + " (" + strings.Join(parts, ", ") + ")"
}

// Version is the stamped version, or the module version from the build
// info, or "devel".
func Version() string { return readBuild().Version }

// buildInfoGauge is refgate_build_info{version,revision,goversion}, always
// 1: joined on the labels, it says which build each instance runs.
func buildInfoGauge() prometheus.Collector {
	b := readBuild()
	rev := b.Revision
	if rev == "" {
		rev = "unknown"
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "refgate_build_info",
		Help:        "Always 1; the labels say which build of refgate runs.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": rev, "goversion": b.Go},
	}, func() float64 { return 1 })
}
