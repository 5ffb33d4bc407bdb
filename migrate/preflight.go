package migrate

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/kilnbuild/kiln/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// Severity ranks a finding: only SeverityError makes the dry-run exit 3.
type Severity string

const (
	SeverityOK      Severity = "ok"
	SeverityInfo    Severity = "info"
	SeverityWarning Severity = "warning"
	SeverityError   Severity = "error"
)

// Finding is one environment check: what was seen and, when it is a
// problem, the Kubernetes change that fixes it.
type Finding struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	Seen     string   `json:"seen"`
	Why      string   `json:"why,omitempty"`
	Fix      string   `json:"fix,omitempty"`
}

// Probe reads the environment the daemon would run in. The zero value
// probes this process; tests point Root at a fake tree holding proc/self/*,
// proc/sys/*, etc/subuid and etc/subgid.
type Probe struct {
	Root     string // "" means "/"
	Euid     *int   // nil means os.Geteuid()
	UserName string // for /etc/subuid; "" looks the user up
	// StateDir is where kiln keeps BuildKit's state (the kaniko dir), as
	// seen from Root.
	StateDir string
	// LookPath finds newuidmap/newgidmap; nil means exec.LookPath under Root.
	LookPath func(string) (string, error)
	// TryUserNamespace attempts to create a user namespace; nil means a real attempt.
	TryUserNamespace func() error
	// Mode is --buildkit-mode: "" or "auto" chooses the engine (see Engine).
	Mode string
	// Force is Kaniko's --force: build outside a container.
	Force bool
	// Env replaces the process environment (tests); nil reads it.
	Env map[string]string
}

// Capability bits from linux/capability.h.
const (
	capChown    = 0
	capSetgid   = 6
	capSetuid   = 7
	capSysAdmin = 21
	capMknod    = 27
	capSetfcap  = 31
)

// Fixes, as Kubernetes container securityContext (or pod/node) changes.
const (
	fixSeccomp      = "securityContext: {seccompProfile: {type: Unconfined}}"
	fixAppArmor     = "securityContext: {appArmorProfile: {type: Unconfined}} (Kubernetes ≥ 1.30; older: pod annotation container.apparmor.security.beta.kubernetes.io/<container>: unconfined)"
	fixNoNewPrivs   = "securityContext: {allowPrivilegeEscalation: true} (or remove allowPrivilegeEscalation: false)"
	fixCaps         = "securityContext: {capabilities: {add: [SETUID, SETGID]}} (needed after drop: [ALL])"
	fixProcMask     = "pod spec: {hostUsers: false} with securityContext: {procMount: Unmasked}; otherwise kiln runs RUN steps without a process sandbox"
	fixUserns       = "node: sysctl -w user.max_user_namespaces=15000 (a privileged DaemonSet on Bottlerocket); cannot be fixed from the pod"
	fixNewuidmap    = "image: use kiln's image (it ships newuidmap/newgidmap); in a custom image install uidmap (Debian) or shadow-uidmap (Alpine)"
	fixSetuidBinary = "image: newuidmap/newgidmap must be setuid root (chmod u+s) or carry file capabilities (setcap cap_setuid+ep / cap_setgid+ep)"
	fixSubid        = "image: add '<user>:100000:65536' to /etc/subuid and /etc/subgid, and run as that user (securityContext: {runAsUser: <uid>})"
	fixRunAsRoot    = "or run as root (securityContext: {runAsUser: 0}, as Kaniko's pods do): kiln then needs nothing beyond the runtime's defaults"
	fixStateDir     = "volumes: mount an emptyDir at the kaniko dir's state location (e.g. volumeMounts: [{name: kiln-state, mountPath: <dir>}] with volumes: [{name: kiln-state, emptyDir: {}}])"
)

func (p Probe) path(rel string) string {
	root := p.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, rel)
}

func (p Probe) read(rel string) (string, error) {
	b, err := os.ReadFile(p.path(rel))
	return strings.TrimSpace(string(b)), err
}

func (p Probe) euid() int {
	if p.Euid != nil {
		return *p.Euid
	}
	return os.Geteuid()
}

// Preflight checks that this machine can run kiln's BuildKit daemon.
func Preflight() []Finding { return Probe{StateDir: "/kaniko"}.Run() }

// Run performs the checks of the engine this process gets (see Engine):
// rootless needs user namespaces, newuidmap and subordinate IDs; rootful
// and rootless need seccomp and AppArmor to allow mount; the embedded
// engine needs only a container to run in.
func (p Probe) Run() []Finding {
	status := parseStatus(p)
	engine, why := p.engine(status)
	out := []Finding{{Check: "identity", Severity: SeverityOK, Seen: why}}
	if engine == EngineEmbedded {
		out = append(out, p.checkContainer())
		out = append(out, checkEmbeddedCapabilities(status))
		out = append(out, p.checkStateDir())
		return out
	}
	rootless := engine == EngineRootless
	if rootless {
		out = append(out, p.checkUserNamespaces()...)
		out = append(out, p.checkIDMapBinaries()...)
		out = append(out, p.checkSubordinateIDs()...)
		out = append(out, checkNoNewPrivs(status))
	}
	out = append(out, checkCapabilities(status, rootless))
	out = append(out, checkSeccomp(status, rootless))
	out = append(out, p.checkAppArmor())
	out = append(out, p.checkProcMasks())
	out = append(out, p.checkStateDir())
	return out
}

// status holds the /proc/self/status fields the checks use.
type status map[string]string

func parseStatus(p Probe) status {
	s := status{}
	f, err := os.Open(p.path("proc/self/status"))
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			s[k] = strings.TrimSpace(v)
		}
	}
	return s
}

func (s status) capSet(field string) (uint64, bool) {
	v, ok := s[field]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 16, 64)
	return n, err == nil
}

func hasCap(set uint64, bit uint) bool { return set&(1<<bit) != 0 }

func (p Probe) checkUserNamespaces() []Finding {
	var out []Finding
	f := Finding{Check: "user-namespaces", Severity: SeverityOK, Seen: "user namespaces can be created"}
	if v, err := p.read("proc/sys/user/max_user_namespaces"); err == nil && v == "0" {
		f = Finding{Check: "user-namespaces", Severity: SeverityError,
			Seen: "user.max_user_namespaces is 0", Why: "rootlesskit needs a user namespace (error: fork/exec /proc/self/exe: no space left on device)", Fix: fixUserns}
	} else if v, err := p.read("proc/sys/kernel/unprivileged_userns_clone"); err == nil && v == "0" {
		f = Finding{Check: "user-namespaces", Severity: SeverityError,
			Seen: "kernel.unprivileged_userns_clone is 0", Why: "unprivileged users may not create user namespaces", Fix: "node: sysctl -w kernel.unprivileged_userns_clone=1; cannot be fixed from the pod"}
	} else if v, err := p.read("proc/sys/kernel/apparmor_restrict_unprivileged_userns"); err == nil && v == "1" {
		f = Finding{Check: "user-namespaces", Severity: SeverityError,
			Seen: "kernel.apparmor_restrict_unprivileged_userns is 1", Why: "AppArmor forbids unprivileged user namespaces (error: fork/exec /proc/self/exe: permission denied)", Fix: "node: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0; cannot be fixed from the pod"}
	} else if err := p.tryUserNamespace(); err != nil {
		f = Finding{Check: "user-namespaces", Severity: SeverityError,
			Seen: "creating a user namespace failed: " + err.Error(), Why: "the seccomp or AppArmor profile blocks unshare(CLONE_NEWUSER)", Fix: fixSeccomp + "; " + fixAppArmor + "; " + fixRunAsRoot}
	}
	out = append(out, f)
	return out
}

func (p Probe) tryUserNamespace() error {
	if p.TryUserNamespace != nil {
		return p.TryUserNamespace()
	}
	return tryUserNamespace()
}

// tryUserNamespace clones a child into a new user namespace and lets its
// exec fail on a path that does not exist: ENOENT proves the clone worked
// without running anything.
func tryUserNamespace() error {
	missing := filepath.Join(os.TempDir(), "kiln-userns-probe-does-not-exist")
	cmd := &exec.Cmd{Path: missing, Args: []string{missing}, SysProcAttr: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}}
	err := cmd.Start()
	if err == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil
	}
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	return err
}

func (p Probe) lookPath(name string) (string, error) {
	if p.LookPath != nil {
		return p.LookPath(name)
	}
	if p.Root == "" || p.Root == "/" {
		return exec.LookPath(name)
	}
	for _, dir := range []string{"usr/bin", "bin", "usr/sbin", "sbin", "usr/local/bin"} {
		if fi, err := os.Stat(p.path(filepath.Join(dir, name))); err == nil && !fi.IsDir() {
			return p.path(filepath.Join(dir, name)), nil
		}
	}
	return "", exec.ErrNotFound
}

func (p Probe) checkIDMapBinaries() []Finding {
	var out []Finding
	for _, bin := range []string{"newuidmap", "newgidmap"} {
		f := Finding{Check: bin, Severity: SeverityOK}
		path, err := p.lookPath(bin)
		if err != nil {
			f.Severity, f.Seen, f.Why, f.Fix = SeverityError, bin+" not found on PATH", "rootlesskit maps subordinate IDs with it", fixNewuidmap
			out = append(out, f)
			continue
		}
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			f.Severity, f.Seen = SeverityError, fmt.Sprintf("%s: %v", path, err)
			f.Fix = fixNewuidmap
		case fi.Mode()&os.ModeSetuid != 0 && isRootOwned(fi):
			f.Seen = path + " is setuid root"
		case hasFileCaps(path):
			f.Seen = path + " has file capabilities"
		default:
			f.Severity, f.Seen = SeverityError, path+" is neither setuid root nor has file capabilities"
			f.Why = "it cannot write uid_map/gid_map (error: newuidmap: write to uid_map failed: Operation not permitted)"
			f.Fix = fixSetuidBinary
		}
		out = append(out, f)
	}
	return out
}

func isRootOwned(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}

func hasFileCaps(path string) bool {
	sz, err := unix.Getxattr(path, "security.capability", nil)
	return err == nil && sz > 0
}

func (p Probe) userName() string {
	if p.UserName != "" {
		return p.UserName
	}
	if u, err := user.LookupId(strconv.Itoa(p.euid())); err == nil {
		return u.Username
	}
	return ""
}

func (p Probe) checkSubordinateIDs() []Finding {
	var out []Finding
	name, uid := p.userName(), strconv.Itoa(p.euid())
	for _, file := range []string{"etc/subuid", "etc/subgid"} {
		f := Finding{Check: "/" + file, Severity: SeverityOK}
		count := subordinateCount(p.path(file), name, uid)
		switch {
		case count >= 65536:
			f.Seen = fmt.Sprintf("%d subordinate IDs for %s", count, describeUser(name, uid))
		case count > 0:
			f.Severity = SeverityWarning
			f.Seen = fmt.Sprintf("only %d subordinate IDs for %s", count, describeUser(name, uid))
			f.Why = "files owned by IDs above the range fail to extract (lchown … invalid argument)"
			f.Fix = fixSubid
		default:
			f.Severity = SeverityError
			f.Seen = fmt.Sprintf("no entry for %s in /%s", describeUser(name, uid), file)
			f.Why = "rootlesskit needs a subordinate ID range to map the build's users"
			f.Fix = fixSubid
		}
		out = append(out, f)
	}
	return out
}

func describeUser(name, uid string) string {
	if name == "" {
		return "UID " + uid
	}
	return fmt.Sprintf("%s (UID %s)", name, uid)
}

// subordinateCount sums the ranges /etc/subuid-style file grants to the user.
func subordinateCount(path, name, uid string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	total := 0
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.Split(strings.TrimSpace(line), ":")
		if len(parts) != 3 || (parts[0] != name && parts[0] != uid) || parts[0] == "" {
			continue
		}
		if n, err := strconv.Atoi(parts[2]); err == nil {
			total += n
		}
	}
	return total
}

func checkNoNewPrivs(s status) Finding {
	f := Finding{Check: "no-new-privileges", Severity: SeverityOK, Seen: "NoNewPrivs is 0"}
	if s["NoNewPrivs"] == "1" {
		f.Severity, f.Seen = SeverityError, "NoNewPrivs is 1 (allowPrivilegeEscalation: false)"
		f.Why = "setuid newuidmap/newgidmap cannot gain privileges (error: newuidmap: write to uid_map failed / Could not set caps)"
		f.Fix = fixNoNewPrivs
	}
	return f
}

func checkCapabilities(s status, rootless bool) Finding {
	f := Finding{Check: "capabilities", Severity: SeverityOK}
	bnd, ok := s.capSet("CapBnd")
	if !ok {
		f.Severity, f.Seen = SeverityWarning, "cannot read CapBnd from /proc/self/status"
		return f
	}
	eff, _ := s.capSet("CapEff")
	f.Seen = fmt.Sprintf("CapEff %016x, CapBnd %016x", eff, bnd)
	// newuidmap gains SETUID/SETGID only if the bounding set still has them.
	if rootless && !(hasCap(bnd, capSetuid) && hasCap(bnd, capSetgid)) {
		f.Severity = SeverityError
		f.Why = "newuidmap/newgidmap need CAP_SETUID and CAP_SETGID in the bounding set"
		f.Fix = fixCaps
	}
	return f
}

func checkSeccomp(s status, rootless bool) Finding {
	f := Finding{Check: "seccomp", Severity: SeverityOK}
	switch s["Seccomp"] {
	case "", "0":
		f.Seen = "no seccomp filter"
	case "1":
		f.Severity, f.Seen, f.Fix = SeverityError, "seccomp strict mode", fixSeccomp
	default:
		f.Seen = "seccomp filter active (Seccomp: 2)"
		f.Why = "the runtime's default profile blocks unshare and mount for BuildKit"
		f.Fix = fixSeccomp
		f.Severity = SeverityError
		if !rootless {
			// With CAP_SYS_ADMIN the default profiles allow mount and unshare.
			f.Severity = SeverityWarning
		}
	}
	return f
}

func (p Probe) checkAppArmor() Finding {
	f := Finding{Check: "apparmor", Severity: SeverityOK, Seen: "no AppArmor profile"}
	label, err := p.read("proc/self/attr/apparmor/current")
	if err != nil {
		label, err = p.read("proc/self/attr/current")
	}
	label = strings.TrimRight(label, "\x00")
	switch {
	case err != nil || label == "" || label == "unconfined":
		if err == nil && label != "" {
			f.Seen = "AppArmor: unconfined"
		}
	case strings.HasSuffix(label, "(complain)") || strings.HasSuffix(label, "(unconfined)"):
		f.Seen = "AppArmor profile " + label + " (not enforcing)"
	default:
		f.Severity, f.Seen = SeverityError, "AppArmor profile "+label
		f.Why = "the profile denies mount (error: [rootlesskit:child ] error: failed to share mount point: /: permission denied)"
		f.Fix = fixAppArmor
	}
	return f
}

// maskedPaths are paths container runtimes hide under /proc.
var maskedPaths = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/acpi", "/proc/scsi", "/proc/latency_stats"}

func (p Probe) checkProcMasks() Finding {
	f := Finding{Check: "proc-masks", Severity: SeverityOK, Seen: "/proc is not masked"}
	mounts, err := p.mounts()
	if err != nil {
		f.Severity, f.Seen = SeverityWarning, "cannot read /proc/self/mountinfo: "+err.Error()
		return f
	}
	var masked []string
	for _, m := range mounts {
		for _, mp := range maskedPaths {
			if m.Point == mp {
				masked = append(masked, mp)
			}
		}
		if m.Point == "/proc/sys" && m.ReadOnly {
			masked = append(masked, "/proc/sys (read-only)")
		}
	}
	if len(masked) > 0 {
		f.Severity = SeverityWarning
		f.Seen = "masked: " + strings.Join(masked, ", ")
		f.Why = "BuildKit cannot mount a fresh /proc for each RUN, so RUN steps share the daemon's process namespace (error otherwise: mount proc:/proc … operation not permitted)"
		f.Fix = fixProcMask
	}
	return f
}

// mounts parses /proc/self/mountinfo.
func (p Probe) mounts() ([]mountinfo.Mount, error) {
	f, err := os.Open(p.path("proc/self/mountinfo"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mountinfo.Parse(f)
}

func (p Probe) checkStateDir() Finding {
	dir := p.StateDir
	if dir == "" {
		dir = "/kaniko"
	}
	f := Finding{Check: "state-dir", Severity: SeverityOK}
	// kiln creates a missing state dir, so test the nearest existing parent.
	existing := dir
	for {
		if _, err := os.Stat(p.path(existing)); err == nil || existing == "/" || existing == "." {
			break
		}
		existing = filepath.Dir(existing)
	}
	tmp, err := os.CreateTemp(p.path(existing), ".kiln-preflight-")
	if err != nil {
		f.Severity, f.Seen = SeverityError, fmt.Sprintf("%s is not writable: %v", existing, errors.Unwrap(err))
		f.Why = "BuildKit keeps its state and snapshots there"
		f.Fix = fixStateDir
		return f
	}
	tmp.Close()
	os.Remove(tmp.Name())
	fsType := "unknown"
	if mounts, err := p.mounts(); err == nil {
		best := -1
		for _, m := range mounts {
			if (dir == m.Point || strings.HasPrefix(dir, strings.TrimSuffix(m.Point, "/")+"/")) && len(m.Point) > best {
				best, fsType = len(m.Point), m.FSType
			}
		}
	}
	f.Seen = fmt.Sprintf("%s is writable (%s)", dir, fsType)
	if existing != dir {
		f.Seen = fmt.Sprintf("%s will be created in %s (writable, %s)", dir, existing, fsType)
	}
	if fsType == "overlay" {
		f.Severity = SeverityWarning
		f.Why = "overlayfs cannot be stacked on overlayfs, so BuildKit falls back to the slow native snapshotter"
		f.Fix = fixStateDir
	}
	return f
}
