package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/continuity/fs"
	"github.com/kilnbuild/kiln/executor/ociruntime"
	bkexecutor "github.com/moby/buildkit/executor"
	"github.com/moby/buildkit/executor/oci"
	resourcestypes "github.com/moby/buildkit/executor/resources/types"
	gatewayapi "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/snapshot"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// rootRunner runs each RUN the way Kaniko does: as a plain process in the
// container's own root filesystem, which is made to hold the step's
// filesystem first and is read back into the step's snapshot after. RUN
// therefore sees the container's real /proc, /dev, /sys, /etc/hosts and
// /etc/resolv.conf. One RUN at a time owns the root; pulls, COPY and
// exports go on in parallel in snapshot directories.
type rootRunner struct {
	root string // "/" in a container; tests give a directory (RUN then chroots)
	skip *skipList
	// stash keeps the root's own tree (as hardlinks, so on the root's
	// filesystem) while builds borrow the root.
	stash string

	// secrets are credential files RUN must not read; exposed reports
	// those that cannot be taken away (read-only mounts).
	secrets []string
	exposed func(paths []string)

	// kanikoDir is guarded while RUN steps run (kanikoGuard), but for the
	// paths kanikoKeep names.
	kanikoDir  string
	kanikoKeep *skipList
	guard      *kanikoGuard

	mu       sync.Mutex
	borrowed bool
	// synced is what the root and the last RUN's snapshot held equal when
	// that RUN ended; nil when the root's content is not known.
	synced    *syncedTree
	hidden    []hiddenFile
	rootTimes [2]unix.Timespec // the root's own, put back with its tree
}

func (r *rootRunner) Run(ctx context.Context, _ string, rootfs bkexecutor.Mount, mounts []bkexecutor.Mount, process bkexecutor.ProcessInfo, started chan<- struct{}) (resourcestypes.Recorder, error) {
	meta := process.Meta
	if len(meta.Args) == 0 {
		return nil, errors.New("RUN without a command")
	}
	ref, err := rootfs.Src.Mount(ctx, false)
	if err != nil {
		return nil, err
	}
	lm := snapshot.LocalMounter(ref)
	dir, err := lm.Mount()
	if err != nil {
		return nil, err
	}
	defer lm.Unmount()
	runMounts, err := resolveRunMounts(ctx, mounts)
	if err != nil {
		return nil, err
	}
	defer releaseRunMounts(runMounts)

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.borrow(); err != nil {
		return nil, err
	}
	known := r.synced
	r.synced = nil
	if err := syncIntoRoot(dir, r.root, r.skip, known); err != nil {
		return nil, fmt.Errorf("preparing the root filesystem for RUN: %w", err)
	}
	stubs, err := placeRunMounts(r.root, runMounts, r.skip)
	if err != nil {
		takeRunMounts(r.root, dir, runMounts, stubs, r.skip)
		return nil, err
	}
	// Whatever the RUN changes gets a ctime from here on; the coarse clock
	// may lag the real one by a tick.
	runStart := time.Now().Add(-20 * time.Millisecond)
	runErr := r.exec(ctx, dir, meta, process, started)
	if err := takeRunMounts(r.root, dir, runMounts, stubs, r.skip); err != nil {
		return nil, err
	}
	synced, err := syncFromRoot(r.root, dir, r.skip, runStart)
	if err != nil {
		return nil, fmt.Errorf("reading back what RUN wrote: %w", err)
	}
	r.synced = synced
	return nil, runErr
}

// exec runs the process in the root and returns BuildKit's error for its
// exit status.
func (r *rootRunner) exec(ctx context.Context, snapshotDir string, meta bkexecutor.Meta, process bkexecutor.ProcessInfo, started chan<- struct{}) error {
	uid, gid, groups, err := oci.GetUser(snapshotDir, meta.User)
	if err != nil {
		return fmt.Errorf("USER %s: %w", meta.User, err)
	}
	if uid != 0 {
		// The groups Kaniko's RUN gets (kiln-runc applies the same).
		creds, err := ociruntime.KanikoCredentials(snapshotDir, uid)
		if err != nil {
			return err
		}
		gid, groups = creds.GID, creds.Groups
	} else if !slices.Contains(groups, gid) {
		// As runc gives root: its group first, then its memberships.
		groups = append([]uint32{gid}, groups...)
	}
	cwd := meta.Cwd
	if cwd == "" {
		cwd = "/"
	}
	hostCwd, err := fs.RootPath(r.root, cwd)
	if err != nil {
		return fmt.Errorf("working dir %s: %w", cwd, err)
	}
	if _, err := os.Stat(hostCwd); err != nil {
		if err := os.MkdirAll(hostCwd, 0o755); err != nil {
			return fmt.Errorf("creating working directory %s: %w", cwd, err)
		}
	}
	env := ociruntime.WithoutTracingEnv(meta.Env)
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "HOME=") }) {
		env = append(env, "HOME="+homeOf(snapshotDir, meta.User))
	}
	path, err := r.lookPath(meta.Args[0], env, cwd)
	if err != nil {
		return err
	}

	cmd := &exec.Cmd{
		Path:   path,
		Args:   meta.Args,
		Env:    env,
		Dir:    cwd, // the root is "/", or the process chroots into it
		Stdin:  process.Stdin,
		Stdout: process.Stdout,
		Stderr: process.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups, NoSetGroups: false},
		},
		// Background processes may hold the output open; they are
		// killed below, their output after the RUN ends is dropped.
		WaitDelay: 500 * time.Millisecond,
	}
	if r.root != "/" {
		cmd.SysProcAttr.Chroot = r.root
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", meta.Args[0], err)
	}
	if started != nil {
		close(started)
	}
	pgid := cmd.Process.Pid
	waitDone := make(chan struct{})
	go func() {
		for {
			select {
			case <-waitDone:
				return
			case <-ctx.Done():
				syscall.Kill(-pgid, syscall.SIGKILL)
				return
			case sig, ok := <-process.Signal:
				if !ok {
					process.Signal = nil
					continue
				}
				syscall.Kill(-pgid, sig)
			}
		}
	}()
	waitErr := cmd.Wait()
	close(waitDone)
	// Like a container's end: nothing the RUN started outlives it.
	syscall.Kill(-pgid, syscall.SIGKILL)

	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	code := cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if waitErr != nil && code < 0 {
		return &gatewayapi.ExitError{ExitCode: gatewayapi.UnknownExitStatus, Err: waitErr}
	}
	if code == 0 || slices.Contains(meta.ValidExitCodes, code) {
		return nil
	}
	return &gatewayapi.ExitError{ExitCode: uint32(code)}
}

// homeOf is the HOME a RUN without one gets, as runc and Kaniko give it:
// the user's passwd entry in the image, else "/".
func homeOf(snapshotDir, userSpec string) string {
	if userSpec == "" {
		userSpec = "0"
	}
	passwd, err := fs.RootPath(snapshotDir, "/etc/passwd")
	if err != nil {
		return "/"
	}
	group, err := fs.RootPath(snapshotDir, "/etc/group")
	if err != nil {
		return "/"
	}
	u, err := user.GetExecUserPath(userSpec, &user.ExecUser{Home: "/"}, passwd, group)
	if err != nil || u.Home == "" {
		return "/"
	}
	return u.Home
}

// lookPath finds the command as the RUN's own PATH finds it in the root
// (the executor's PATH is not the image's); the path is the root's.
func (r *rootRunner) lookPath(name string, env []string, cwd string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(cwd, name)
		}
		return name, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		candidate := filepath.Join(d, name)
		if !filepath.IsAbs(candidate) {
			candidate = filepath.Join(cwd, candidate)
		}
		host, err := fs.RootPath(r.root, candidate)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(host); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

// borrow keeps the root's own tree aside before the first RUN changes it.
func (r *rootRunner) borrow() error {
	if r.borrowed {
		return nil
	}
	if r.kanikoDir != "" && r.kanikoDir != r.root {
		keep := func(path string) bool {
			rel, err := filepath.Rel(r.root, path)
			return err != nil || r.kanikoKeep.has(rel)
		}
		guard, err := guardKanikoDir(r.kanikoDir, keep)
		if err != nil {
			return err
		}
		r.guard = guard
	}
	hidden, exposed, err := hideFiles(r.secrets)
	r.hidden = hidden
	if err != nil {
		return fmt.Errorf("keeping registry credentials from RUN: %w", err)
	}
	if len(exposed) > 0 && r.exposed != nil {
		r.exposed(exposed)
	}
	var st unix.Stat_t
	if err := unix.Stat(r.root, &st); err != nil {
		return err
	}
	r.rootTimes = [2]unix.Timespec{st.Atim, st.Mtim}
	if err := os.MkdirAll(r.stash, 0o700); err != nil {
		return err
	}
	if err := linkTree(r.root, r.stash, r.skip); err != nil {
		return fmt.Errorf("keeping the container's root filesystem aside: %w", err)
	}
	r.borrowed = true
	return nil
}

// restore puts the root's own tree back once no RUN needs the root.
func (r *rootRunner) restore() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	secretsErr := putBack(r.hidden)
	r.hidden = nil
	r.synced = nil
	if r.guard != nil {
		secretsErr = errors.Join(secretsErr, r.guard.restore())
		r.guard.close()
		r.guard = nil
	}
	if !r.borrowed {
		return secretsErr
	}
	if err := linkTree(r.stash, r.root, r.skip); err != nil {
		return errors.Join(secretsErr, fmt.Errorf("restoring the container's root filesystem: %w", err))
	}
	r.borrowed = false
	// Removing the stash's links can touch the times of the other links'
	// directories (fuse-overlayfs does): the times are set again after.
	times, err := treeTimes(r.stash)
	if err != nil {
		return errors.Join(secretsErr, err)
	}
	if err := os.RemoveAll(r.stash); err != nil {
		return errors.Join(secretsErr, err)
	}
	times[""] = r.rootTimes
	return errors.Join(secretsErr, setTreeTimes(r.root, times))
}

func (r *rootRunner) Exec(context.Context, string, bkexecutor.ProcessInfo) error {
	return errors.New("attaching to a running RUN is not supported by kiln")
}
