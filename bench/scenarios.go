package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Kind says how a scenario uses caches.
type Kind int

const (
	// Cold: no cache anywhere; base images are pulled every run.
	Cold Kind = iota
	// WarmRepo: --cache=true --cache-repo=R filled by an unmeasured build;
	// every run starts with fresh local state and changes one source line.
	WarmRepo
	// WarmDir: --cache=true --cache-dir=D persisted between runs (docker:
	// its daemon's local cache); every run changes one source line.
	WarmDir
)

func (k Kind) String() string {
	return [...]string{"cold", "warm --cache-repo", "warm --cache-dir"}[k]
}

// Base images the harness seeds into its registry.
const (
	baseBusybox   = "library/busybox:latest"
	baseDebian    = "library/debian:bookworm"
	baseManyFiles = "bench/manyfiles:base"
)

// Scenario is one Dockerfile and context. Dockerfiles take the harness
// registry as ARG REGISTRY so kiln, Kaniko and docker all pull the same
// bytes from it.
type Scenario struct {
	Name, Title string
	Kind        Kind
	Bases       []string
	// Dockerfile comes with app.txt, whose last line changes every run in
	// the warm scenarios.
	Dockerfile string
}

const appFile = "app.txt"

// cacheProbeDockerfile has an expensive step before the source COPY, so a
// cache-aware rebuild after a one-line change skips it.
const cacheProbeDockerfile = `ARG REGISTRY
FROM ${REGISTRY}/library/busybox:latest
RUN head -c 300000000 /dev/zero | sha256sum > /deps.sum && dd if=/dev/urandom of=/deps.bin bs=1M count=64 2>/dev/null
COPY app.txt /app/app.txt
RUN sha256sum /app/app.txt /deps.bin > /app/built
`

// scenarios run in this order: quick ones first, so an interrupted run
// keeps the most.
var scenarios = []*Scenario{
	{
		Name: "small", Title: "busybox: 2 RUN, 1 COPY", Kind: Cold, Bases: []string{baseBusybox},
		Dockerfile: `ARG REGISTRY
FROM ${REGISTRY}/library/busybox:latest
COPY app.txt /app/app.txt
RUN mkdir -p /data && echo built > /data/stamp
RUN wc -l /app/app.txt > /data/lines
`,
	},
	{
		Name: "parallel", Title: "3 CPU-heavy stages + COPY --from", Kind: Cold, Bases: []string{baseBusybox},
		Dockerfile: `ARG REGISTRY
FROM ${REGISTRY}/library/busybox:latest AS a
RUN head -c 1500000000 /dev/zero | sha256sum > /a.sum
FROM ${REGISTRY}/library/busybox:latest AS b
RUN head -c 1500000000 /dev/zero | sha1sum > /b.sum
FROM ${REGISTRY}/library/busybox:latest AS c
RUN head -c 1500000000 /dev/zero | md5sum > /c.sum
FROM ${REGISTRY}/library/busybox:latest
COPY --from=a /a.sum /sums/
COPY --from=b /b.sum /sums/
COPY --from=c /c.sum /sums/
`,
	},
	{
		Name: "biglayer", Title: "RUN writing a 512 MiB layer", Kind: Cold, Bases: []string{baseBusybox},
		Dockerfile: `ARG REGISTRY
FROM ${REGISTRY}/library/busybox:latest
RUN dd if=/dev/urandom of=/blob bs=1M count=512 2>/dev/null
`,
	},
	{
		Name: "warm-repo", Title: "one-line change, cache only in --cache-repo", Kind: WarmRepo, Bases: []string{baseBusybox},
		Dockerfile: cacheProbeDockerfile,
	},
	{
		Name: "warm-repo-large", Title: "Debian + apt-get install, last COPY changed, cache only in --cache-repo", Kind: WarmRepo,
		Bases: []string{baseDebian},
		Dockerfile: `ARG REGISTRY
FROM ${REGISTRY}/library/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends jq make patch && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY app.txt /src/app.txt
`,
	},
	{
		Name: "warm-dir", Title: "one-line change, --cache-dir persisted", Kind: WarmDir, Bases: []string{baseBusybox},
		Dockerfile: cacheProbeDockerfile,
	},
	{
		Name: "manyfiles", Title: "base with 100k files, 3 RUN + COPY", Kind: Cold, Bases: []string{baseManyFiles},
		Dockerfile: `ARG REGISTRY
FROM ${REGISTRY}/bench/manyfiles:base
RUN echo one > /step1
RUN ls /srv/tree | wc -l > /step2
RUN echo changed >> /srv/tree/d000/f0000
COPY app.txt /app/app.txt
`,
	},
	{
		Name: "apt", Title: "Debian + apt-get install jq", Kind: Cold, Bases: []string{baseDebian},
		Dockerfile: `ARG REGISTRY
FROM ${REGISTRY}/library/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends jq && rm -rf /var/lib/apt/lists/*
RUN jq --version > /jq-version
`,
	},
}

func scenarioByName(name string) *Scenario {
	for _, s := range scenarios {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// writeContext materialises the scenario's context for one run; rev is the
// changed line of app.txt (constant for cold scenarios).
func (s *Scenario) writeContext(dir string, rev int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if s.Kind == Cold {
		rev = 0
	}
	files := map[string]string{
		"Dockerfile": s.Dockerfile,
		appFile:      appText(rev),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// appText is a small source file whose last line changes with rev.
func appText(rev int) string {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "line %02d of the application source\n", i)
	}
	fmt.Fprintf(&b, "revision %d\n", rev)
	return b.String()
}
