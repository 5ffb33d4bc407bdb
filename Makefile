# kiln — see README.md. Every target installs what it needs.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/kilnbuild/kiln/cli.version=$(VERSION)
BIN := bin
export CGO_ENABLED := 0

.PHONY: all build deps workspace test demo docs golden golden-check conformance bench image clean reliability

all: build

# Kaniko's image carries these credential helpers for config.json's credsStore
# and credHelpers; each is built from its own module at the version pinned here.
ECR_LOGIN_HELPER := github.com/awslabs/amazon-ecr-credential-helper/ecr-login/cli/docker-credential-ecr-login@v0.13.0
GCR_HELPER := github.com/GoogleCloudPlatform/docker-credential-gcr/v2@v2.2.1
ACR_ENV_HELPER := github.com/chrismellard/docker-credential-acr-env@v0.0.0-20230304212654-82a0ddb27589
HELPERS := $(BIN)/docker-credential-ecr-login $(BIN)/docker-credential-gcr $(BIN)/docker-credential-acr-env

build: workspace $(BIN)/executor $(BIN)/warmer $(BIN)/kiln-runc $(BIN)/kiln-sbom $(BIN)/kiln-helper $(BIN)/buildkitd $(BIN)/rootlesskit $(HELPERS)

$(BIN)/executor: FORCE
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/executor

$(BIN)/warmer: FORCE
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/warmer

# The SBOM scanner the executor runs for --attestation/--attest sbom (syft);
# apart, so that every other build neither loads nor initialises it.
$(BIN)/kiln-sbom: FORCE
	$(GO) build -trimpath -ldflags '-s -w' -o $@ ./cmd/kiln-sbom

# The program the executor's helper processes (remover, reaper) run as:
# small, so they start at once (executor/helper).
$(BIN)/kiln-helper: FORCE
	$(GO) build -trimpath -ldflags '-s -w' -o $@ ./cmd/kiln-helper

# The OCI runtime wrapper buildkitd runs each RUN through (executor/ociruntime).
$(BIN)/kiln-runc: FORCE
	$(GO) build -trimpath -ldflags '-s -w' -o $@ ./cmd/kiln-runc

# BuildKit and rootlesskit are pinned by go.mod's tool directives. buildkitd
# reports its release (client.Info), as kiln asks remote daemons theirs.
BUILDKIT_VERSION = $(shell GOWORK=off $(GO) list -m -f '{{.Version}}' github.com/moby/buildkit)
$(BIN)/buildkitd: go.mod go.sum Makefile $(wildcard hack/buildkit/*.patch)
	$(GO) build -trimpath -ldflags '-s -w -X github.com/moby/buildkit/version.Version=$(BUILDKIT_VERSION)' -o $@ github.com/moby/buildkit/cmd/buildkitd

$(BIN)/rootlesskit: go.mod go.sum
	$(GO) build -trimpath -ldflags '-s -w' -o $@ github.com/rootless-containers/rootlesskit/v2/cmd/rootlesskit

$(BIN)/docker-credential-ecr-login: Makefile
	GOBIN=$(abspath $(BIN)) $(GO) install -trimpath -ldflags '-s -w' $(ECR_LOGIN_HELPER)

$(BIN)/docker-credential-gcr: Makefile
	GOBIN=$(abspath $(BIN)) $(GO) install -trimpath -ldflags '-s -w' $(GCR_HELPER)

$(BIN)/docker-credential-acr-env: Makefile
	GOBIN=$(abspath $(BIN)) $(GO) install -trimpath -ldflags '-s -w' $(ACR_ENV_HELPER)

deps:
	./hack/install-deps.sh

# The git-ignored go.work that builds kiln against the pinned BuildKit with
# kiln's patches applied to a copy of the module (hack/buildkit/; the embedded
# engine needs them). Plain `go` commands without it still compile.
workspace:
	./hack/buildkit-workspace.sh

# Fuzz targets (docs/reliability.md): PACKAGE:TARGET. make test fuzzes each
# briefly after running its committed corpus; make reliability longer.
FUZZ_TARGETS = ./flagmap:FuzzParse ./compat:FuzzDockerfileRewriters ./compat:FuzzStepNames \
	./compat/buildcontext:FuzzExtractTar ./compat/buildcontext:FuzzTarRoundTrip ./compat/shape:FuzzShapeRunLayer
# Minimizing a new input re-runs it thousands of times; unbounded, it takes the whole budget.
fuzz = for t in $(FUZZ_TARGETS); do \
	$(GO) test -count=1 -timeout 20m -run '^$$' -fuzz "^$${t\#\#*:}$$" -fuzztime $(1) -fuzzminimizetime 50x "$${t%%:*}" || exit 1; done

test: deps workspace build image
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...
	$(call fuzz,10s)

# A real build with no internet: local registry + a busybox base made from Debian's busybox-static.
demo: deps build
	./hack/demo.sh

# docs/flags.md is generated from flagmap's table; go test ./flagmap fails when it is stale.
docs:
	$(GO) run ./flagmap/cmd/flagsdoc > docs/flags.md

# Regenerates conformance/golden from the real Kaniko v1.23.2 (needs root; builds Kaniko once, cached).
golden: deps workspace
	$(GO) run ./conformance/cmd/golden

# Checks that the real Kaniko still reproduces the committed goldens (builds Kaniko; not part of make test).
golden-check: deps workspace
	KILN_KANIKO_E2E=1 $(GO) test -count=1 -timeout 60m -run '^TestKanikoEndToEnd$$' ./conformance/golden

# kiln against the committed goldens: root and rootless with --reproducible, root without it, and kiln's
# image in a container with no security options (embedded engine); writes conformance/REPORT.md.
# make test runs the same minus the cases marked extended.
conformance: deps build workspace image
	KILN_CONFORMANCE_FULL=1 $(GO) test -count=1 -timeout 90m -v -run '^TestConformance$$' ./conformance/runner

# The reliability cases (docs/reliability.md), verbose; they also run in make test,
# where TestConcurrentBuilds runs 3 builds at once instead of 8 (KILN_RELIABILITY_FULL).
RELIABILITY_E2E = TestSecretsNeverLogged|TestMistakesAreExplained|TestFailuresAreOneLineErrors|TestFailingRunExitsWithItsCode|TestSIGTERMStopsTheBuild|TestKilledExecutorLeavesNothing|TestNextBuildRemovesStaleState|TestRemoteDaemonReleases|TestRemoteBuildkitHost|TestRegistryRetries|TestRegistryFaults|TestStalledRegistryEndsWithTheJobsDeadline|TestRunForkedDaemonIsGone|TestRunIgnoringSIGTERMStopsWithTheJob|TestDaemonKilledMidBuild|TestDaemonStoppedMidBuild|TestStateFilesystemFull|TestContextUnreadableMidway|TestConcurrentBuilds|TestHostileInput
reliability: deps build
	KILN_RELIABILITY_FULL=1 $(GO) test -count=1 -timeout 30m -v -run '^($(RELIABILITY_E2E))$$' ./e2e
	$(GO) test -count=1 -timeout 10m -v -run 'Secret|Mistake|Progress' ./executor
	$(GO) test -count=1 -timeout 10m -v -run 'TestDaemonDiesWithKilledExecutor' ./executor/local
	$(GO) test -count=1 -timeout 5m -v -run 'TestDaemonRefusal' ./executor/remote
	$(GO) test -count=1 -timeout 10m -v -run 'TestPushFaults|TestStalledPushEndsWithTheJobsDeadline|TestPushRetry' ./executor/publish
	$(GO) test -count=1 -timeout 5m -v -run 'TestNetworkFaults|TestManifestFindsAPartialImage|TestOpenEndedRange|TestFault' ./internal/testenv
	$(GO) test -count=1 -timeout 5m -v -run 'TestSignalStopsTheBuild' ./cli
	$(call fuzz,2m)

# kiln vs Kaniko v1.23.2 (and docker build when an engine runs); not part of make test.
# BENCH_FLAGS e.g. -scenarios small,parallel -runs 5
bench: deps build workspace
	$(GO) run ./bench -out bench $(BENCH_FLAGS)

# kiln builds its own executor images (kiln, kiln:debug) into out/ (docs/images.md).
image: deps workspace
	$(MAKE) build BIN=out/image-bin
	./hack/image.sh out/image-bin

clean:
	rm -rf $(BIN)

FORCE:
