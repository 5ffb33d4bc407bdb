package testenv

import (
	"archive/tar"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// baseImageTime is every base image's creation time and every entry's mtime,
// so the same inputs give the same digest.
var baseImageTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BusyboxMirrorTags are the Docker Hub-style names SeedMirror pushes, so
// `FROM busybox` and `FROM busybox:1.36` resolve through --registry-mirror.
var BusyboxMirrorTags = []string{"library/busybox:latest", "library/busybox:1.36"}

// Applets that would make the image look like it has a package manager.
var skippedApplets = map[string]bool{"busybox": true, "dpkg": true, "dpkg-deb": true, "rpm": true, "rpm2cpio": true}

// Debian's busybox-static has no adduser/addgroup applets; this script
// accepts busybox's syntax for both so Dockerfiles written for Docker Hub's
// busybox work.
//
//go:embed busybox/adduser
var adduserScript []byte

// BusyboxImage returns a busybox image made from Debian's busybox-static
// package; every call on a machine gives the same digest.
func BusyboxImage(t testing.TB) v1.Image {
	t.Helper()
	binary, err := BusyboxBinary()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	img, err := BusyboxFrom(binary)
	if err != nil {
		t.Fatalf("testenv: building busybox image: %v", err)
	}
	return img
}

// BusyboxBinary finds the static busybox installed by busybox-static.
func BusyboxBinary() (string, error) {
	out, err := exec.Command("dpkg", "-L", "busybox-static").Output()
	if err != nil {
		return "", fmt.Errorf("package busybox-static is not installed: run hack/install-deps.sh as root")
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(line, "/bin/busybox") {
			return line, nil
		}
	}
	return "", fmt.Errorf("busybox-static installs no bin/busybox: reinstall it with hack/install-deps.sh")
}

// BusyboxFrom builds the busybox image around a static busybox binary.
func BusyboxFrom(binary string) (v1.Image, error) {
	rootfs, err := BusyboxRootfs(binary)
	if err != nil {
		return nil, err
	}
	return singleLayerImage(rootfs, "busybox rootfs from Debian busybox-static", []string{"sh"})
}

// BusyboxRootfs returns a deterministic tar of the busybox root filesystem:
// sorted entries, fixed mtimes, owned by 0:0.
func BusyboxRootfs(binary string) ([]byte, error) {
	program, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	listing, err := exec.Command(binary, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", binary, err)
	}
	entries := map[string]*tarEntry{
		"bin/busybox":       {mode: 0o755, data: program},
		"etc/passwd":        {mode: 0o644, data: []byte(busyboxPasswd)},
		"etc/group":         {mode: 0o644, data: []byte(busyboxGroup)},
		"etc/shadow":        {mode: 0o640, data: []byte(busyboxShadow)},
		"etc/nsswitch.conf": {mode: 0o644, data: []byte("hosts: files dns\npasswd: files\ngroup: files\n")},
	}
	entries["bin/adduser"] = &tarEntry{mode: 0o755, data: adduserScript}
	entries["bin/addgroup"] = &tarEntry{mode: 0o777, link: "adduser"}
	for _, dir := range []string{"bin", "dev", "etc", "home", "usr", "usr/bin", "usr/sbin", "sbin", "var", "var/spool", "var/spool/mail"} {
		entries[dir+"/"] = &tarEntry{mode: 0o755, dir: true}
	}
	entries["proc/"] = &tarEntry{mode: 0o555, dir: true}
	entries["sys/"] = &tarEntry{mode: 0o555, dir: true}
	entries["root/"] = &tarEntry{mode: 0o700, dir: true}
	entries["tmp/"] = &tarEntry{mode: 0o1777, dir: true}
	for _, applet := range strings.Fields(string(listing)) {
		if !skippedApplets[applet] && !strings.Contains(applet, "/") {
			entries["bin/"+applet] = &tarEntry{mode: 0o777, link: "busybox"}
		}
	}
	return deterministicTar(entries)
}

// uid 1000 gives tests a normal user; 65534 is nobody/nogroup as on Docker Hub.
const busyboxPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
`

const busyboxGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
staff:x:50:
users:x:100:
user:x:1000:
nogroup:x:65534:
`

const busyboxShadow = `root:*::0:::::
daemon:*::0:::::
bin:*::0:::::
sys:*::0:::::
user:*::0:::::
nobody:*::0:::::
`

type tarEntry struct {
	mode int64
	dir  bool
	link string
	data []byte
}

func deterministicTar(entries map[string]*tarEntry) ([]byte, error) {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		hdr := &tar.Header{Name: n, Mode: e.mode, ModTime: baseImageTime, Format: tar.FormatUSTAR}
		switch {
		case e.dir:
			hdr.Typeflag = tar.TypeDir
		case e.link != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// singleLayerImage wraps a rootfs tar as a Docker schema-2 image, as Docker
// Hub serves official images.
func singleLayerImage(rootfs []byte, createdBy string, cmd []string) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(rootfs)), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		return nil, err
	}
	return imageFromLayer(layer, createdBy, cmd)
}

func imageFromLayer(layer v1.Layer, createdBy string, cmd []string) (v1.Image, error) {
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.DockerManifestSchema2), types.DockerConfigJSON)
	created := v1.Time{Time: baseImageTime}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: createdBy},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Created = created
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config.Env = []string{"PATH=" + defaultPath}
	cfg.Config.Cmd = cmd
	cfg.History = append(cfg.History, v1.History{
		Created:    created,
		CreatedBy:  fmt.Sprintf("CMD %q", cmd),
		EmptyLayer: true,
	})
	return mutate.ConfigFile(img, cfg)
}

// Seed pushes img as host/path straight into the store: no credentials
// needed, not logged in Requests(), no faults consumed.
func (r *Registry) Seed(path string, img v1.Image) error {
	ref, err := name.ParseReference(r.Ref(path))
	if err != nil {
		return err
	}
	return remote.Write(ref, img, remote.WithTransport(storeTransport{r.store}))
}

// PushBase seeds reg with img under path (e.g. "library/busybox:latest") and
// returns the full reference.
func PushBase(t testing.TB, reg *Registry, path string, img v1.Image) string {
	t.Helper()
	if err := reg.Seed(path, img); err != nil {
		t.Fatalf("testenv: seeding %s: %v", reg.Ref(path), err)
	}
	return reg.Ref(path)
}

// SeedMirror makes reg usable as a --registry-mirror for `FROM busybox`:
// it pushes BusyboxImage under BusyboxMirrorTags and returns the image.
func SeedMirror(t testing.TB, reg *Registry) v1.Image {
	t.Helper()
	img := BusyboxImage(t)
	for _, path := range BusyboxMirrorTags {
		PushBase(t, reg, path, img)
	}
	return img
}

// DockerImport loads the image's filesystem into the local Docker engine
// (docker import) and returns the tag, removed at cleanup. Only the rootfs
// is imported: pass the command explicitly to docker run.
func DockerImport(t testing.TB, img v1.Image) string {
	t.Helper()
	RequireDocker(t)
	digest, err := img.Digest()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	tag := "kiln-testenv/import:" + digest.Hex[:16]
	cmd := exec.Command("docker", "import", "-", tag)
	cmd.Stdin = mutate.Extract(img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: docker import: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "--force", tag).Run() })
	return tag
}

// ExtractRootfs unpacks the image's flattened filesystem into a new
// directory (as root, owners kept) and returns it.
func ExtractRootfs(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(ReadableTempDir(t), "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cmd := exec.Command("tar", "--extract", "--numeric-owner", "--same-permissions", "--directory", dir)
	cmd.Stdin = mutate.Extract(img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: extracting rootfs: %v: %s", err, out)
	}
	return dir
}

// TarFiles reads a tar stream and returns its regular files (path without
// a leading "./" or "/" → content).
func TarFiles(t testing.TB, r io.Reader) map[string]string {
	t.Helper()
	files := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")] = string(b)
		}
	}
}
