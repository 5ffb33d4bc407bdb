package compat

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kilnbuild/kiln/flagmap"
)

func TestKanikoDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts *flagmap.Options
		want string
	}{
		{"nil options", nil, "/kaniko"},
		{"unset", &flagmap.Options{}, "/kaniko"},
		{"flag", &flagmap.Options{KanikoDir: "/builds/kaniko/"}, "/builds/kaniko"},
	} {
		if got := KanikoDir(tc.opts); got != tc.want {
			t.Errorf("%s: KanikoDir = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestDockerConfigDir(t *testing.T) {
	moved := t.TempDir()
	movedWithConfig := t.TempDir()
	if err := os.MkdirAll(filepath.Join(movedWithConfig, ".docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(movedWithConfig, ".docker", "config.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts *flagmap.Options
		want string
	}{
		{"default", &flagmap.Options{}, "/kaniko/.docker"},
		{"DOCKER_CONFIG with trailing slash", &flagmap.Options{Env: flagmap.Environment{DockerConfig: "/kaniko/.docker/"}}, "/kaniko/.docker"},
		{"DOCKER_CONFIG elsewhere", &flagmap.Options{Env: flagmap.Environment{DockerConfig: "/tekton/home/.docker"}}, "/tekton/home/.docker"},
		{"moved dir without config keeps the image's", &flagmap.Options{KanikoDir: moved, Env: flagmap.Environment{DockerConfig: "/kaniko/.docker/"}}, "/kaniko/.docker"},
		{"moved dir: Kaniko would have copied /kaniko/.docker", &flagmap.Options{KanikoDir: moved, Env: flagmap.Environment{DockerConfig: filepath.Join(moved, ".docker")}}, "/kaniko/.docker"},
		{"moved dir with config wins", &flagmap.Options{KanikoDir: movedWithConfig, Env: flagmap.Environment{DockerConfig: "/kaniko/.docker/"}}, filepath.Join(movedWithConfig, ".docker")},
	} {
		if got := DockerConfigDir(tc.opts); got != tc.want {
			t.Errorf("%s: DockerConfigDir = %q, want %q", tc.name, got, tc.want)
		}
	}
}
