package local

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/platforms"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/kilnbuild/kiln/executor/ociruntime"
)

func buildkitdArgs(cfg engine.Config, dir, socket, configFile string) []string {
	root := cfg.Root
	if root == "" {
		root = filepath.Join(dir, "root")
	}
	args := []string{
		"--root=" + root,
		"--addr=unix://" + socket,
		"--config=" + configFile,
		"--oci-worker=true",
		"--containerd-worker=false",
		// Kaniko runs RUN in the host network.
		"--oci-worker-net=host",
		// A thrown-away root lives for one build; a persistent one must
		// stay bounded (BuildKit's default policy).
		"--oci-worker-gc=" + strconv.FormatBool(!cfg.ThrowAwayState()),
		"--allow-insecure-entitlement=network.host",
	}
	if cfg.NoProcessSandbox {
		args = append(args, "--oci-worker-no-process-sandbox")
	}
	if cfg.Debug {
		args = append(args, "--debug")
	}
	return args
}

// findOCIRuntime returns kiln-runc, which RUN steps run through, and the
// variable telling it where the real runc is.
func findOCIRuntime(binDir string) (wrapper, runtimeEnv string, err error) {
	if wrapper, err = helper.FindBinary(binDir, ociruntime.BinaryName); err != nil {
		return "", "", err
	}
	runc, err := exec.LookPath("runc")
	if err == nil {
		runc, err = filepath.Abs(runc)
	}
	if err != nil {
		return "", "", fmt.Errorf("runc not found on PATH: BuildKit runs RUN steps with it; install it (Debian package runc): %w", err)
	}
	return wrapper, ociruntime.RuntimeEnv + "=" + runc, nil
}

// daemonConfigTOML appends kiln's settings after the caller's tables (TOML
// top-level keys would otherwise land inside the caller's last table).
// ociBinary replaces runc for the OCI worker unless empty.
func daemonConfigTOML(registryTOML, runDir, ociBinary string) string {
	var b strings.Builder
	b.WriteString(registryTOML)
	b.WriteString("\n\n")
	// Naming the platforms skips buildkitd probing every emulator at
	// start-up; a RUN for another platform still finds its emulator.
	fmt.Fprintf(&b, "[worker.oci]\n  platforms = [%s]\n", strconv.Quote(platforms.Format(platforms.Normalize(platforms.DefaultSpec()))))
	if ociBinary != "" {
		fmt.Fprintf(&b, "  binary = %s\n", strconv.Quote(ociBinary))
	}
	b.WriteString("\n")
	// The default trace socket is under /run/buildkit, unwritable rootless.
	fmt.Fprintf(&b, "[otel]\n  socketPath = %s\n\n", strconv.Quote(filepath.Join(runDir, "otel.sock")))
	// No CDI devices are used; skipping discovery saves start-up work and warnings.
	b.WriteString("[cdi]\n  disabled = true\n\n")
	// Nobody reads a private daemon's build history; recording it makes
	// every solve also write a provenance document, its logs and trace.
	b.WriteString("[history]\n  maxEntries = 0\n")
	return b.String()
}
