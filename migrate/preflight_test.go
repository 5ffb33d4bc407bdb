package migrate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// healthyStatus is /proc/self/status of a non-root process allowed to run
// rootless BuildKit: no seccomp, default bounding set, NoNewPrivs 0.
const healthyStatus = `Name:	executor
Uid:	1000	1000	1000	1000
CapInh:	0000000000000000
CapPrm:	0000000000000000
CapEff:	0000000000000000
CapBnd:	00000000a80425fb
NoNewPrivs:	0
Seccomp:	0
`

const plainMountinfo = `22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw
23 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
24 22 0:23 / /kaniko rw,relatime - ext4 /dev/sda1 rw
`

const maskedMountinfo = plainMountinfo + `30 23 0:5 /null /proc/kcore rw,nosuid - devtmpfs udev rw
31 23 0:40 / /proc/acpi ro,relatime - tmpfs tmpfs ro
32 23 0:22 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
`

// fakeRoot writes a healthy environment, then applies edits (path -> content,
// "" deletes).
func fakeRoot(t *testing.T, edits map[string]string) Probe {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"proc/self/status":                  healthyStatus,
		"proc/self/mountinfo":               plainMountinfo,
		"proc/self/attr/current":            "unconfined",
		"proc/sys/user/max_user_namespaces": "63359",
		"etc/subuid":                        "builder:100000:65536\n",
		"etc/subgid":                        "builder:100000:65536\n",
	}
	for k, v := range edits {
		files[k] = v
	}
	for rel, content := range files {
		if content == "" {
			continue
		}
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "kaniko"), 0o777); err != nil {
		t.Fatal(err)
	}
	uid := 1000
	setuidBin := filepath.Join(root, "usr/bin/newuidmap")
	return Probe{
		Root: root, Euid: &uid, UserName: "builder", StateDir: "/kaniko",
		LookPath: func(name string) (string, error) {
			if _, gone := edits["usr/bin/"+name]; gone {
				return "", errors.New("not found")
			}
			return setuidBin, nil
		},
		TryUserNamespace: func() error { return nil },
	}
}

func findCheck(t *testing.T, findings []Finding, check string) Finding {
	t.Helper()
	for _, f := range findings {
		if f.Check == check {
			return f
		}
	}
	t.Fatalf("no %q finding in %+v", check, findings)
	return Finding{}
}

// healthy probes need a setuid-root newuidmap in the fake tree; only root
// can create one, so those tests check the binary finding separately.
func TestPreflightFindings(t *testing.T) {
	for _, tc := range []struct {
		name      string
		edits     map[string]string
		probe     func(*Probe)
		check     string
		severity  Severity
		seen, fix string
	}{
		{name: "seccomp filter on", edits: map[string]string{"proc/self/status": strings.Replace(healthyStatus, "Seccomp:\t0", "Seccomp:\t2", 1)},
			check: "seccomp", severity: SeverityError, seen: "Seccomp: 2", fix: "seccompProfile: {type: Unconfined}"},
		{name: "AppArmor enforcing", edits: map[string]string{"proc/self/attr/current": "cri-containerd.apparmor.d (enforce)\n"},
			check: "apparmor", severity: SeverityError, seen: "cri-containerd.apparmor.d (enforce)", fix: "appArmorProfile: {type: Unconfined}"},
		{name: "AppArmor complain mode", edits: map[string]string{"proc/self/attr/current": "docker-default (complain)"},
			check: "apparmor", severity: SeverityOK, seen: "not enforcing"},
		{name: "userns disabled", edits: map[string]string{"proc/sys/user/max_user_namespaces": "0\n"},
			check: "user-namespaces", severity: SeverityError, seen: "max_user_namespaces is 0", fix: "user.max_user_namespaces"},
		{name: "userns blocked by profile", probe: func(p *Probe) { p.TryUserNamespace = func() error { return errors.New("operation not permitted") } },
			check: "user-namespaces", severity: SeverityError, seen: "operation not permitted", fix: "seccompProfile"},
		{name: "no newuidmap", edits: map[string]string{"usr/bin/newuidmap": ""},
			check: "newuidmap", severity: SeverityError, seen: "not found", fix: "uidmap"},
		{name: "no subuid entry", edits: map[string]string{"etc/subuid": "someoneelse:100000:65536\n"},
			check: "/etc/subuid", severity: SeverityError, seen: "no entry for builder (UID 1000)", fix: "/etc/subuid"},
		{name: "small subgid range", edits: map[string]string{"etc/subgid": "1000:100000:1000\n"},
			check: "/etc/subgid", severity: SeverityWarning, seen: "only 1000"},
		{name: "NoNewPrivs", edits: map[string]string{"proc/self/status": strings.Replace(healthyStatus, "NoNewPrivs:\t0", "NoNewPrivs:\t1", 1)},
			check: "no-new-privileges", severity: SeverityError, seen: "NoNewPrivs is 1", fix: "allowPrivilegeEscalation: true"},
		{name: "SETUID dropped", edits: map[string]string{"proc/self/status": strings.Replace(healthyStatus, "a80425fb", "a804253b", 1)},
			check: "capabilities", severity: SeverityError, fix: "add: [SETUID, SETGID]"},
		{name: "masked proc", edits: map[string]string{"proc/self/mountinfo": maskedMountinfo},
			check: "proc-masks", severity: SeverityWarning, seen: "/proc/kcore, /proc/acpi, /proc/sys (read-only)", fix: "procMount: Unmasked"},
		{name: "state dir on overlay", edits: map[string]string{"proc/self/mountinfo": strings.Replace(plainMountinfo, "/kaniko rw,relatime - ext4", "/kaniko rw,relatime - overlay", 1)},
			check: "state-dir", severity: SeverityWarning, seen: "(overlay)", fix: "emptyDir"},
		{name: "root without CAP_SYS_ADMIN", probe: func(p *Probe) { root := 0; p.Euid = &root },
			edits: map[string]string{"proc/self/status": strings.Replace(healthyStatus, "CapEff:\t0000000000000000", "CapEff:\t00000000a80425fb", 1)},
			check: "identity", severity: SeverityOK, seen: "without CAP_SYS_ADMIN (a container's default privileges): kiln runs BuildKit inside its own process"},
		{name: "root with full capabilities", probe: func(p *Probe) { root := 0; p.Euid = &root },
			edits: map[string]string{"proc/self/status": strings.Replace(healthyStatus, "CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff", 1)},
			check: "identity", severity: SeverityOK, seen: "rootful"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fakeRoot(t, tc.edits)
			if tc.probe != nil {
				tc.probe(&p)
			}
			f := findCheck(t, p.Run(), tc.check)
			if f.Severity != tc.severity || !strings.Contains(f.Seen, tc.seen) || !strings.Contains(f.Fix, tc.fix) {
				t.Errorf("got %+v\nwant severity %s, seen containing %q, fix containing %q", f, tc.severity, tc.seen, tc.fix)
			}
			if tc.severity != SeverityOK && f.Fix == "" {
				t.Errorf("problem without a fix: %+v", f)
			}
		})
	}
}

func TestPreflightHealthyRootlessTree(t *testing.T) {
	p := fakeRoot(t, nil)
	for _, f := range p.Run() {
		if f.Check == "newuidmap" || f.Check == "newgidmap" {
			continue // the fake binary is not setuid; covered below
		}
		if f.Severity != SeverityOK {
			t.Errorf("healthy tree reported %+v", f)
		}
	}
	if testing.Verbose() {
		t.Logf("%+v", p.Run())
	}
}

func TestPreflightIDMapBinaryModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("this test creates a root-owned setuid file and must run as root (euid %d)", os.Geteuid())
	}
	p := fakeRoot(t, nil)
	bin := filepath.Join(p.Root, "usr/bin/newuidmap")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if f := findCheck(t, p.Run(), "newuidmap"); f.Severity != SeverityError || !strings.Contains(f.Fix, "setuid") {
		t.Errorf("plain binary: %+v", f)
	}
	if err := os.Chmod(bin, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	if f := findCheck(t, p.Run(), "newuidmap"); f.Severity != SeverityOK || !strings.Contains(f.Seen, "setuid root") {
		t.Errorf("setuid binary: %+v", f)
	}
}

// TestPreflightThisMachine runs the real probes: this test machine runs the
// suite as root with full capabilities.
func TestPreflightThisMachine(t *testing.T) {
	findings := Preflight()
	if len(findings) < 6 {
		t.Fatalf("too few findings: %+v", findings)
	}
	for _, f := range findings {
		if f.Severity == "" || f.Seen == "" {
			t.Errorf("incomplete finding %+v", f)
		}
		t.Logf("%-18s %-7s %s", f.Check, f.Severity, f.Seen)
	}
	if os.Geteuid() == 0 {
		id := findCheck(t, findings, "identity")
		if !strings.Contains(id.Seen, "root") {
			t.Errorf("identity as root: %+v", id)
		}
	}
	if err := tryUserNamespace(); err != nil {
		t.Errorf("creating a user namespace on this machine failed: %v", err)
	}
}

func TestRootWithoutSysAdminGetsTheEmbeddedEngine(t *testing.T) {
	status := strings.Replace(healthyStatus, "CapEff:\t0000000000000000", "CapEff:\t00000000a80425fb", 1)
	p := fakeRoot(t, map[string]string{"proc/self/status": status, ".dockerenv": "\n"})
	root := 0
	p.Euid = &root
	p.UserName = "root"
	if got := p.Engine(); got != EngineEmbedded {
		t.Fatalf("root without CAP_SYS_ADMIN runs %s, want the embedded engine", got)
	}
	checks := map[string]Finding{}
	for _, f := range p.Run() {
		checks[f.Check] = f
		if f.Severity == SeverityError {
			t.Errorf("a Kaniko pod's privileges must not fail the embedded engine: %+v", f)
		}
	}
	for _, unwanted := range []string{"user-namespaces", "seccomp", "apparmor", "/etc/subuid"} {
		if _, ok := checks[unwanted]; ok {
			t.Errorf("check %q does not apply to the embedded engine", unwanted)
		}
	}
	if !strings.Contains(checks["identity"].Seen, "without CAP_SYS_ADMIN") {
		t.Errorf("identity does not say why: %+v", checks["identity"])
	}

	p.Mode = string(EngineRootless)
	checks = map[string]Finding{}
	for _, f := range p.Run() {
		checks[f.Check] = f
	}
	for _, want := range []string{"user-namespaces", "no-new-privileges", "/etc/subuid"} {
		if _, ok := checks[want]; !ok {
			t.Errorf("rootless check %q missing when rootless is forced: %v", want, checks)
		}
	}

	full := strings.Replace(healthyStatus, "CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff", 1)
	p = fakeRoot(t, map[string]string{"proc/self/status": full})
	p.Euid = &root
	if got := p.Engine(); got != EngineRootful {
		t.Errorf("root with CAP_SYS_ADMIN runs %s, want rootful", got)
	}
}

func TestEmbeddedEngineRefusesToRunOutsideAContainer(t *testing.T) {
	status := strings.Replace(healthyStatus, "CapEff:\t0000000000000000", "CapEff:\t00000000a80425fb", 1)
	p := fakeRoot(t, map[string]string{"proc/self/status": status, "proc/1/cgroup": "0::/init.scope\n"})
	root := 0
	p.Euid = &root
	p.Env = map[string]string{}
	find := func() Finding {
		for _, f := range p.Run() {
			if f.Check == "container" {
				return f
			}
		}
		t.Fatal("no container check")
		return Finding{}
	}
	if f := find(); f.Severity != SeverityError || !strings.Contains(f.Fix, "--force") {
		t.Errorf("outside a container: %+v, want an error naming --force", f)
	}
	p.Force = true
	if f := find(); f.Severity != SeverityWarning {
		t.Errorf("with --force: %+v, want a warning", f)
	}
	p.Force = false
	p.Env = map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
	if f := find(); f.Severity != SeverityOK {
		t.Errorf("in a pod: %+v, want ok", f)
	}
}
