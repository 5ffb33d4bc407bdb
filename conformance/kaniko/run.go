package kaniko

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Paths inside the chroot, as in Kaniko's official executor image.
const (
	Workspace  = "/workspace"
	DigestFile = "/kaniko/out/digest"
)

// imageEnv is the environment of Kaniko's official executor image.
var imageEnv = []string{
	"HOME=/root",
	"USER=root",
	"PATH=/usr/local/bin:/kaniko",
	"SSL_CERT_DIR=/kaniko/ssl/certs",
	"DOCKER_CONFIG=/kaniko/.docker/",
	"DOCKER_CREDENTIAL_GCR_CONFIG=/kaniko/.config/gcloud/docker_credential_gcr_config.json",
}

// Run describes one Kaniko invocation.
type Run struct {
	// Executor is the host path of the Kaniko binary (see EnsureExecutor).
	Executor string
	// Context is a host directory copied (with owners, modes and links) to
	// /workspace, which is a mount point as in CI pods.
	Context string
	// Args are the executor arguments; paths are inside the chroot. --force
	// and --digest-file are added.
	Args []string
	// Env is added to the official image's environment.
	Env []string
	// DockerConfig is written to /kaniko/.docker/config.json ("{}" if nil).
	DockerConfig []byte
	// ScratchDir is where the fresh root is created; default os.TempDir().
	ScratchDir string
	// Timeout bounds the run; default 30 minutes.
	Timeout time.Duration
	// Log receives the full executor output when set.
	Log io.Writer
	// KeepRoot leaves the fresh root for the caller to remove with
	// Result.RemoveRoot, after it has timed the run: in a pod the runtime
	// discards the container's files after the job, not within it.
	KeepRoot bool
}

// Result is the outcome of a run. A failing build is a Result with a
// non-zero ExitCode, not an error.
type Result struct {
	ExitCode int
	// OutputTail is the last few KiB of the executor's stderr and stdout.
	OutputTail string
	// Digest is the manifest digest from --digest-file (empty on failure).
	Digest   string
	Duration time.Duration
	// RemoveRoot removes the fresh root when Run.KeepRoot left it.
	RemoveRoot func()
}

// CheckHost reports what this machine lacks to run Kaniko safely.
func CheckHost() error {
	if os.Geteuid() != 0 {
		return errors.New("running kaniko needs root (mount and PID namespaces, chroot)")
	}
	for _, tool := range []string{"unshare", "chroot", "mount", "mknod", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("running kaniko needs %s (util-linux/coreutils) on PATH", tool)
		}
	}
	return nil
}

// Execute prepares a fresh root and runs Kaniko in it, returning its
// outcome; errors are harness failures.
func (r Run) Execute(ctx context.Context) (*Result, error) {
	p, err := r.Prepare()
	if err != nil {
		return nil, err
	}
	return p.Execute(ctx)
}

// Prepared is a fresh root laid out for one run, as a node holds the
// image's files before the pod starts.
type Prepared struct {
	run           Run
	scratch, root string
}

// Prepare lays out the fresh root (executor, context, config) without
// running anything, so a caller can time the run alone. Execute or Remove
// must follow.
func (r Run) Prepare() (*Prepared, error) {
	if err := CheckHost(); err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp(r.ScratchDir, "kaniko-root-")
	if err != nil {
		return nil, err
	}
	p := &Prepared{run: r, scratch: scratch, root: filepath.Join(scratch, "root")}
	if err := r.layout(p.root); err != nil {
		p.Remove()
		return nil, fmt.Errorf("preparing kaniko root: %w", err)
	}
	return p, nil
}

// Remove deletes the fresh root.
func (p *Prepared) Remove() { removeRoot(p.scratch, p.root) }

// Execute runs Kaniko chrooted into the prepared root; errors are harness
// failures. The root is removed after, or left to Result.RemoveRoot.
func (p *Prepared) Execute(ctx context.Context) (res *Result, err error) {
	r, root, scratch := p.run, p.root, p.scratch
	defer func() {
		if r.KeepRoot && res != nil {
			res.RemoveRoot = p.Remove
			return
		}
		p.Remove()
	}()
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	args := append([]string{"--kill-child", "--mount", "--pid", "--fork", "--propagation", "private",
		"/bin/sh", "-c", namespaceScript, "sh", root, filepath.Join(scratch, "etc")},
		"--force", "--digest-file="+DigestFile)
	args = append(args, r.Args...)
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Env = append(append([]string{}, imageEnv...), r.Env...)
	var out bytes.Buffer
	var w io.Writer = &out
	if r.Log != nil {
		w = io.MultiWriter(&out, r.Log)
	}
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	runErr := cmd.Run()
	res = &Result{Duration: time.Since(start), OutputTail: tail(out.String(), 8192)}
	var exitErr *exec.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &exitErr) && ctx.Err() == nil:
		res.ExitCode = exitErr.ExitCode()
	default:
		return res, fmt.Errorf("running kaniko: %w\n%s", runErr, res.OutputTail)
	}
	if strings.Contains(res.OutputTail, "namespace setup failed") {
		return res, fmt.Errorf("kaniko namespace setup failed:\n%s", res.OutputTail)
	}
	if res.ExitCode == 0 {
		d, err := os.ReadFile(filepath.Join(root, DigestFile))
		if err != nil {
			return res, fmt.Errorf("kaniko succeeded but wrote no digest file: %w", err)
		}
		res.Digest = strings.TrimSpace(string(d))
	}
	return res, nil
}

// namespaceScript runs as PID 1 of the new PID namespace with private mounts:
// it mounts the pseudo filesystems and the workspace inside the fresh root and
// execs Kaniko chrooted there. $1 is the root, $2 the host files to bind.
const namespaceScript = `set -e
fail() { echo "namespace setup failed: $*" >&2; exit 125; }
R=$1; E=$2; shift 2
image_path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin
chroot_bin=$(command -v chroot) || fail "chroot not found"
[ "$R" != / ] || fail "refusing to use / as root"
mount --make-rprivate / || fail "making mounts private"
mount -t proc proc "$R/proc" || fail "mounting /proc"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$R/dev" || fail "mounting /dev"
for d in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read n ma mi <<EOF
$d
EOF
  mknod -m 0666 "$R/dev/$n" c "$ma" "$mi" || fail "creating /dev/$n"
done
mkdir -p "$R/dev/shm" "$R/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm" || fail "mounting /dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
mount -t sysfs -o ro sysfs "$R/sys" 2>/dev/null || mount --rbind -o ro /sys "$R/sys" || fail "mounting /sys"
mount --bind "$R/workspace" "$R/workspace" || fail "mounting /workspace"
for f in resolv.conf hosts; do
  mount --bind -o ro "$E/$f" "$R/etc/$f" || fail "mounting /etc/$f"
done
PATH=$image_path
exec "$chroot_bin" "$R" /kaniko/executor "$@"
`

// layout creates the fresh root like Kaniko's official image.
func (r Run) layout(root string) error {
	for _, d := range []string{"", "proc", "dev", "sys", "etc", "kaniko", "kaniko/.docker", "kaniko/ssl/certs", "kaniko/out", "workspace"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	// The official image makes /kaniko world-writable for non-root runs.
	if err := os.Chmod(filepath.Join(root, "kaniko"), 0o777); err != nil {
		return err
	}
	if err := copyPath(r.Executor, filepath.Join(root, "kaniko", "executor")); err != nil {
		return fmt.Errorf("copying executor: %w", err)
	}
	// kiln's image has its helper program next to the executor.
	if helper := filepath.Join(filepath.Dir(r.Executor), "kiln-helper"); isFile(helper) {
		if err := copyPath(helper, filepath.Join(root, "kaniko", "kiln-helper")); err != nil {
			return fmt.Errorf("copying kiln-helper: %w", err)
		}
	}
	cfg := r.DockerConfig
	if cfg == nil {
		cfg = []byte("{}")
	}
	if err := os.WriteFile(filepath.Join(root, "kaniko/.docker/config.json"), cfg, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "kaniko/ssl/certs/ca-certificates.crt"), hostCABundle(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/nsswitch.conf"), []byte("hosts: files dns\n"), 0o644); err != nil {
		return err
	}
	// Bind targets inside the root plus private copies of the host files, so
	// nothing Kaniko does reaches the host's /etc.
	hostEtc := filepath.Join(filepath.Dir(root), "etc")
	if err := os.MkdirAll(hostEtc, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"resolv.conf", "hosts"} {
		data, err := os.ReadFile(filepath.Join("/etc", f))
		if err != nil {
			data = nil
		}
		if err := os.WriteFile(filepath.Join(hostEtc, f), data, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "etc", f), nil, 0o644); err != nil {
			return err
		}
	}
	if r.Context != "" {
		if out, err := exec.Command("cp", "-a", r.Context+"/.", filepath.Join(root, "workspace")).CombinedOutput(); err != nil {
			return fmt.Errorf("copying context: %v: %s", err, out)
		}
	}
	return nil
}

func hostCABundle() []byte {
	for _, p := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"} {
		if data, err := os.ReadFile(p); err == nil {
			return data
		}
	}
	return nil
}

func copyPath(src, dest string) error {
	if out, err := exec.Command("cp", "-a", src, dest).CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// removeRoot deletes the scratch tree once no mount is left inside it (the
// namespace is gone, so none should be); with a mount left it keeps the tree
// rather than delete through a mount.
func removeRoot(scratch, root string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil || strings.Contains(string(data), " "+root) {
		fmt.Fprintf(os.Stderr, "kaniko: leaving %s in place: a mount is still inside it\n", scratch)
		return
	}
	os.RemoveAll(scratch)
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
