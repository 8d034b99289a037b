# refgate: make help lists the targets.
GO      ?= go
# The toolchain every target builds and tests with (go.mod's toolchain line):
# go1.26.8 carries standard-library vulnerabilities fixed later. The go
# command fetches it from the module proxy on first use; override with
# make GOTOOLCHAIN=local ... to use the installed Go.
export GOTOOLCHAIN := go1.27.3
# What every binary says in refgate version (and .ci/release stamps the same
# way): the tag or commit, the commit (12 hex digits, -dirty for a modified
# tree) and the commit's time in UTC.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell test -z "$$(git status --porcelain 2>/dev/null)" || echo -dirty)
DATE     ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
LDFLAGS   = -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.buildDate=$(DATE)
FUZZTIME ?= 30s

.PHONY: help deps build build-load release image run test test-short bench bench-go bench-load fuzz lint lint-api vulncheck

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install what make test runs for real, from Debian, when missing (redis-server, nginx-light, prometheus, chromium, systemd)
	./.ci/deps

build: ## build bin/refgate, static, version stamped
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/refgate ./cmd/refgate

build-load: ## build bin/refgate-load, the load generator
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/refgate-load ./cmd/refgate-load

# VERSION given on the command line (or in the environment) overrides the tag.
RELEASE_VERSION = $(if $(filter file,$(origin VERSION)),,$(VERSION))

release: ## dist/: static binaries for linux/amd64, linux/arm64, darwin/arm64, SHA256SUMS, the image command (from the tag at HEAD, or VERSION=...)
	VERSION='$(RELEASE_VERSION)' GO='$(GO)' ./.ci/release

image: ## docker build of ghcr.io/refgate/refgate:VERSION, stamped as make release stamps (needs a Docker daemon)
	VERSION='$(RELEASE_VERSION)' GO='$(GO)' ./.ci/release image

run: ## run the server on the embedded store in ./data
	$(GO) run ./cmd/refgate serve --admin-token dev-admin-token-local --storefront-token dev-storefront-token --cookie-secure=false

test: deps ## install what is missing (make deps), vet and run every test with the race detector, then the deployment files'
	$(GO) vet ./...
	$(GO) test -race -shuffle=on ./...
	$(GO) test -p 1 -run 'Allocations|Accuracy|KnownDelays|Kill9Clicks|Kill9Ledger|RedisOutage60s|RedisFlood|Attack' ./redirect ./internal/ratelimit ./loadtest ./cmd/refgate
	cd deploy && $(GO) vet ./... && $(GO) test ./...

test-short: ## the tests without the race detector and without building the binary
	$(GO) test -short ./...

bench: bench-go bench-load ## both benchmarks below

bench-go: ## click handler vs a fixed-302 handler; binds and conversions on real Redis (p50/p99), conversions with and without the ledger, a settlement run over 100,000 entries
	$(GO) test ./redirect -run '^$$' -bench 'Click|Sign' -benchtime 2s -count 5
	$(GO) test ./api -run '^$$' -bench StorefrontRedis -benchtime 30000x -count 3
	$(GO) test ./api -run '^$$' -bench 'ConversionLedgerRedis|SettleRedis' -benchtime 3s -count 3

BENCHFLAGS ?= --duration 10s --warmup 3s
bench-load: build build-load ## ceiling, then refgate on the embedded store and on Redis, same load, as ratios
	./bin/refgate-load bench --refgate bin/refgate $(BENCHFLAGS)

fuzz: ## run every fuzzer for FUZZTIME each (default 30s)
	$(GO) test ./cookie      -run '^$$' -fuzz '^FuzzVerify$$'            -fuzztime $(FUZZTIME)
	$(GO) test ./attribution -run '^$$' -fuzz '^FuzzParseDestination$$' -fuzztime $(FUZZTIME)
	$(GO) test ./attribution -run '^$$' -fuzz '^FuzzValidCode$$'        -fuzztime $(FUZZTIME)
	$(GO) test ./attribution -run '^$$' -fuzz '^FuzzParseRate$$'        -fuzztime $(FUZZTIME)
	$(GO) test ./attribution -run '^$$' -fuzz '^FuzzFingerprints$$'     -fuzztime $(FUZZTIME)
	$(GO) test ./attribution -run '^$$' -fuzz '^FuzzMulDivHalfUp$$'     -fuzztime $(FUZZTIME)
	$(GO) test ./attribution -run '^$$' -fuzz '^FuzzRateApply$$'        -fuzztime $(FUZZTIME)
	$(GO) test ./redirect    -run '^$$' -fuzz '^FuzzClientIP$$'         -fuzztime $(FUZZTIME)
	$(GO) test ./api         -run '^$$' -fuzz '^FuzzDecodeProgram$$'    -fuzztime $(FUZZTIME)
	$(GO) test ./api         -run '^$$' -fuzz '^FuzzStorefrontBodies$$' -fuzztime $(FUZZTIME)
	$(GO) test ./api         -run '^$$' -fuzz '^FuzzDuplicateKey$$'     -fuzztime $(FUZZTIME)
	$(GO) test ./api         -run '^$$' -fuzz '^FuzzDuplicateKeyRaw$$'  -fuzztime $(FUZZTIME)
	$(GO) test ./events      -run '^$$' -fuzz '^FuzzLogReplay$$'       -fuzztime $(FUZZTIME)
	$(GO) test ./events      -run '^$$' -fuzz '^FuzzStripReferer$$'    -fuzztime $(FUZZTIME)
	$(GO) test ./events      -run '^$$' -fuzz '^FuzzFastJSONMatchesStd$$' -fuzztime $(FUZZTIME)

lint: ## gofmt and go vet, both modules
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...

# Redocly CLI, pinned; npx fetches it from the npm registry on first use
# (needs Node 20.19+). REDOCLY_TELEMETRY=off: it sends no usage data.
lint-api: ## redocly lint of api/openapi.yaml (needs npx)
	REDOCLY_TELEMETRY=off npx --yes @redocly/cli@2.77.0 lint api/openapi.yaml

vulncheck: ## govulncheck against the pinned vulnerability database snapshot (VULNDB in .ci/vulncheck)
	./.ci/vulncheck
