# refgate: make help lists the targets.
GO      ?= go
# The toolchain every target builds and tests with (go.mod's toolchain line):
# go1.26.8 carries standard-library vulnerabilities fixed later. The go
# command fetches it from the module proxy on first use; override with
# make GOTOOLCHAIN=local ... to use the installed Go.
export GOTOOLCHAIN := go1.27.3
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s

.PHONY: help build build-load run test test-short bench bench-go bench-load fuzz lint vulncheck

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/refgate, static, version stamped
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/refgate ./cmd/refgate

build-load: ## build bin/refgate-load, the load generator
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/refgate-load ./cmd/refgate-load

run: ## run the server on the embedded store in ./data
	$(GO) run ./cmd/refgate serve --admin-token dev-admin-token-local --storefront-token dev-storefront-token --cookie-secure=false

test: ## vet and run every test with the race detector, then the deployment files' (needs redis-server, promtool, nginx, chromium)
	$(GO) vet ./...
	$(GO) test -race -shuffle=on ./...
	$(GO) test -p 1 -run 'Allocations|Accuracy|KnownDelays|Kill9Clicks|RedisOutage60s|RedisFlood|Attack' ./redirect ./internal/ratelimit ./loadtest ./cmd/refgate
	cd deploy && $(GO) vet ./... && $(GO) test ./...

test-short: ## the tests without the race detector and without building the binary
	$(GO) test -short ./...

bench: bench-go bench-load ## both benchmarks below

bench-go: ## click handler vs a fixed-302 handler; binds and conversions on real Redis (p50/p99)
	$(GO) test ./redirect -run '^$$' -bench 'Click|Sign' -benchtime 2s -count 5
	$(GO) test ./api -run '^$$' -bench StorefrontRedis -benchtime 30000x -count 3

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

vulncheck: ## govulncheck against the pinned vulnerability database snapshot (VULNDB in .ci/vulncheck)
	./.ci/vulncheck
