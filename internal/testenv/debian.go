package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DebianMirrorEnv overrides the Debian mirror read from the apt sources.
const DebianMirrorEnv = "KILN_DEBIAN_MIRROR"

const (
	debianSuite   = "bookworm"
	debianVariant = "minbase"
)

// DebianImage returns a one-layer Debian bookworm (debootstrap minbase)
// image, built once per machine into the cache (this takes minutes and needs
// the machine's Debian mirror) and loaded from there afterwards.
func DebianImage(t testing.TB) v1.Image {
	t.Helper()
	RequireRoot(t)
	RequireCommands(t, "debootstrap", "tar")
	cache := CacheDir(t)
	img, err := cachedDebian(cache, func(format string, args ...any) { t.Logf(format, args...) })
	if err != nil {
		t.Fatalf("testenv: Debian base image: %v", err)
	}
	return img
}

func cachedDebian(cache string, logf func(string, ...any)) (v1.Image, error) {
	key := "debian-" + debianSuite + "-" + debianVariant
	unlock, err := lockFile(filepath.Join(cache, key+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := filepath.Join(cache, key)
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		return firstImage(dir)
	}
	mirror, err := DebianMirror()
	if err != nil {
		return nil, err
	}
	logf("building %s from %s with debootstrap (once per machine; takes minutes)", key, mirror)
	work, err := os.MkdirTemp(cache, key+"-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := buildDebianLayout(work, mirror, filepath.Join(work, "layout")); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(work, "layout"), dir); err != nil {
		return nil, err
	}
	return firstImage(dir)
}

func buildDebianLayout(work, mirror, layoutDir string) error {
	rootfs := filepath.Join(work, "rootfs")
	if err := runLogged(work, "debootstrap", "--variant="+debianVariant, debianSuite, rootfs, mirror); err != nil {
		return err
	}
	// Like Docker Hub's debian: no package lists, no resolver of this machine.
	lists, _ := filepath.Glob(filepath.Join(rootfs, "var/lib/apt/lists/*_*"))
	for _, f := range lists {
		os.Remove(f)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/resolv.conf"), nil, 0o644); err != nil {
		return err
	}
	rootfsTar := filepath.Join(work, "rootfs.tar")
	if err := runLogged(work, "tar", "--create", "--file", rootfsTar, "--directory", rootfs,
		"--sort=name", "--numeric-owner", "--xattrs", fmt.Sprintf("--mtime=@%d", baseImageTime.Unix()),
		"--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "."); err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(rootfsTar, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		return err
	}
	img, err := imageFromLayer(layer, "debootstrap --variant="+debianVariant+" "+debianSuite, []string{"bash"})
	if err != nil {
		return err
	}
	index, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return err
	}
	return index.AppendImage(img)
}

// runLogged runs a command, keeping its output in <work>/<name>.log and
// quoting the tail on failure.
func runLogged(work, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	os.WriteFile(filepath.Join(work, name+".log"), out.Bytes(), 0o644)
	if err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		return fmt.Errorf("%s failed: %v\n%s", name, err, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	return nil
}

func firstImage(layoutDir string) (v1.Image, error) {
	index, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		return nil, err
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(manifest.Manifests) == 0 {
		return nil, fmt.Errorf("%s holds no image: delete it to rebuild", layoutDir)
	}
	return index.Image(manifest.Manifests[0].Digest)
}

// DebianMirror returns $KILN_DEBIAN_MIRROR or the first apt source serving
// the bookworm suite (deb822 .sources files and one-line .list files).
func DebianMirror() (string, error) {
	if m := os.Getenv(DebianMirrorEnv); m != "" {
		return m, nil
	}
	files := []string{"/etc/apt/sources.list"}
	for _, pattern := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		matches, _ := filepath.Glob(pattern)
		files = append(files, matches...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		parse := parseOneLineSources
		if strings.HasSuffix(f, ".sources") {
			parse = parseDeb822Sources
		}
		if uri := parse(string(data), debianSuite); uri != "" {
			return uri, nil
		}
	}
	return "", errors.New("no apt source serves Debian " + debianSuite + ": set " + DebianMirrorEnv + " to a Debian mirror URL")
}

func parseOneLineSources(data, suite string) string {
	scanner := bufio.NewScanner(strings.NewReader(data))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		fields = fields[1:]
		if strings.HasPrefix(fields[0], "[") { // options: [arch=amd64 signed-by=...]
			for len(fields) > 0 && !strings.HasSuffix(fields[0], "]") {
				fields = fields[1:]
			}
			if len(fields) > 0 {
				fields = fields[1:]
			}
		}
		if len(fields) >= 2 && fields[1] == suite {
			return fields[0]
		}
	}
	return ""
}

func parseDeb822Sources(data, suite string) string {
	for _, stanza := range strings.Split(data, "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if key, value, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(key)] = strings.TrimSpace(value)
			}
		}
		if strings.EqualFold(fields["enabled"], "no") || !slices.Contains(strings.Fields(fields["types"]), "deb") {
			continue
		}
		if slices.Contains(strings.Fields(fields["suites"]), suite) {
			if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
				return uris[0]
			}
		}
	}
	return ""
}
