// Package compat holds Kaniko's conventions that users rely on: the /kaniko
// directory, DOCKER_CONFIG, build contexts, Dockerfile resolution and
// registry credentials.
package compat

import (
	"os"
	"path/filepath"

	"github.com/kilnbuild/kiln/flagmap"
)

// DefaultKanikoDir is Kaniko's work directory in its images.
const DefaultKanikoDir = "/kaniko"

// KanikoDir is the work directory for this invocation: --kaniko-dir, else
// KANIKO_DIR (the flag table binds the variable to the same option), else
// /kaniko.
//
// Kaniko v1.23.2 derives its own paths from KANIKO_DIR only, so --kaniko-dir
// alone moved /kaniko but kept using /kaniko/... for the Dockerfile copy and
// stages. kiln honours the flag for every path it derives, and never moves
// or deletes /kaniko.
func KanikoDir(opts *flagmap.Options) string {
	if opts == nil || opts.KanikoDir == "" {
		return DefaultKanikoDir
	}
	return filepath.Clean(opts.KanikoDir)
}

// DockerConfigDir is the directory holding config.json for this invocation:
// DOCKER_CONFIG, defaulting to <kaniko dir>/.docker.
//
// When the kaniko dir is moved, Kaniko copies /kaniko there (so a config
// mounted at /kaniko/.docker comes along) and points DOCKER_CONFIG at
// <dir>/.docker. kiln copies nothing, so it reads <dir>/.docker when that
// holds a config.json and otherwise /kaniko/.docker, the same file Kaniko
// would end up with.
func DockerConfigDir(opts *flagmap.Options) string {
	kanikoDir := KanikoDir(opts)
	if kanikoDir != DefaultKanikoDir {
		moved := filepath.Join(kanikoDir, ".docker")
		if fileExists(filepath.Join(moved, "config.json")) {
			return moved
		}
		return filepath.Join(DefaultKanikoDir, ".docker")
	}
	if opts != nil && opts.Env.DockerConfig != "" {
		return filepath.Clean(opts.Env.DockerConfig)
	}
	return filepath.Join(kanikoDir, ".docker")
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}
