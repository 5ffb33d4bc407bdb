// Command warmer is kiln's drop-in for Kaniko's /kaniko/warmer: it pulls base
// images into the BuildKit state the executor keeps under --cache-dir.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kilnbuild/kiln/cli"
	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/executor"
	"github.com/sirupsen/logrus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, os.LookupEnv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error: "+strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer, getenv func(string) (string, bool)) error {
	w, err := parseArgs(args, getenv)
	if err != nil {
		return err
	}
	if w.help {
		fmt.Fprint(stderr, usage)
		return nil
	}
	if err := cli.ConfigureLogging(&w.shared, stderr); err != nil {
		return err
	}
	if err := w.addDockerfileImages(); err != nil {
		return err
	}
	if w.force {
		logrus.Debug("--force: kiln's warmer always re-resolves each tag and pulls what changed")
	}
	registry, err := compat.NewRegistrySettings(&w.shared, cli.Version())
	if err != nil {
		return err
	}
	return executor.Warm(ctx, executor.WarmOptions{
		Images:          w.images,
		CacheDir:        w.cacheDir,
		Platform:        w.platform,
		Registry:        registry,
		DockerConfigDir: compat.DockerConfigDir(&w.shared),
		StateParent:     stateParent(),
	})
}

// addDockerfileImages adds each stage's base image from --dockerfile, with
// FROM expanded by --build-arg and meta ARG defaults; stage names and
// scratch are skipped.
func (w *warmerArgs) addDockerfileImages() error {
	if w.dockerfile == "" {
		return nil
	}
	parsed, err := compat.ParseDockerfile(w.dockerfile, w.shared.BuildArgs)
	if err != nil {
		return fmt.Errorf("--dockerfile %s: %w", w.dockerfile, err)
	}
	w.images = append(w.images, parsed.BaseImages()...)
	return nil
}

// stateParent is where the daemon's sockets and logs go: $XDG_RUNTIME_DIR
// when set, else the temp dir. The daemon root itself is under --cache-dir.
func stateParent() string {
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		if info, err := os.Stat(dir); err == nil && info.IsDir() {
			return dir
		}
	}
	return ""
}

const usage = `Usage: warmer [flags]

Pulls base images into the BuildKit state kept under --cache-dir, so that
executor builds run with --cache=true and the same --cache-dir neither
download nor unpack them again.

Flags:
  -i, --image stringArray                 image to cache (repeatable)
  -d, --dockerfile string                 cache the base image of every stage of this Dockerfile
      --build-arg stringArray             ARG values used to expand FROM lines of --dockerfile
  -c, --cache-dir string                  cache directory (default "/cache")
  -f, --force                             accepted; tags are always re-resolved
      --cache-ttl duration                accepted; BuildKit's garbage collection bounds the cache (default 336h0m0s)
      --customPlatform string             platform to cache, e.g. linux/arm64 (default: this machine's)
      --insecure-pull                     pull over plain HTTP
      --insecure-registry stringArray     registry to reach over plain HTTP (repeatable)
      --skip-tls-verify-pull              accepted, unused (as in Kaniko)
      --skip-tls-verify-registry stringArray  registry whose TLS certificate is not verified (repeatable)
      --registry-certificate key=value    host=/path/to/ca.pem (repeatable)
      --registry-client-cert key=value    host=/path/to/cert.pem,/path/to/key.pem (repeatable)
      --registry-map stringArray          registry=replacement[;replacement] (repeatable; also KANIKO_REGISTRY_MAP)
      --registry-mirror stringArray       Docker Hub mirror (repeatable)
      --skip-default-registry-fallback    accepted; BuildKit always falls back after its mirrors
  -v, --verbosity string                  panic, fatal, error, warn, info, debug or trace (default "info")
      --log-format string                 text, color or json (default "color")
      --log-timestamp                     add timestamps to log lines
`
