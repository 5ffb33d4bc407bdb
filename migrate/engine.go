package migrate

import (
	"fmt"
	"os"
	"strings"
)

// Engine is how kiln runs BuildKit.
type Engine string

const (
	// EngineRootful is a private buildkitd run as root (CAP_SYS_ADMIN).
	EngineRootful Engine = "rootful"
	// EngineRootless is a private buildkitd in RootlessKit's user namespace.
	EngineRootless Engine = "rootless"
	// EngineEmbedded is BuildKit inside kiln's process with a worker that
	// never mounts and RUN in the container's own root, as Kaniko runs it.
	EngineEmbedded Engine = "embedded"
)

// EngineModes are the values of --buildkit-mode (KILN_BUILDKIT_MODE).
var EngineModes = []string{"auto", string(EngineRootful), string(EngineRootless), string(EngineEmbedded)}

// Engine is the engine this process gets: the forced Mode, else rootless
// for any user but root, rootful for root that may mount (CAP_SYS_ADMIN),
// and embedded for root that may not, a Kaniko pod's usual lot.
func (p Probe) Engine() Engine {
	e, _ := p.engine(parseStatus(p))
	return e
}

func (p Probe) engine(s status) (Engine, string) {
	switch Engine(p.Mode) {
	case EngineRootful, EngineRootless, EngineEmbedded:
		return Engine(p.Mode), "--buildkit-mode/KILN_BUILDKIT_MODE asks for it"
	}
	if p.euid() != 0 {
		return EngineRootless, fmt.Sprintf("running as UID %d: kiln starts BuildKit rootless through rootlesskit", p.euid())
	}
	if eff, ok := s.capSet("CapEff"); ok && !hasCap(eff, capSysAdmin) {
		return EngineEmbedded, "running as root without CAP_SYS_ADMIN (a container's default privileges): kiln runs BuildKit inside its own process without mounts and runs RUN in this container's root filesystem, as Kaniko does"
	}
	return EngineRootful, "running as root with CAP_SYS_ADMIN: kiln starts a rootful BuildKit daemon"
}

// Rootless reports whether kiln runs BuildKit through rootlesskit here.
func (p Probe) Rootless() bool { return p.Engine() == EngineRootless }

// InContainer reports whether this process runs in a container, by the
// marks container runtimes leave (Kaniko refuses to run elsewhere: it
// would rewrite the machine's root filesystem, as the embedded engine does).
func (p Probe) InContainer() bool {
	for _, mark := range []string{".dockerenv", "run/.containerenv"} {
		if _, err := os.Stat(p.path(mark)); err == nil {
			return true
		}
	}
	if p.Getenv("KUBERNETES_SERVICE_HOST") != "" || p.Getenv("container") != "" {
		return true
	}
	cgroup, _ := p.read("proc/1/cgroup")
	for _, sign := range []string{"docker", "kubepods", "containerd", "crio", "libpod", "lxc"} {
		if strings.Contains(cgroup, sign) {
			return true
		}
	}
	return false
}

// Getenv reads the probed environment: Env when set (tests), else this
// process's.
func (p Probe) Getenv(name string) string {
	if p.Env != nil {
		return p.Env[name]
	}
	return os.Getenv(name)
}

func (p Probe) checkContainer() Finding {
	f := Finding{Check: "container", Severity: SeverityOK, Seen: "running in a container"}
	switch {
	case p.InContainer():
	case p.Force:
		f.Severity, f.Seen = SeverityWarning, "no container found, going on because of --force"
		f.Why = "RUN steps run in this machine's root filesystem, which each RUN replaces for its duration"
	default:
		f.Severity, f.Seen = SeverityError, "no container found"
		f.Why = "kiln's embedded engine runs RUN in the root filesystem it runs in, replacing it while the build runs, as Kaniko does; outside a container that is this machine's"
		f.Fix = "run kiln in a container, use --buildkit-mode=rootful or rootless, or pass --force (as Kaniko requires)"
	}
	return f
}

// checkEmbeddedCapabilities says what a base image may not hold without
// the capabilities a runtime leaves out (CRI-O has no MKNOD or SETFCAP).
func checkEmbeddedCapabilities(s status) Finding {
	f := Finding{Check: "capabilities", Severity: SeverityOK}
	eff, ok := s.capSet("CapEff")
	if !ok {
		f.Severity, f.Seen = SeverityWarning, "cannot read CapEff from /proc/self/status"
		return f
	}
	f.Seen = fmt.Sprintf("CapEff %016x", eff)
	var missing []string
	for _, c := range []struct {
		bit  uint
		name string
		for_ string
	}{
		{capChown, "CHOWN", "files owned by other users"},
		{capSetuid, "SETUID", "RUN under USER"},
		{capSetgid, "SETGID", "RUN under USER"},
		{capMknod, "MKNOD", "device nodes in base images"},
		{capSetfcap, "SETFCAP", "files with file capabilities in base images"},
	} {
		if !hasCap(eff, c.bit) {
			missing = append(missing, fmt.Sprintf("%s (%s)", c.name, c.for_))
		}
	}
	if len(missing) > 0 {
		f.Severity = SeverityInfo
		f.Seen += "; without " + strings.Join(missing, ", ") + ": builds that need these fail, as with Kaniko"
	}
	return f
}
