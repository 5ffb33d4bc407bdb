# kiln — see README.md. Every target installs what it needs.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/kilnbuild/kiln/cli.version=$(VERSION)
BIN := bin
export CGO_ENABLED := 0

.PHONY: all build deps test demo docs golden golden-check conformance bench image clean reliability

all: build

build: $(BIN)/executor $(BIN)/warmer $(BIN)/kiln-runc $(BIN)/buildkitd $(BIN)/rootlesskit

$(BIN)/executor: FORCE
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/executor

$(BIN)/warmer: FORCE
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/warmer

# The OCI runtime wrapper buildkitd runs each RUN through (executor/ociruntime).
$(BIN)/kiln-runc: FORCE
	$(GO) build -trimpath -ldflags '-s -w' -o $@ ./cmd/kiln-runc

# BuildKit and rootlesskit are pinned by go.mod's tool directives. buildkitd
# reports its release (client.Info), as kiln asks remote daemons theirs.
BUILDKIT_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/moby/buildkit)
$(BIN)/buildkitd: go.mod go.sum Makefile
	$(GO) build -trimpath -ldflags '-s -w -X github.com/moby/buildkit/version.Version=$(BUILDKIT_VERSION)' -o $@ github.com/moby/buildkit/cmd/buildkitd

$(BIN)/rootlesskit: go.mod go.sum
	$(GO) build -trimpath -ldflags '-s -w' -o $@ github.com/rootless-containers/rootlesskit/v2/cmd/rootlesskit

deps:
	./hack/install-deps.sh

test: deps build image
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...

# A real build with no internet: local registry + a busybox base made from Debian's busybox-static.
demo: deps build
	./hack/demo.sh

# docs/flags.md is generated from flagmap's table; go test ./flagmap fails when it is stale.
docs:
	$(GO) run ./flagmap/cmd/flagsdoc > docs/flags.md

# Regenerates conformance/golden from the real Kaniko v1.23.2 (needs root; builds Kaniko once, cached).
golden: deps
	$(GO) run ./conformance/cmd/golden

# Checks that the real Kaniko still reproduces the committed goldens (builds Kaniko; not part of make test).
golden-check: deps
	KILN_KANIKO_E2E=1 $(GO) test -count=1 -timeout 60m -run '^TestKanikoEndToEnd$$' ./conformance/golden

# kiln against the committed goldens: root and rootless with --reproducible, root without it; writes conformance/REPORT.md (also run by make test).
conformance: deps build
	$(GO) test -count=1 -timeout 30m -v -run '^TestConformance$$' ./conformance/runner

# The reliability cases (docs/reliability.md), verbose; they also run in make test.
RELIABILITY_E2E = TestSecretsNeverLogged|TestMistakesAreExplained|TestFailuresAreOneLineErrors|TestFailingRunExitsWithItsCode|TestSIGTERMStopsTheBuild|TestKilledExecutorLeavesNothing|TestNextBuildRemovesStaleState|TestRemoteDaemonReleases|TestRemoteBuildkitHost
reliability: deps build
	$(GO) test -count=1 -timeout 30m -v -run '^($(RELIABILITY_E2E))$$' ./e2e
	$(GO) test -count=1 -timeout 10m -v -run 'TestDaemonDiesWithKilledExecutor|Secret|Mistake|Progress|DaemonRefusal' ./executor
	$(GO) test -count=1 -timeout 10m -run '^$$' -fuzz FuzzStepNames -fuzztime 60s ./compat

# kiln vs Kaniko v1.23.2 (and docker build when an engine runs); not part of make test.
# BENCH_FLAGS e.g. -scenarios small,parallel -runs 5
bench: deps build
	$(GO) run ./bench -out bench $(BENCH_FLAGS)

# kiln builds its own executor images (kiln, kiln:debug) into out/ (docs/images.md).
image: deps
	$(MAKE) build BIN=out/image-bin
	./hack/image.sh out/image-bin

clean:
	rm -rf $(BIN)

FORCE:
