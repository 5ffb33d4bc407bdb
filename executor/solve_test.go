package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kilnbuild/kiln/internal/testenv"
	"github.com/moby/buildkit/client"
	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
)

// writeContext creates a build context holding files (name → content).
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// layoutImage opens the image the solve wrote and checks index.json names it.
func layoutImage(t *testing.T, res *SolveResult) v1.Image {
	t.Helper()
	path, err := layout.FromPath(res.LayoutDir)
	if err != nil {
		t.Fatalf("reading OCI layout %s: %v", res.LayoutDir, err)
	}
	idx, err := path.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest.Manifests) != 1 || manifest.Manifests[0].Digest.String() != res.ManifestDigest {
		t.Fatalf("index.json manifests = %+v, want exactly %s", manifest.Manifests, res.ManifestDigest)
	}
	img, err := idx.Image(manifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := img.MediaType(); mt != types.DockerManifestSchema2 {
		t.Errorf("manifest media type = %s, want Docker schema 2 like Kaniko", mt)
	}
	cfgDigest, err := img.ConfigName()
	if err != nil || cfgDigest.String() != res.ConfigDigest {
		t.Errorf("config digest = %s (%v), solve reported %s", cfgDigest, err, res.ConfigDigest)
	}
	return img
}

// filesIn returns regular files (path → content) across the image's layers.
func filesIn(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(files, testenv.TarFiles(t, rc))
		rc.Close()
	}
	return files
}

// solveOrFail runs req; logs is where req's progress goes, shown on failure.
func solveOrFail(t *testing.T, c *client.Client, req SolveRequest, logs *bytes.Buffer) *SolveResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Solve(ctx, c, req)
	if err != nil {
		t.Fatalf("Solve: %v\nbuild output:\n%s", err, logs)
	}
	return res
}

func scratchCopyRequest(t *testing.T, logs io.Writer) SolveRequest {
	dir := writeContext(t, map[string]string{
		"hello.txt": "hello from the context\n",
		"Dockerfile": "FROM scratch\n" +
			"ARG GREETING\n" +
			"ENV GREETING=$GREETING\n" +
			"COPY hello.txt /hello.txt\n",
	})
	return SolveRequest{
		ContextDir:     dir,
		DockerfilePath: filepath.Join(dir, "Dockerfile"),
		BuildArgs:      map[string]string{"GREETING": "hi"},
		Labels:         map[string]string{"org.example.team": "kiln"},
		HostNetwork:    true,
		OutputDir:      filepath.Join(t.TempDir(), "layout"),
		Progress:       ProgressOptions{Logger: testenv.Logger(logs), Stdout: logs, Stderr: logs},
	}
}

// checkScratchCopyImage checks the image scratchCopyRequest builds.
func checkScratchCopyImage(t *testing.T, res *SolveResult, logs string) {
	t.Helper()
	img := layoutImage(t, res)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Config.Labels["org.example.team"]; got != "kiln" {
		t.Errorf("label org.example.team = %q, want kiln", got)
	}
	if !slices.Contains(cfg.Config.Env, "GREETING=hi") {
		t.Errorf("env %v lacks GREETING=hi from the build arg", cfg.Config.Env)
	}
	if got := filesIn(t, img)["hello.txt"]; got != "hello from the context\n" {
		t.Errorf("hello.txt in image = %q", got)
	}
	if !strings.Contains(logs, "COPY hello.txt /hello.txt") {
		t.Errorf("logs lack the COPY instruction line:\n%s", logs)
	}
}

// buildScratchCopy builds FROM scratch + COPY with a build arg and a label
// and checks the resulting OCI layout.
func buildScratchCopy(t *testing.T, c *client.Client) {
	t.Helper()
	var logs bytes.Buffer
	res := solveOrFail(t, c, scratchCopyRequest(t, &logs), &logs)
	checkScratchCopyImage(t, res, logs.String())
}

func TestSolveScratchCopyIntoOCILayout(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		_, c := startTestDaemon(t, daemonConfig(env))
		buildScratchCopy(t, c)
	})
}

func TestSolveFromRegistryBase(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		cfg, base, c := startDaemonWithBusybox(t, env)

		t.Run("run", func(t *testing.T) {
			// /data ends up owned by a subordinate ID when rootless, which
			// only the namespace's root can delete on Close.
			run := "RUN echo built-by-run > /out.txt && mkdir -p /data/sub && touch /data/sub/f && chown -R 1000:1000 /data && echo run-output-marker"
			files, out := buildDockerfile(t, c, "FROM "+base+"\n"+run+"\n")
			if files["out.txt"] != "built-by-run\n" {
				t.Errorf("out.txt = %q", files["out.txt"])
			}
			if _, ok := files["bin/busybox"]; !ok {
				t.Errorf("base layer missing: no bin/busybox among %d files", len(files))
			}
			if !strings.Contains(out, `msg="`+run+`"`) {
				t.Errorf("logs lack the RUN line:\n%s", out)
			}
			// The builder's BaseImageResolver announces base images once.
			if strings.Contains(out, "Retrieving image") {
				t.Errorf("the solve repeats the base image lines:\n%s", out)
			}
			if i, j := strings.Index(out, `msg="RUN `), strings.Index(out, "run-output-marker\n"); i < 0 || j < i {
				t.Errorf("RUN output should follow the RUN line:\n%s", out)
			}
		})

		t.Run("uncompressed layers", func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo x > /x\n"})
			var logs bytes.Buffer
			res := solveOrFail(t, c, SolveRequest{
				ContextDir: dir, DockerfilePath: filepath.Join(dir, "Dockerfile"), HostNetwork: true,
				OutputDir:          filepath.Join(t.TempDir(), "layout"),
				Progress:           ProgressOptions{Logger: testenv.Logger(&logs), Stdout: &logs, Stderr: &logs},
				UncompressedLayers: true,
			}, &logs)
			layers, err := layoutImage(t, res).Layers()
			if err != nil || len(layers) != 2 {
				t.Fatalf("%d layers, %v; want the base's and the RUN's", len(layers), err)
			}
			var got []types.MediaType
			for _, l := range layers {
				mt, _ := l.MediaType()
				got = append(got, mt)
			}
			// The base's blob is kept as the registry has it.
			if got[0] != types.DockerLayer || got[1] != types.DockerUncompressedLayer {
				t.Errorf("layer media types %v, want the base's gzip and the RUN's uncompressed", got)
			}
		})

		t.Run("close during RUN", func(t *testing.T) {
			// A second daemon, torn down mid-build, with its own state parent
			// so the leftover checks do not see the first one.
			second := cfg
			second.StateParent = filepath.Join(env.StateParent, "second")
			if err := os.Mkdir(second.StateParent, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(second.StateParent) })
			d, c := startTestDaemon(t, second)
			marker := fmt.Sprintf("kiln-close-marker-%d", time.Now().UnixNano())
			dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN sh -c 'echo started; sleep 300; echo " + marker + "'\n"})
			started := make(chan struct{})
			out := &signalOnWrite{want: "started", seen: started}
			solved := make(chan error, 1)
			go func() {
				_, err := Solve(context.Background(), c, SolveRequest{
					ContextDir:     dir,
					DockerfilePath: filepath.Join(dir, "Dockerfile"),
					HostNetwork:    true,
					OutputDir:      filepath.Join(t.TempDir(), "layout"),
					Progress:       ProgressOptions{Logger: testenv.Logger(io.Discard), Stdout: out, Stderr: io.Discard},
				})
				solved <- err
			}()
			select {
			case <-started:
			case err := <-solved:
				t.Fatalf("build ended before its RUN started: %v", err)
			case <-time.After(time.Minute):
				t.Fatal("RUN did not start within a minute")
			}
			if len(testenv.ProcessesMentioning(marker)) == 0 {
				t.Fatal("the RUN process is not visible; cannot check it is reaped")
			}
			go d.Close() // as a signal handler would
			select {
			case err := <-solved:
				if err == nil {
					t.Error("Solve succeeded although its daemon was closed")
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Solve did not return after Close")
			}
			if err := d.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if procs := testenv.ProcessesMentioning(marker); len(procs) > 0 {
				t.Errorf("RUN process outlived the daemon:\n%s", strings.Join(procs, "\n"))
			}
		})

		t.Run("exit code", func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN exit 7\n"})
			_, err := Solve(context.Background(), c, SolveRequest{
				ContextDir:     dir,
				DockerfilePath: filepath.Join(dir, "Dockerfile"),
				HostNetwork:    true,
				OutputDir:      filepath.Join(t.TempDir(), "layout"),
				Progress:       ProgressOptions{Logger: testenv.Logger(io.Discard), Stdout: io.Discard, Stderr: io.Discard},
			})
			var coded interface{ ExitCode() int }
			if !errors.As(err, &coded) || coded.ExitCode() != 7 {
				t.Fatalf("error %v: want ExitCode() == 7", err)
			}
			var typed *gatewaypb.ExitError
			if !errors.As(err, &typed) {
				t.Errorf("BuildKit's typed exit error was not decoded; the code came from parsing %q", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "error building image: ") || !strings.Contains(msg, "exit code: 7") || strings.Contains(msg, "\n") {
				t.Errorf("error message not one Kaniko-like line: %q", msg)
			}
		})
	})
}

// signalOnWrite closes seen once want has been written to it.
type signalOnWrite struct {
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func (w *signalOnWrite) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if w.seen != nil && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
		w.seen = nil
	}
	return len(p), nil
}
