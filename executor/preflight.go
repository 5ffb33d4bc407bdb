package executor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/migrate"
	"github.com/sirupsen/logrus"
)

// StateVolumeName is the directory under the kaniko dir that kiln's image
// declares as a VOLUME (and Kubernetes users mount an emptyDir on), so the
// daemon's snapshots are not on the container's overlayfs root.
const StateVolumeName = "buildkit"

// startDaemonWithPreflight starts the daemon StartDaemon would, after the
// environment preflight of --migration-dry-run: settings that certainly stop
// a private daemon fail the build before it starts, naming the setting and
// the securityContext change; what the pod allows adjusts cfg.
func startDaemonWithPreflight(ctx context.Context, cfg engine.Config) (engine.Daemon, error) {
	if cfg.Host != "" {
		return StartDaemon(ctx, cfg)
	}
	cfg.StateParent = preferStateVolume(cfg.StateParent)
	probe := migrate.Probe{StateDir: cfg.StateParent, Mode: cfg.Mode, Force: cfg.Force}
	if cfg.StateParent == "" {
		probe.StateDir = os.TempDir()
	}
	findings := probe.Run()
	switch probe.Engine() {
	case migrate.EngineEmbedded:
		cfg.Embedded = true
	case migrate.EngineRootless:
		cfg.Rootless = true
	}
	if err := applyPreflight(&cfg, findings, cfg.Rootless || os.Geteuid() != 0, logrus.StandardLogger()); err != nil {
		return nil, err
	}
	d, err := StartDaemon(ctx, cfg)
	if err != nil {
		if hint := advisoryFixes(findings); hint != "" {
			return nil, fmt.Errorf("%w; the environment check also saw: %s", err, hint)
		}
		return nil, err
	}
	return d, nil
}

// preferStateVolume moves the state under <parent>/buildkit when that
// directory exists and is writable: the image's state volume.
func preferStateVolume(parent string) string {
	if parent == "" {
		return parent
	}
	dir := filepath.Join(parent, StateVolumeName)
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() && writableDir(dir) {
		return dir
	}
	return parent
}

// advisoryChecks are findings that may or may not stop the daemon (a custom
// seccomp profile can allow what BuildKit needs), so they never fail the
// build up front; they explain a start-up failure instead.
var advisoryChecks = map[string]bool{"seccomp": true}

// applyPreflight fails on the findings that certainly stop the daemon and
// adapts cfg to the others: a masked /proc makes a rootless daemon run RUN
// without its own PID namespace, as Kubernetes pods without procMount:
// Unmasked require.
func applyPreflight(cfg *engine.Config, findings []migrate.Finding, rootless bool, log logrus.FieldLogger) error {
	var blocking, warnings []string
	for _, f := range findings {
		switch {
		case f.Check == "proc-masks" && f.Severity == migrate.SeverityWarning && rootless:
			cfg.NoProcessSandbox = true
			warnings = append(warnings, fmt.Sprintf("/proc is masked (%s): RUN steps run without a process sandbox and share the build's PID namespace; to sandbox them: pod spec: {hostUsers: false} with securityContext: {procMount: Unmasked}, or Docker's --security-opt systempaths=unconfined", f.Seen))
		case f.Severity == migrate.SeverityError && !advisoryChecks[f.Check]:
			blocking = append(blocking, describeFinding(f))
		case f.Severity == migrate.SeverityWarning:
			warnings = append(warnings, "environment check: "+describeFinding(f))
		}
	}
	if len(blocking) > 0 {
		return fmt.Errorf("BuildKit cannot start in this container: %s (kiln --migration-dry-run lists every check)", strings.Join(blocking, "; "))
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	return nil
}

// advisoryFixes describes the advisory findings that are errors.
func advisoryFixes(findings []migrate.Finding) string {
	var out []string
	for _, f := range findings {
		if advisoryChecks[f.Check] && f.Severity == migrate.SeverityError {
			out = append(out, describeFinding(f))
		}
	}
	return strings.Join(out, "; ")
}

// describeFinding is one finding on one line: what was seen, why it
// matters, and the fix.
func describeFinding(f migrate.Finding) string {
	s := f.Check + ": " + f.Seen
	if f.Why != "" {
		s += " (" + f.Why + ")"
	}
	if f.Fix != "" {
		s += "; fix: " + f.Fix
	}
	return s
}
