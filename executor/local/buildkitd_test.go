package local

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	"github.com/kilnbuild/kiln/executor/engine"
	bkconfig "github.com/moby/buildkit/cmd/buildkitd/config"
)

func TestDaemonConfigDisablesHistoryAndCDI(t *testing.T) {
	registryTOML := "[registry.\"reg.example:5000\"]\n  http = true\n"
	cfg, err := bkconfig.Load(strings.NewReader(daemonConfigTOML(registryTOML, "/run/kiln", "/kaniko/kiln-runc")))
	if err != nil {
		t.Fatalf("buildkitd cannot load kiln's config: %v", err)
	}
	if cfg.History == nil || cfg.History.MaxEntries == nil || *cfg.History.MaxEntries != 0 {
		t.Errorf("history = %+v, want maxEntries = 0 (recording off)", cfg.History)
	}
	if cfg.CDI.Disabled == nil || !*cfg.CDI.Disabled {
		t.Error("CDI discovery not disabled")
	}
	if reg, ok := cfg.Registries["reg.example:5000"]; !ok || reg.PlainHTTP == nil || !*reg.PlainHTTP {
		t.Errorf("registry table lost or changed: %+v", cfg.Registries)
	}
	if cfg.Workers.OCI.Binary != "/kaniko/kiln-runc" {
		t.Errorf("worker.oci.binary = %q, want kiln-runc's path", cfg.Workers.OCI.Binary)
	}
	// One platform, so that buildkitd does not probe for emulators.
	if native := platforms.Format(platforms.Normalize(platforms.DefaultSpec())); !slices.Equal(cfg.Workers.OCI.Platforms, []string{native}) {
		t.Errorf("worker.oci.platforms = %q, want [%s]", cfg.Workers.OCI.Platforms, native)
	}
}

func TestFindOCIRuntimeNamesWhatIsMissing(t *testing.T) {
	binDir, pathDir := t.TempDir(), t.TempDir()
	t.Setenv("PATH", pathDir)
	if _, _, err := findOCIRuntime(binDir); err == nil || !strings.Contains(err.Error(), "kiln-runc not found in "+binDir+": run make build") {
		t.Errorf("without kiln-runc: err = %v", err)
	}
	writeExecutable(t, filepath.Join(binDir, "kiln-runc"))
	if _, _, err := findOCIRuntime(binDir); err == nil || !strings.Contains(err.Error(), "runc not found on PATH") {
		t.Errorf("without runc: err = %v", err)
	}
	runc := filepath.Join(pathDir, "runc")
	writeExecutable(t, runc)
	wrapper, runtimeEnv, err := findOCIRuntime(binDir)
	if err != nil || wrapper != filepath.Join(binDir, "kiln-runc") || runtimeEnv != "KILN_OCI_RUNTIME="+runc {
		t.Errorf("findOCIRuntime = %q, %q, %v; want kiln-runc in %s and runc at %s", wrapper, runtimeEnv, err, binDir, runc)
	}
}

func writeExecutable(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// A private root is thrown away after the build: no garbage collection and
// no fsync; the --cache-dir root gets both.
func TestOnlyAPrivateRootIsThrownAway(t *testing.T) {
	for _, c := range []struct {
		root, wantRoot string
		throwAway      bool
	}{
		{"", "/state/root", true},
		{"/cache/buildkit", "/cache/buildkit", false},
	} {
		cfg := engine.Config{Root: c.root}
		args := buildkitdArgs(cfg, "/state", "/state/buildkitd.sock", "/state/buildkitd.toml")
		for _, want := range []string{"--root=" + c.wantRoot, "--oci-worker-gc=" + strconv.FormatBool(!c.throwAway)} {
			if !slices.Contains(args, want) {
				t.Errorf("root %q: buildkitd args %q lack %s", c.root, args, want)
			}
		}
		if env := throwAwayStateEnv(cfg); (env == "KILN_THROWAWAY_STATE=1") != c.throwAway {
			t.Errorf("root %q: environment %q, want throw-away %v", c.root, env, c.throwAway)
		}
	}
}
