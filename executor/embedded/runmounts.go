package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/continuity/fs"
	bkexecutor "github.com/moby/buildkit/executor"
)

// errSecretMounts explains RUN --mount=type=secret|ssh here: BuildKit hands
// secrets over only through a tmpfs it mounts itself.
var errSecretMounts = errors.New("RUN --mount=type=secret and type=ssh need a tmpfs mount, which a container's default privileges do not allow; run kiln rootless (runAsUser: 1000) or with CAP_SYS_ADMIN for them")

// runMount is a RUN --mount emulated without mount(2): its content is
// placed at Dest in the root before the RUN, and read back after (cache
// mounts), as the mount would have shown and kept it.
type runMount struct {
	dest     string // in the root
	source   string // a snapshot directory, or "" for an empty tmpfs
	writable bool   // changes go back to source
	release  func() error
}

// resolveRunMounts finds each mount's directory: BuildKit's cache and bind
// mounts are snapshots (marked binds, used as paths); tmpfs is empty.
func resolveRunMounts(ctx context.Context, mounts []bkexecutor.Mount) (_ []runMount, err error) {
	var out []runMount
	defer func() {
		if err != nil {
			releaseRunMounts(out)
		}
	}()
	for _, m := range mounts {
		ref, err := m.Src.Mount(ctx, m.Readonly)
		if err != nil {
			return out, err
		}
		ms, release, err := ref.Mount()
		if errors.Is(err, syscall.EPERM) {
			return out, errSecretMounts
		}
		if err != nil {
			return out, err
		}
		rm := runMount{dest: m.Dest, release: release, writable: !m.Readonly}
		switch {
		case len(ms) == 1 && ms[0].Type == "tmpfs":
			rm.writable = false
		case len(ms) == 1 && (ms[0].Type == "bind" || ms[0].Type == "rbind"):
			if rm.source, err = fs.RootPath(ms[0].Source, m.Selector); err != nil {
				release()
				return out, err
			}
		default:
			release()
			return out, errSecretMounts
		}
		out = append(out, rm)
	}
	return out, nil
}

func releaseRunMounts(mounts []runMount) error {
	var errs []error
	for _, m := range mounts {
		if m.release != nil {
			errs = append(errs, m.release())
		}
	}
	return errors.Join(errs...)
}

// placeRunMounts puts each mount's content at its destination in root,
// hiding what the step's filesystem has there, and returns the directories
// it had to create (mount stubs, removed after the RUN).
func placeRunMounts(root string, mounts []runMount, skip *skipList) (stubs []string, err error) {
	for _, m := range mounts {
		dest, err := fs.RootPath(root, m.dest)
		if err != nil {
			return stubs, err
		}
		if info, err := os.Stat(m.source); err == nil && !info.IsDir() {
			// A single file bound from a context or stage.
			created, err := mkdirAllListed(filepath.Dir(dest))
			stubs = append(stubs, created...)
			if err != nil {
				return stubs, err
			}
			if err := placeAt(dest, func(target string) error { return copyFile(m.source, target) }); err != nil {
				return stubs, fmt.Errorf("RUN --mount at %s: %w", m.dest, err)
			}
			continue
		}
		created, err := mkdirAllListed(dest)
		stubs = append(stubs, created...)
		if err != nil {
			return stubs, err
		}
		src := m.source
		if src == "" {
			if src, err = os.MkdirTemp("", "kiln-tmpfs-"); err != nil {
				return stubs, err
			}
			defer os.Remove(src)
		}
		if err := syncTree(src, dest, skip.under(m.dest), time.Time{}); err != nil {
			return stubs, fmt.Errorf("RUN --mount at %s: %w", m.dest, err)
		}
	}
	return stubs, nil
}

// takeRunMounts reads writable mounts back into their sources, then puts
// back what the step's filesystem (snapshot) holds at each destination, and
// removes the stubs.
func takeRunMounts(root, snapshot string, mounts []runMount, stubs []string, skip *skipList) error {
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		dest, err := fs.RootPath(root, m.dest)
		if err != nil {
			return err
		}
		sourceInfo, _ := os.Stat(m.source)
		isFile := m.source != "" && sourceInfo != nil && !sourceInfo.IsDir()
		if m.writable && m.source != "" && !isFile {
			if err := syncTree(dest, m.source, newSkipList(), time.Time{}); err != nil {
				return fmt.Errorf("RUN --mount at %s: keeping what RUN wrote: %w", m.dest, err)
			}
		}
		// What the step's filesystem holds there comes back, or nothing.
		rel := strings.TrimPrefix(filepath.Clean(m.dest), "/")
		orig, err := fs.RootPath(snapshot, m.dest)
		if err != nil {
			return err
		}
		if _, err := os.Lstat(orig); err == nil {
			s := &syncer{src: snapshot, dst: root, skip: skip, links: map[fileID]string{}}
			if err := s.entry(rel); err != nil {
				return err
			}
		} else if err := removeTree(root, rel, skip); err != nil {
			return err
		}
	}
	for i := len(stubs) - 1; i >= 0; i-- {
		if err := os.Remove(stubs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// mkdirAllListed is os.MkdirAll that lists the directories it created.
func mkdirAllListed(dir string) ([]string, error) {
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append([]string{p}, missing...)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i, p := range missing {
		if err := os.Mkdir(p, 0o755); err != nil {
			return missing[:i], err
		}
	}
	return missing, nil
}
