package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/golden"
	"github.com/kilnbuild/kiln/conformance/inspect"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// buildTimeout bounds one kiln build.
const buildTimeout = 10 * time.Minute

// outputTailSize is how much of kiln's output is kept for the error message.
const outputTailSize = 8 << 10

// Build is what kiln produced for one case in one mode.
type Build struct {
	Outcome  golden.Outcome
	Image    *inspect.Image
	Duration time.Duration
}

// builder runs kiln's executor on cases against one harness (one per mode,
// so each mode's cases/<name> images stay apart).
type builder struct {
	executor string
	harness  *golden.Harness
	// user, when set, runs kiln as this non-root user (rootless BuildKit).
	user    *testenv.User
	scratch string
	logDir  string
	mode    Mode
	// image runs the embedded mode: kiln's image with Executor in it.
	image string
	// baseHistories are the histories of the harness's base images (plain
	// mode: they tell Kaniko's history authors, see plainReference).
	baseHistories [][]inspect.History
}

// build materialises the case's context, runs kiln exactly as the golden
// harness runs Kaniko (same case and harness arguments) and inspects the
// pushed image. Errors are harness failures, not kiln failures.
func (b *builder) build(ctx context.Context, c *corpus.Case) (*Build, error) {
	dir, err := os.MkdirTemp(b.scratch, c.Name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	workspace := filepath.Join(dir, "workspace")
	if err := c.Materialize(workspace); err != nil {
		return nil, err
	}
	// HOME, TMPDIR and the daemon's socket dir: short, as unix socket paths
	// are limited to 108 bytes.
	home, err := os.MkdirTemp("", "kh")
	if err != nil {
		return nil, err
	}
	defer func() {
		// kiln's private dirs in it may still be on their way out.
		testenv.AwaitRemovers(home+"/", 2*time.Minute)
		os.RemoveAll(home)
	}()
	if b.user != nil {
		if err := handOver(workspace, *b.user); err != nil {
			return nil, err
		}
		if err := os.Lchown(home, b.user.UID, b.user.GID); err != nil {
			return nil, err
		}
	}
	digestFile := filepath.Join(home, "digest")
	args := append(golden.CaseArgsIn(c, workspace), b.harness.HarnessArgs(c)...)
	if b.mode == Plain {
		args = slices.DeleteFunc(args, func(a string) bool { return a == golden.ReproducibleFlag })
	}
	args = append(args, "--digest-file="+digestFile)

	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := b.command(ctx, home, args, c.Env)
	tail := &tailBuffer{max: outputTailSize}
	var out io.Writer = tail
	if b.logDir != "" {
		f, err := os.Create(filepath.Join(b.logDir, fmt.Sprintf("%s.%s.log", c.Name, b.mode)))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		out = io.MultiWriter(tail, f)
	}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	runErr := cmd.Run()
	res := &Build{Duration: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("case %s (%s): kiln did not finish within %s", c.Name, b.mode, buildTimeout)
	case errors.As(runErr, &exit):
		replace := b.harness.Placeholders(c)
		replace[workspace] = "<context>"
		msg := KilnMessage(tail.String(), replace)
		res.Outcome = golden.Outcome{Result: corpus.OutcomeFailed, ExitCode: exit.ExitCode(), Class: ClassifyKiln(msg), Message: msg}
		return res, nil
	case runErr != nil:
		return nil, fmt.Errorf("case %s (%s): starting kiln: %w", c.Name, b.mode, runErr)
	}
	digest, err := os.ReadFile(digestFile)
	if err != nil {
		return nil, fmt.Errorf("case %s (%s): kiln succeeded but wrote no digest file: %w", c.Name, b.mode, err)
	}
	ref := b.harness.Registry.Host + "/cases/" + c.Name + "@" + strings.TrimSpace(string(digest))
	if res.Image, err = inspect.Remote(ref, true, inspect.Options{}); err != nil {
		return nil, fmt.Errorf("case %s (%s): %w", c.Name, b.mode, err)
	}
	res.Outcome = golden.Outcome{Result: corpus.OutcomeBuilt}
	return res, nil
}

// command runs the executor as root or as the user, with a private HOME and
// runtime dir per build so concurrent daemons never share state.
func (b *builder) command(ctx context.Context, home string, args []string, caseEnv map[string]string) *exec.Cmd {
	if b.mode == Embedded {
		return b.containerCommand(ctx, home, args, caseEnv)
	}
	cmd := exec.CommandContext(ctx, b.executor, args...)
	user := "root"
	if b.user != nil {
		cmd = b.user.Command(ctx, b.executor, args...)
		user = b.user.Name
	}
	cmd.Dir = home
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"USER=" + user,
		"TMPDIR=" + home,
		"XDG_RUNTIME_DIR=" + home,
	}
	for k, v := range caseEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return cmd
}

// containerCommand runs the executor in kiln's image as a plain Kaniko pod
// runs: root, no security options. Contexts and HOME keep their paths, so
// the arguments are the other modes'.
func (b *builder) containerCommand(ctx context.Context, home string, args []string, caseEnv map[string]string) *exec.Cmd {
	run := []string{"run", "--rm", "--network", "host",
		"-v", b.executor + ":/kaniko/executor:ro",
		"-v", b.scratch + ":" + b.scratch + ":ro",
		"-v", home + ":" + home,
		"-w", home,
	}
	for k, v := range caseEnv {
		run = append(run, "-e", k+"="+v)
	}
	run = append(append(run, b.image), args...)
	cmd := exec.CommandContext(ctx, "docker", run...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// handOver gives the user what a CI checkout gives the job's user: every
// context entry the corpus left to root becomes the user's. Owners the case
// sets on purpose are kept.
func handOver(workspace string, u testenv.User) error {
	return filepath.WalkDir(workspace, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || st.Uid != 0 || st.Gid != 0 {
			return nil
		}
		if err := os.Lchown(path, u.UID, u.GID); err != nil {
			return err
		}
		// chown clears setuid/setgid; a checkout owned by the job's user keeps them.
		if info.Mode().IsRegular() && info.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			return os.Chmod(path, info.Mode())
		}
		return nil
	})
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if extra := t.buf.Len() - t.max; extra > 0 {
		t.buf.Next(extra)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return t.buf.String() }
