package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestBusyboxImageIsReproducible(t *testing.T) {
	first, second := BusyboxImage(t), BusyboxImage(t)
	if a, b := mustDigest(t, first), mustDigest(t, second); a != b {
		t.Fatalf("two builds differ: %s vs %s", a, b)
	}
	mt, err := first.MediaType()
	if err != nil || mt != types.DockerManifestSchema2 {
		t.Fatalf("manifest media type %q (%v), want Docker schema 2", mt, err)
	}
	cfg, err := first.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Config.Cmd, []string{"sh"}) || cfg.OS != "linux" || !cfg.Created.Equal(baseImageTime) {
		t.Fatalf("unexpected config: cmd %v os %s created %v", cfg.Config.Cmd, cfg.OS, cfg.Created)
	}
	layers, err := first.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	if len(cfg.History) != 2 || cfg.History[0].EmptyLayer || !cfg.History[1].EmptyLayer {
		t.Fatalf("history should describe one layer and the CMD: %+v", cfg.History)
	}
}

func TestBusyboxRootfsRunsInChroot(t *testing.T) {
	RequireRoot(t)
	rootfs := ExtractRootfs(t, BusyboxImage(t))
	out, err := exec.Command("chroot", rootfs, "sh", "-c", "echo hi; id -un; ls -ld /tmp").CombinedOutput()
	if err != nil {
		t.Fatalf("chroot sh: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[0] != "hi" || lines[1] != "root" || !strings.HasPrefix(lines[2], "drwxrwxrwt") {
		t.Fatalf("unexpected output:\n%s", out)
	}
	// Dockerfiles written for Docker Hub's busybox create users like this.
	script := "addgroup -g 3000 web && adduser -D -u 2000 -G web app && adduser -D other && adduser app users && " +
		"adduser -S svc && addgroup -S sys2 && " +
		"id app && id -u other && id svc && grep ^sys2: /etc/group && stat -c '%u:%g' /home/app"
	out, err = exec.Command("chroot", rootfs, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("adduser/addgroup: %v: %s", err, out)
	}
	want := "uid=2000(app) gid=3000(web) groups=3000(web),100(users)\n1001\n" +
		"uid=100(svc) gid=65534(nogroup) groups=65534(nogroup)\nsys2:x:101:\n2000:3000\n"
	if string(out) != want {
		t.Fatalf("adduser/addgroup printed:\n%s\nwant:\n%s", out, want)
	}
}

func TestBusyboxRunsInDocker(t *testing.T) {
	tag := DockerImport(t, BusyboxImage(t))
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", tag, "sh", "-c", "echo hi").CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	if strings.TrimSpace(string(out)) != "hi" {
		t.Fatalf("docker run printed %q, want hi", out)
	}
}

func TestSeedMirrorServesDockerHubNames(t *testing.T) {
	reg := StartRegistry(t, WithBasicAuth("u", "p"))
	want := mustDigest(t, SeedMirror(t, reg))
	if got := reg.Tags("library/busybox"); !reflect.DeepEqual(got, []string{"1.36", "latest"}) {
		t.Fatalf("Tags = %v", got)
	}
	for _, path := range BusyboxMirrorTags {
		if got := mustDigest(t, reg.Pull(t, path)); got != want {
			t.Fatalf("%s digest %s, want %s", path, got, want)
		}
	}
	if w := reg.Writes(); len(w) != 0 {
		t.Fatalf("seeding and pulling logged writes: %v", w)
	}
}

func TestDebianImage(t *testing.T) {
	img := DebianImage(t)
	again := DebianImage(t)
	if a, b := mustDigest(t, img), mustDigest(t, again); a != b {
		t.Fatalf("cached Debian image changed: %s vs %s", a, b)
	}
	cfg, err := img.ConfigFile()
	if err != nil || !reflect.DeepEqual(cfg.Config.Cmd, []string{"bash"}) {
		t.Fatalf("config %+v (%v)", cfg, err)
	}
	rootfs := ExtractRootfs(t, img)
	version, err := os.ReadFile(filepath.Join(rootfs, "etc/debian_version"))
	if err != nil || !strings.HasPrefix(string(version), "12.") {
		t.Fatalf("/etc/debian_version = %q (%v), want 12.x", version, err)
	}
	out, err := exec.Command("chroot", rootfs, "apt-get", "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "apt ") {
		t.Fatalf("apt-get --version in the rootfs: %v: %s", err, out)
	}
}

func TestDebianMirrorParsing(t *testing.T) {
	deb822 := "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n" +
		"Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n" +
		"Types: deb\n# comment: x\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
	if got := parseDeb822Sources(deb822, "bookworm"); got != "http://mirror.example/debian" {
		t.Fatalf("deb822: got %q", got)
	}
	oneLine := "# deb http://old.example/debian bookworm main\n" +
		"deb http://sec.example/debian-security bookworm-security main\n" +
		"deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
	if got := parseOneLineSources(oneLine, "bookworm"); got != "http://mirror.example/debian" {
		t.Fatalf("one-line: got %q", got)
	}
	if got := parseOneLineSources("deb http://x.example/debian trixie main\n", "bookworm"); got != "" {
		t.Fatalf("other suite matched: %q", got)
	}
	t.Setenv(DebianMirrorEnv, "http://override.example/debian")
	if got, err := DebianMirror(); err != nil || got != "http://override.example/debian" {
		t.Fatalf("override: %q %v", got, err)
	}
}
