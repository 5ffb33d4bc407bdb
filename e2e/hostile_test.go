package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// outsideMarker is the content of a file next to each hostile context: no
// case may bring it into an image.
const outsideMarker = "kiln-outside-the-context-5113"

// hostileCase is one malformed invocation, Dockerfile or context.
type hostileCase struct {
	name       string
	dockerfile string // the context's Dockerfile
	// context fills the context directory (next to which lies outside.txt)
	// and returns extra arguments, e.g. a tar:// --context replacing it.
	context func(t *testing.T, ctx string) []string
	args    []string // added after the usual --context, mirror and --destination
	// noDestination drops --destination (invocation cases that test it).
	noDestination bool
	env           []string
	// builds: Kaniko builds it too; it must build, and nothing from outside
	// the context may be in the image. Otherwise it must fail with want.
	builds bool
	want   []string // all in the last stderr line
}

// TestHostileInput: malformed invocations, Dockerfiles and contexts get a
// one-line error naming the flag or file and the fix, with Kaniko's exit
// code 1, within the build timeout (no hang), without a Go trace, and push
// nothing; the hostile inputs Kaniko builds build, and nothing from outside
// the context reaches the image. Root mode: what is checked here is the
// input, not the daemon.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	reg := mirrorRegistry(t)
	m := mode{name: "root"}
	cases := hostileCases()
	if len(cases) < 40 {
		t.Fatalf("%d hostile cases, the suite promises at least 40", len(cases))
	}
	// A few at a time: each build starts its own daemon.
	slots := make(chan struct{}, 3)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			slots <- struct{}{}
			defer func() { <-slots }()
			parent := testenv.ReadableTempDir(t)
			ctx := filepath.Join(parent, "ctx")
			if err := os.Mkdir(ctx, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(parent, "outside.txt"), []byte(outsideMarker), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(c.dockerfile), 0o644); err != nil {
				t.Fatal(err)
			}
			repo := "e2e/hostile/" + c.name
			dest := reg.Ref(repo + ":v1")
			args := mirrorArgs(ctx, reg, dest)
			if c.noDestination {
				args = args[:len(args)-2]
			}
			if c.context != nil {
				args = append(args, c.context(t, ctx)...)
			}
			args = append(args, c.args...)
			r := m.run(t, m.stateDir(t), args, c.env...)
			if c.builds {
				r.mustSucceed(t)
				img, _ := pulledImage(t, reg, dest)
				for path, f := range imageFiles(t, img, "") {
					if strings.Contains(f.content, outsideMarker) {
						t.Errorf("/%s in the image holds the file from outside the context", path)
					}
				}
				return
			}
			for _, want := range c.want {
				r.assertOneLineFailure(t, want)
			}
			for _, internal := range []string{"cache key", "checksum of ref", "rpc error", "llb"} {
				if strings.Contains(r.lastLine(), internal) {
					t.Errorf("the error shows BuildKit's internals (%q): %s", internal, r.lastLine())
				}
			}
			assertNothingPushed(t, reg, repo)
		})
	}
}

const busyboxRun = "FROM busybox\nRUN true\n"

func hostileCases() []hostileCase {
	withContextFile := func(name string) func(t *testing.T, ctx string) []string {
		return func(t *testing.T, ctx string) []string { return []string{"--context", filepath.Join(ctx, name)} }
	}
	return []hostileCase{
		// Invocations.
		{name: "unknown-flag", dockerfile: busyboxRun, args: []string{"--contxt=."}, want: []string{"unknown flag: --contxt", "executor --help"}},
		{name: "renamed-flag", dockerfile: busyboxRun, args: []string{"--insecure-skip-tls-verify"}, want: []string{"--insecure-skip-tls-verify", "--skip-tls-verify"}},
		{name: "unknown-shorthand", dockerfile: busyboxRun, args: []string{"-Z"}, want: []string{"unknown shorthand flag: 'Z'", "the short flags are"}},
		{name: "control-character-shorthand", dockerfile: busyboxRun, args: []string{"-\n\x1b[31m"}, want: []string{`unknown shorthand flag: '\n' in -\n\x1b[31m`}},
		{name: "verbosity", dockerfile: busyboxRun, args: []string{"--verbosity=loud"}, want: []string{`--verbosity="loud" is not a log level; use trace`}},
		{name: "log-format", dockerfile: busyboxRun, args: []string{"--log-format=xml"}, want: []string{`--log-format="xml" is not a log format`}},
		{name: "platform", dockerfile: busyboxRun, args: []string{"--custom-platform=linux/amd64/v2/extra"}, want: []string{"--custom-platform", "use os/arch[/variant]"}},
		{name: "snapshot-mode", dockerfile: busyboxRun, args: []string{"--snapshot-mode=fast"}, want: []string{"fast is not a valid snapshot mode; use --snapshot-mode=full|redo|time"}},
		{name: "label-without-value", dockerfile: busyboxRun, args: []string{"--label=novalue"}, want: []string{"labels must be of the form key=value", "--label novalue"}},
		{name: "no-destination", dockerfile: busyboxRun, noDestination: true, want: []string{"you must provide --destination, or use --no-push"}},
		{name: "cache-without-repo", dockerfile: busyboxRun, noDestination: true, args: []string{"--no-push", "--cache"}, want: []string{"specify cache repo with --cache-repo"}},
		{name: "client-cert-one-file", dockerfile: busyboxRun, args: []string{"--registry-client-cert=host=only-a-cert"}, want: []string{"--registry-client-cert host=only-a-cert: expected format host=/path/to/cert,/path/to/key"}},
		{name: "boolean-as-separate-word", dockerfile: busyboxRun, args: []string{"--cache", "false"}, want: []string{`unexpected argument "false"`, "--flag=false"}},
		{name: "compression-level-not-a-number", dockerfile: busyboxRun, args: []string{"--compression-level=max"}, want: []string{`invalid argument "max" for "--compression-level" flag: must be a whole number`}},
		{name: "cache-ttl-without-unit", dockerfile: busyboxRun, args: []string{"--cache-ttl=14"}, want: []string{`"--cache-ttl"`, "must be a duration with a unit"}},
		{name: "compression-unknown", dockerfile: busyboxRun, args: []string{"--compression=lz4"}, want: []string{`invalid argument "lz4" for "--compression" flag: must be either "gzip" or "zstd"`}},
		{name: "destination-upper-case", dockerfile: busyboxRun, args: []string{"--destination=Registry.Example/Team/App:1"}, want: []string{`--destination "Registry.Example/Team/App:1"`, "give one image reference"}},
		{name: "destination-empty-tag", dockerfile: busyboxRun, args: []string{"--destination=registry.example/app:"}, want: []string{`--destination "registry.example/app:"`}},
		{name: "name-file-without-destination", dockerfile: busyboxRun, noDestination: true, args: []string{"--no-push", "--image-name-with-digest-file=name.txt"}, want: []string{"you must provide --destination if setting ImageNameDigestFile"}},
		{name: "source-date-epoch-not-a-number", dockerfile: busyboxRun, args: []string{"--reproducible"}, env: []string{"SOURCE_DATE_EPOCH=yesterday"}, want: []string{`SOURCE_DATE_EPOCH="yesterday" is not a Unix time`}},
		{name: "build-arg-of-100kb", dockerfile: "FROM busybox\nARG BIG\nRUN test ${#BIG} -eq 102400\n", args: []string{"--build-arg=BIG=" + strings.Repeat("b", 100<<10)}, builds: true},

		// Files the invocation names.
		{name: "dockerfile-missing", dockerfile: busyboxRun, args: []string{"--dockerfile=Missing.Dockerfile"}, want: []string{"--dockerfile Missing.Dockerfile: not found in the working directory or in the context"}},
		{name: "dockerfile-is-a-directory", dockerfile: busyboxRun, context: func(t *testing.T, ctx string) []string {
			mkdirAll(t, filepath.Join(ctx, "build"))
			return []string{"--dockerfile=" + filepath.Join(ctx, "build")}
		}, want: []string{"is a directory; name the file itself"}},
		{name: "context-missing", dockerfile: busyboxRun, context: withContextFile("nope"), want: []string{"--context", "does not exist"}},
		{name: "context-is-a-file", dockerfile: busyboxRun, context: withContextFile("Dockerfile"), want: []string{"--context", "not a directory"}},
		{name: "context-unknown-scheme", dockerfile: busyboxRun, args: []string{"--context=ftp://example.com/ctx.tgz"}, want: []string{"unknown build context prefix"}},
		{name: "tar-context-missing", dockerfile: busyboxRun, context: func(t *testing.T, ctx string) []string {
			return []string{"--context=tar://" + filepath.Join(ctx, "nope.tar.gz")}
		}, want: []string{"opening the tarball", "nope.tar.gz", "pass the path of a gzip tar file"}},

		// Dockerfiles.
		{name: "dockerfile-empty", dockerfile: "", want: []string{"Dockerfile"}},
		{name: "dockerfile-only-comments", dockerfile: "# nothing\n# here\n", want: []string{"Dockerfile"}},
		{name: "dockerfile-nul-bytes", dockerfile: "FROM busybox\nRUN true\nCOPY \x00 /\n", want: []string{"Dockerfile: line 3: COPY contains a NUL byte: remove it"}},
		{name: "dockerfile-invalid-utf8-instruction", dockerfile: "\xff\xfeFROM busybox\nRUN true\n", want: []string{`Dockerfile: line 1: \xff\xfeFROM has bytes that are not UTF-8`}},
		{name: "dockerfile-invalid-utf8-in-run", dockerfile: "FROM busybox\nRUN echo '\xff\xfe' > /bytes\n", want: []string{"Dockerfile: line 2: RUN has bytes that are not UTF-8", "save the file as UTF-8"}},
		{name: "dockerfile-line-of-1mb", dockerfile: "FROM busybox\nRUN true " + strings.Repeat("x", 1<<20) + "\n", want: []string{"Dockerfile: line 2 is longer than the 65535 bytes", "split it with"}},
		{name: "dockerfile-10k-continuations", dockerfile: "FROM busybox\nRUN true" + strings.Repeat(" \\\n  && true", 10000) + "\n", builds: true},
		{name: "dockerfile-unterminated-heredoc", dockerfile: "FROM busybox\nRUN <<EOF\necho never ends\n", want: []string{"Dockerfile"}},
		{name: "dockerfile-unterminated-variable", dockerfile: "FROM busybox\nENV A=${B\nRUN true\n", want: []string{`ENV A=${B: "${B" is not a valid variable expansion`}},
		{name: "dockerfile-from-empty", dockerfile: "ARG BASE\nFROM $BASE\nRUN true\n", want: []string{"expands to an empty image name", "--build-arg"}},
		{name: "dockerfile-bad-stage-name", dockerfile: "FROM busybox AS 1st!\nRUN true\n", want: []string{"Dockerfile", "1st!"}},
		{name: "dockerfile-stage-is-its-own-base", dockerfile: "FROM busybox\nFROM loop AS loop\nRUN true\n", want: []string{"loop"}},
		{name: "dockerfile-copy-from-future-stage", dockerfile: "FROM busybox\nCOPY --from=1 /etc/passwd /p\nFROM busybox\n", want: []string{"--from=1"}},

		// Sources outside the context.
		{name: "copy-dot-dot", dockerfile: "FROM busybox\nCOPY ../outside.txt /stolen\n", want: []string{"../outside.txt", "not found in the build context"}},
		{name: "copy-absolute-host-path", dockerfile: "FROM busybox\nCOPY /etc/passwd /stolen\n", want: []string{"/etc/passwd", "not found in the build context"}},
		// A symlink source is copied as the link, as Kaniko copies it: what
		// it points to, in or out of the context, is never read.
		{name: "copy-symlink-to-outside", dockerfile: "FROM busybox\nCOPY link /stolen\nRUN test -L /stolen\n", context: func(t *testing.T, ctx string) []string {
			symlink(t, filepath.Join(filepath.Dir(ctx), "outside.txt"), filepath.Join(ctx, "link"))
			return nil
		}, builds: true},
		{name: "copy-through-dir-symlink-to-outside", dockerfile: "FROM busybox\nCOPY up/outside.txt /stolen\n", context: func(t *testing.T, ctx string) []string {
			symlink(t, "..", filepath.Join(ctx, "up"))
			return nil
		}, want: []string{"up/outside.txt", "not found in the build context"}},
		{name: "copy-symlink-loop", dockerfile: "FROM busybox\nCOPY a /a\nRUN test -L /a\n", context: func(t *testing.T, ctx string) []string {
			symlink(t, "b", filepath.Join(ctx, "a"))
			symlink(t, "a", filepath.Join(ctx, "b"))
			return nil
		}, builds: true},
		{name: "copy-through-symlink-loop", dockerfile: "FROM busybox\nCOPY a/x /x\n", context: func(t *testing.T, ctx string) []string {
			symlink(t, "b", filepath.Join(ctx, "a"))
			symlink(t, "a", filepath.Join(ctx, "b"))
			return nil
		}, want: []string{"COPY a/x /x: a source in the build context", "is a symlink loop"}},
		{name: "copy-context-with-links-out-and-loops", dockerfile: "FROM busybox\nCOPY . /ctx/\nRUN test -L /ctx/abs && test -L /ctx/a\n", context: func(t *testing.T, ctx string) []string {
			symlink(t, filepath.Join(filepath.Dir(ctx), "outside.txt"), filepath.Join(ctx, "abs"))
			symlink(t, "../outside.txt", filepath.Join(ctx, "rel"))
			symlink(t, "b", filepath.Join(ctx, "a"))
			symlink(t, "a", filepath.Join(ctx, "b"))
			symlink(t, ".", filepath.Join(ctx, "self"))
			return nil
		}, builds: true},
		{name: "context-300-levels-deep", dockerfile: "FROM busybox\nCOPY . /ctx/\n", context: func(t *testing.T, ctx string) []string {
			deep := filepath.Join(ctx, strings.Repeat("d/", 300))
			mkdirAll(t, deep)
			writeFile(t, filepath.Join(deep, "leaf"), "leaf")
			return nil
		}, builds: true},
		{name: "context-fifo-and-odd-names", dockerfile: "FROM busybox\nCOPY . /ctx/\nRUN test -p /ctx/pipe\n", context: func(t *testing.T, ctx string) []string {
			if err := syscall.Mkfifo(filepath.Join(ctx, "pipe"), 0o644); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(ctx, "new\nline"), "x")
			writeFile(t, filepath.Join(ctx, " -rf"), "x")
			writeFile(t, filepath.Join(ctx, "ignored-\xff"), "x")
			writeFile(t, filepath.Join(ctx, ".dockerignore"), "ignored-*\n")
			return nil
		}, builds: true},
		{name: "context-name-not-utf8", dockerfile: "FROM busybox\nCOPY . /ctx/\n", context: func(t *testing.T, ctx string) []string {
			writeFile(t, filepath.Join(ctx, "bad-\xff-name"), "x")
			return nil
		}, want: []string{`bad-\xff-name in the build context has a name that is not valid UTF-8`, "rename it or exclude it in .dockerignore"}},
		{name: "context-5000-files", dockerfile: "FROM busybox\nCOPY . /ctx/\nRUN test $(ls /ctx/many | wc -l) -eq 5000\n", context: func(t *testing.T, ctx string) []string {
			mkdirAll(t, filepath.Join(ctx, "many"))
			for i := range 5000 {
				writeFile(t, filepath.Join(ctx, "many", fmt.Sprint(i)), "")
			}
			return nil
		}, builds: true},

		// tar:// contexts.
		{name: "tar-dot-dot-entry", dockerfile: busyboxRun, context: tarContext(hostileEntry{name: "Dockerfile", body: busyboxRun}, hostileEntry{name: "a/../../escaped", body: "x"}),
			want: []string{`tar entry "a/../../escaped" climbs out with ".."`}},
		{name: "tar-absolute-entry", dockerfile: busyboxRun, context: tarContext(hostileEntry{name: "/tmp/kiln-escaped", body: "x"}),
			want: []string{`tar entry "/tmp/kiln-escaped" is an absolute path`}},
		{name: "tar-write-through-symlink", dockerfile: busyboxRun, context: tarContext(hostileEntry{name: "out", link: "/tmp", typ: tar.TypeSymlink}, hostileEntry{name: "out/kiln-escaped", body: "x"}),
			want: []string{`tar entry "out/kiln-escaped" reaches through a symlink that leads outside the context`}},
		{name: "tar-hard-link-out", dockerfile: busyboxRun, context: tarContext(hostileEntry{name: "h", link: "../outside.txt", typ: tar.TypeLink}),
			want: []string{`tar entry "h" is a hard link to "../outside.txt" outside the context`}},
		{name: "tar-symlink-loop", dockerfile: busyboxRun, context: tarContext(hostileEntry{name: "a", link: "b", typ: tar.TypeSymlink}, hostileEntry{name: "b", link: "a", typ: tar.TypeSymlink}, hostileEntry{name: "a/x", body: "x"}),
			want: []string{`tar entry "a/x"`}},
		{name: "tar-bomb-declared-petabyte", dockerfile: busyboxRun, context: tarContext(hostileEntry{name: "Dockerfile", body: busyboxRun}, hostileEntry{name: "bomb.bin", size: 1 << 50}),
			want: []string{`tar entry "bomb.bin" declares 1125899906842624 bytes, more than the`, "use a smaller context"}},
		{name: "tar-path-beyond-path-max", dockerfile: busyboxRun, context: tarContext(hostileEntry{name: strings.Repeat("deep/", 900) + "f", body: "x"}),
			want: []string{"bytes long: unpacked, its path would exceed the 4096 bytes a path may have"}},
		{name: "tar-truncated", dockerfile: busyboxRun, context: tarContext(hostileEntry{name: "Dockerfile", body: busyboxRun}, hostileEntry{name: "half.bin", size: 1 << 20, body: "only this"}),
			want: []string{`the archive ends inside tar entry "half.bin": it is truncated or corrupt`}},
		{name: "tar-20000-entries", dockerfile: busyboxRun, context: func(t *testing.T, ctx string) []string {
			entries := []hostileEntry{{name: "Dockerfile", body: "FROM busybox\nCOPY many /many\nRUN test $(ls /many | wc -l) -eq 20000\n"}}
			for i := range 20000 {
				entries = append(entries, hostileEntry{name: fmt.Sprintf("many/%d", i)})
			}
			return tarContext(entries...)(t, ctx)
		}, builds: true},
		{name: "tar-not-an-archive", dockerfile: busyboxRun, context: func(t *testing.T, ctx string) []string {
			writeFile(t, filepath.Join(ctx, "ctx.tar.gz"), "<html>404 not found</html>")
			return []string{"--context=tar://" + filepath.Join(ctx, "ctx.tar.gz")}
		}, want: []string{"unpacking: the data is not a tar archive or a gzip of one", "pass a gzip tar file"}},
		{name: "tar-empty-file", dockerfile: busyboxRun, context: func(t *testing.T, ctx string) []string {
			writeFile(t, filepath.Join(ctx, "ctx.tar.gz"), "")
			return []string{"--context=tar://" + filepath.Join(ctx, "ctx.tar.gz")}
		}, want: []string{"the archive is empty; pass a gzip tar file"}},
		{name: "tar-corrupt-gzip", dockerfile: busyboxRun, context: func(t *testing.T, ctx string) []string {
			writeFile(t, filepath.Join(ctx, "ctx.tar.gz"), "\x1f\x8b\x08\x00garbage-after-the-magic")
			return []string{"--context=tar://" + filepath.Join(ctx, "ctx.tar.gz")}
		}, want: []string{"pass a gzip tar file"}},
	}
}

// hostileEntry is one tar member; size, when set, is declared instead of
// body's length (the data stays body: a bomb's or a truncated archive's).
type hostileEntry struct {
	name, body, link string
	typ              byte
	size             int64
}

// tarContext writes entries as ctx.tar.gz in the context directory and
// returns the tar:// --context naming it.
func tarContext(entries ...hostileEntry) func(t *testing.T, ctx string) []string {
	return func(t *testing.T, ctx string) []string {
		t.Helper()
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for _, e := range entries {
			hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, ModTime: time.Unix(1700000000, 0), Size: int64(len(e.body))}
			if hdr.Typeflag == 0 {
				hdr.Typeflag = tar.TypeReg
			}
			if hdr.Typeflag != tar.TypeReg {
				hdr.Size = 0
			}
			if e.size > 0 {
				hdr.Size = e.size
			}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
			if e.size > 0 {
				break // the rest is missing, as in a bomb or a cut download
			}
		}
		tw.Flush()
		gz.Close()
		path := filepath.Join(ctx, "ctx.tar.gz")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{"--context=tar://" + path}
	}
}

func mkdirAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
