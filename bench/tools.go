package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kilnbuild/kiln/conformance/kaniko"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// Build is one build of a scenario by one tool.
type Build struct {
	Scenario *Scenario
	Registry string
	// ContextDir is a fresh copy of the context, readable by every tool.
	ContextDir string
	// Dest is the tool's own repository, so inferred cache repos
	// (<dest repo>/cache) never mix tools.
	Dest string
	// CacheRepo is used by the WarmRepo kind.
	CacheRepo string
	// CacheDir persists between runs of one tool for the WarmDir kind.
	CacheDir string
	// ExtraArgs are added to kiln's and Kaniko's arguments (profiling).
	ExtraArgs []string
	Log       io.Writer
	// untimed is work the run left for after its measurement (a fresh
	// root's removal: a pod's files go with the container, after the job).
	untimed []func()
}

// Tool runs builds. Start returns the function the bench calls inside the
// run's cgroups; every process it starts is measured.
type Tool struct {
	Name, Label string
	// Unsupported says why a scenario cannot be run ("" when it can).
	Unsupported func(*Scenario) string
	Start       func(ctx context.Context, b *Build) func() error
	// ExtraCPU counts work the tool does outside the run's cgroups.
	ExtraCPU cpuCounter
	// MemKnown is false when memory cannot be attributed to one run.
	MemKnown bool
	// After runs unmeasured after each build (docker: drop images so the
	// next cold run pulls again).
	After func(b *Build, cold bool)
	// PrepareCacheDir makes a persistent cache dir usable by the tool.
	PrepareCacheDir func(dir string) error
}

// kanikoStyleArgs are the executor arguments kiln and Kaniko both take;
// contextDir is the context as the executor sees it.
func kanikoStyleArgs(b *Build, contextDir, cacheDir string) []string {
	args := []string{
		"--dockerfile=" + filepath.Join(contextDir, "Dockerfile"),
		"--context=dir://" + contextDir,
		"--destination=" + b.Dest,
		"--insecure-registry=" + b.Registry,
		"--build-arg=REGISTRY=" + b.Registry,
	}
	switch b.Scenario.Kind {
	case WarmRepo:
		args = append(args, "--cache=true", "--cache-repo="+b.CacheRepo)
	case WarmDir:
		args = append(args, "--cache=true", "--cache-dir="+cacheDir)
	}
	return append(args, b.ExtraArgs...)
}

func runCommand(cmd *exec.Cmd, log io.Writer) error {
	var tail tailBuffer
	cmd.Stdout = io.MultiWriter(log, &tail)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, tail.last())
	}
	return nil
}

// tailBuffer keeps the end of a command's output for error messages.
type tailBuffer struct{ data []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.data = append(t.data, p...)
	if len(t.data) > 4096 {
		t.data = t.data[len(t.data)-2048:]
	}
	return len(p), nil
}

// last is the last non-empty output line.
func (t *tailBuffer) last() string {
	lines := strings.Split(strings.TrimSpace(string(t.data)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func supportsAll(*Scenario) string { return "" }

// kilnRoot runs kiln as root: a private rootful buildkitd.
func kilnRoot(executor, home, tmp string) *Tool {
	return &Tool{
		Name: "kiln-root", Label: "kiln (root)", Unsupported: supportsAll, MemKnown: true,
		Start: func(ctx context.Context, b *Build) func() error {
			return func() error {
				cmd := exec.CommandContext(ctx, executor, kanikoStyleArgs(b, b.ContextDir, b.CacheDir)...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + tmp}
				return runCommand(cmd, b.Log)
			}
		},
		// A rootful runc puts each RUN container in cgroup /buildkit/<id>,
		// outside the run's cgroup; its parent keeps their CPU time.
		ExtraCPU:        cgroupCPU("buildkit"),
		After:           func(*Build, bool) {},
		PrepareCacheDir: func(string) error { return nil },
	}
}

// kilnRootless runs kiln as an unprivileged user: rootlesskit + buildkitd.
func kilnRootless(executor string, user testenv.User, tmp string) *Tool {
	return &Tool{
		Name: "kiln-rootless", Label: "kiln (rootless)", Unsupported: supportsAll, MemKnown: true,
		Start: func(ctx context.Context, b *Build) func() error {
			return func() error {
				cmd := user.Command(ctx, executor, kanikoStyleArgs(b, b.ContextDir, b.CacheDir)...)
				// Without a runtime dir, as in a pod, kiln's state goes to
				// TMPDIR.
				cmd.Env = append(slices.DeleteFunc(cmd.Env, func(e string) bool {
					return strings.HasPrefix(e, "XDG_RUNTIME_DIR=")
				}), "TMPDIR="+tmp)
				return runCommand(cmd, b.Log)
			}
		},
		After: func(*Build, bool) {},
		PrepareCacheDir: func(dir string) error {
			return os.Chown(dir, user.UID, user.GID)
		},
	}
}

// kanikoTool runs Kaniko v1.23.2 in the conformance runner's private mount
// and PID namespace, chrooted into a fresh root like its official image.
func kanikoTool(executor, scratch string) *Tool {
	return chrootTool("kaniko", "Kaniko "+kaniko.Version, executor, scratch, nil, supportsAll)
}

// kilnEmbeddedTool runs kiln the way Kaniko runs, in the same fresh root
// (Kaniko's model: root, RUN in the root filesystem), its engine embedded.
func kilnEmbeddedTool(executor, scratch string) *Tool {
	return chrootTool("kiln-embedded", "kiln (embedded)", executor, scratch,
		[]string{"KILN_BUILDKIT_MODE=embedded"},
		func(s *Scenario) string {
			if s.Kind == WarmDir {
				return "the fresh root keeps no --cache-dir between runs"
			}
			return ""
		})
}

// chrootTool runs an executor with Kaniko's arguments in a fresh root.
func chrootTool(name, label, executor, scratch string, env []string, unsupported func(*Scenario) string) *Tool {
	return &Tool{
		Name: name, Label: label, Unsupported: unsupported, MemKnown: true,
		Start: func(ctx context.Context, b *Build) func() error {
			// Kaniko's executor only reads --cache-dir (its warmer fills
			// it), so a fresh /cache in the root loses nothing.
			run := kaniko.Run{
				Executor:   executor,
				Context:    b.ContextDir,
				Args:       kanikoStyleArgs(b, kaniko.Workspace, "/cache"),
				Env:        env,
				ScratchDir: scratch,
				Log:        b.Log,
				KeepRoot:   true,
			}
			// The root is laid out before the run is measured, as a node
			// holds the image's files before the pod starts; the
			// other tools run their binaries in place too.
			prepared, prepareErr := run.Prepare()
			return func() error {
				if prepareErr != nil {
					return prepareErr
				}
				res, err := prepared.Execute(ctx)
				if res != nil && res.RemoveRoot != nil {
					b.untimed = append(b.untimed, res.RemoveRoot)
				}
				if err != nil {
					return err
				}
				if res.ExitCode != 0 {
					var t tailBuffer
					t.Write([]byte(res.OutputTail))
					return fmt.Errorf("%s exited %d: %s", name, res.ExitCode, t.last())
				}
				return nil
			}
		},
		After:           func(*Build, bool) {},
		PrepareCacheDir: func(string) error { return nil },
	}
}

// dockerTool runs `docker build` with the engine's default builder, then
// `docker push`, like a DinD CI job.
func dockerTool(builder string) *Tool {
	return &Tool{
		Name: "docker", Label: "docker build (" + builder + ")",
		Unsupported: func(s *Scenario) string {
			if s.Kind == WarmRepo {
				return "the classic builder cannot export a registry cache"
			}
			return ""
		},
		Start: func(ctx context.Context, b *Build) func() error {
			return func() error {
				args := []string{"build", "--tag", b.Dest, "--build-arg", "REGISTRY=" + b.Registry,
					"--file", filepath.Join(b.ContextDir, "Dockerfile")}
				if b.Scenario.Kind == Cold {
					args = append(args, "--no-cache", "--pull")
				}
				if err := runCommand(exec.CommandContext(ctx, "docker", append(args, b.ContextDir)...), b.Log); err != nil {
					return err
				}
				return runCommand(exec.CommandContext(ctx, "docker", "push", b.Dest), b.Log)
			}
		},
		// The work happens in the shared daemons and in containers the
		// daemon places in cgroup /docker/<id>.
		ExtraCPU: sumCPU(processCPU("dockerd", "containerd", "containerd-shim", "fuse-overlayfs"), cgroupCPU("docker")),
		After: func(b *Build, cold bool) {
			if cold {
				removeDockerImages(b)
			}
		},
		PrepareCacheDir: func(string) error { return nil },
	}
}

// removeDockerImages drops the built image and the bases it pulled.
func removeDockerImages(b *Build) {
	refs := []string{b.Dest}
	for _, base := range b.Scenario.Bases {
		refs = append(refs, b.Registry+"/"+base)
	}
	_ = exec.Command("docker", append([]string{"rmi", "--force"}, refs...)...).Run()
}

// dockerBuilder names the builder `docker build` uses here, or an error when
// no engine answers.
func dockerBuilder() (string, error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return "", errors.New("no docker CLI")
	}
	out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").Output()
	if err != nil {
		return "", fmt.Errorf("no Docker engine answers: %v", err)
	}
	engine := strings.TrimSpace(string(out))
	if os.Getenv("DOCKER_BUILDKIT") == "1" || exec.Command("docker", "buildx", "version").Run() == nil {
		return "BuildKit, engine " + engine, nil
	}
	return "classic builder, engine " + engine, nil
}

func sumCPU(counters ...cpuCounter) cpuCounter {
	return func() (total time.Duration, err error) {
		for _, c := range counters {
			d, cerr := c()
			total += d
			err = errors.Join(err, cerr)
		}
		return total, err
	}
}
