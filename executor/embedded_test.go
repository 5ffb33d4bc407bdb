package executor

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/kilnbuild/kiln/executor/embedded"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/internal/testenv"
	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
)

// embeddedTestRoot is a directory standing in for the container's root
// filesystem (RUN chroots into it): a file of the container's own, and
// /etc/hosts and /proc as the mounts a runtime adds, which mountinfo lists.
func embeddedTestRoot(t *testing.T) (root, mountinfo string) {
	t.Helper()
	root = t.TempDir()
	for name, content := range map[string]string{
		"own.txt":   "the container's own file\n",
		"own/sub/x": "a directory of the container's own\n",
		"bin/own":   "beside the image's /bin/sh\n",
		"etc/hosts": "10.9.8.7 from-the-runtime\n",
		"proc/mark": "a mount of the container\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/busybox/sh", filepath.Join(root, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1700000000, 0)
	for _, p := range []string{"bin", "etc", "own/sub", "own"} {
		if err := os.Chtimes(filepath.Join(root, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	var mi strings.Builder
	for i, point := range []string{"/", "/proc", "/etc/hosts"} {
		fmt.Fprintf(&mi, "%d 1 0:%d / %s rw - test test rw\n", 20+i, 30+i, point)
	}
	mountinfo = filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(mountinfo, []byte(mi.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, mountinfo
}

// snapshotTree lists a tree as path → type and content, for comparing a
// root before and after builds.
func snapshotTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %o %d %s", fi.Mode().Perm(), fi.ModTime().UnixNano(), b)
		case fi.IsDir() && rel != ".":
			out[rel] = fmt.Sprintf("dir %o %d", fi.Mode().Perm(), fi.ModTime().UnixNano())
		case fi.IsDir():
			out[rel] = "root"
		default:
			out[rel] = fmt.Sprintf("%s %d", fi.Mode(), fi.ModTime().UnixNano())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func startEmbeddedWithBusybox(t *testing.T) (root, base string, d engine.Daemon) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the embedded engine test chroots RUN into a test root: run go test as root")
	}
	reg := testenv.StartRegistry(t)
	base = testenv.PushBase(t, reg, "library/busybox:latest", testenv.BusyboxImage(t))
	root, mountinfo := embeddedTestRoot(t)
	cfg := engine.Config{
		Embedded:           true,
		StateParent:        t.TempDir(),
		KanikoDir:          "/kaniko",
		HostRoot:           root,
		Mountinfo:          mountinfo,
		RegistryConfigTOML: fmt.Sprintf("[registry.%q]\n  http = true\n", reg.Host),
	}
	d, _ = startTestDaemon(t, cfg)
	return root, base, d
}

// TestEmbeddedEngineRunsInTheRoot: RUN runs in the root filesystem it was
// given (seeing the container's mounts, not its own files), its results and
// COPY land in the image, and the root holds what it held before once the
// engine has stopped.
func TestEmbeddedEngineRunsInTheRoot(t *testing.T) {
	root, base, d := startEmbeddedWithBusybox(t)
	before := snapshotTree(t, root)
	c, err := d.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := writeContext(t, map[string]string{
		"a.txt": "from the context\n",
		"Dockerfile": "FROM " + base + "\n" +
			"RUN echo built > /built.txt && (test -e /own.txt && echo yes || echo no) > /own-visible && cat /etc/hosts > /hosts-seen && (test -e /proc/mark && echo yes || echo no) > /proc-visible\n" +
			"COPY a.txt /a.txt\n" +
			"RUN mkdir -m 777 /out\n" +
			"USER 1234\n" +
			"RUN cat /a.txt > /out/copy-seen && id -u > /out/uid && id -g > /out/gid\n" +
			"USER root\n" +
			"RUN rm /etc/nsswitch.conf\n" +
			"RUN --mount=type=cache,target=/cache echo cached > /cache/c && echo ok > /mounted\n" +
			"RUN --mount=type=cache,target=/cache cat /cache/c > /cache-seen\n" +
			"RUN --mount=type=bind,source=a.txt,target=/bound.txt cat /bound.txt > /bind-seen\n" +
			"RUN --mount=type=tmpfs,target=/out/tmp2 touch /out/tmp2/x && ls /out/tmp2 > /tmpfs-seen\n",
	})
	var logs bytes.Buffer
	res := solveOrFail(t, c, SolveRequest{
		ContextDir:     dir,
		DockerfilePath: filepath.Join(dir, "Dockerfile"),
		HostNetwork:    true,
		OutputDir:      filepath.Join(t.TempDir(), "layout"),
		Progress:       ProgressOptions{Logger: testenv.Logger(&logs), Stdout: &logs, Stderr: &logs},
	}, &logs)
	img := layoutImage(t, res)
	files := filesIn(t, img)
	flat := flattened(t, img)
	if flat["etc/nsswitch.conf"] {
		t.Errorf("a file RUN removed from the base is still in the image")
	}
	for _, mountPath := range []string{"cache", "cache/c", "bound.txt", "out/tmp2", "out/tmp2/x"} {
		if flat[mountPath] {
			t.Errorf("RUN --mount's %s is in the image", mountPath)
		}
	}
	if !flat["out/gid"] {
		t.Errorf("the directory holding a tmpfs mount lost its files")
	}
	want := map[string]string{
		"built.txt":     "built\n",
		"own-visible":   "no\n",
		"hosts-seen":    "10.9.8.7 from-the-runtime\n",
		"proc-visible":  "yes\n",
		"a.txt":         "from the context\n",
		"out/copy-seen": "from the context\n",
		"out/uid":       "1234\n",
		"out/gid":       "1234\n", // Kaniko's: no passwd entry, gid = uid
		"cache-seen":    "cached\n",
		"bind-seen":     "from the context\n",
		"tmpfs-seen":    "x\n",
	}
	for name, content := range want {
		if files[name] != content {
			t.Errorf("%s = %q, want %q", name, files[name], content)
		}
	}
	for _, name := range []string{"own.txt", "etc/hosts", "proc/mark"} {
		if _, ok := files[name]; ok {
			t.Errorf("the image holds the container's %s", name)
		}
	}
	if err := d.(*embedded.Daemon).RestoreRoot(); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, root, before)
}

func assertSameTree(t *testing.T, root string, before map[string]string) {
	t.Helper()
	after := snapshotTree(t, root)
	for p, v := range before {
		if after[p] != v {
			t.Errorf("root %s: %q after the build, %q before", p, after[p], v)
		}
	}
	for p, v := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("root %s: left by the build (%s)", p, v)
		}
	}
}

// TestEmbeddedEngineRunExitCode: a failing RUN fails the solve with its
// exit code, and the root is restored all the same.
func TestEmbeddedEngineRunExitCode(t *testing.T) {
	root, base, d := startEmbeddedWithBusybox(t)
	before := snapshotTree(t, root)
	c, err := d.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN touch /half && exit 7\n"})
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err = Solve(ctx, c, SolveRequest{
		ContextDir:     dir,
		DockerfilePath: filepath.Join(dir, "Dockerfile"),
		HostNetwork:    true,
		OutputDir:      filepath.Join(t.TempDir(), "layout"),
		Progress:       ProgressOptions{Logger: testenv.Logger(&logs), Stdout: &logs, Stderr: &logs},
	})
	var exitErr *gatewaypb.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode != 7 {
		t.Fatalf("Solve error = %v, want exit code 7\n%s", err, logs.String())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, root, before)
}

// flattened lists the paths of the image's filesystem, whiteouts applied.
func flattened(t *testing.T, img v1.Image) map[string]bool {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")] = true
	}
}
