package embedded

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/mount"
	ctdsnapshot "github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	continuityfs "github.com/containerd/continuity/fs"
	"golang.org/x/sys/unix"
)

// linkSnapshotter keeps every snapshot as a plain directory, never a mount,
// like containerd's native snapshotter, but a new snapshot starts as a
// hardlink farm of its parent instead of a copy: a step costs one link per
// file, not a copy of the image, and the differ sees unchanged files as
// the same inode. Nothing may write into a shared file in place; every
// writer of snapshot directories replaces a file it changes: containerd's
// tar applier and BuildKit's copy remove the target first, BuildKit's
// mkfile renames over it, and the RUN sync (syncer) replaces any file with
// more than one link.
type linkSnapshotter struct {
	root string
	ms   *storage.MetaStore
	// leaveRemoved keeps a removed snapshot's directory, moved aside, for
	// the removal of the whole state after the build: deleting a farm of
	// 10^5 links took seconds per snapshot after the push.
	leaveRemoved bool
}

func newLinkSnapshotter(root string) (*linkSnapshotter, error) {
	if err := os.MkdirAll(filepath.Join(root, "snapshots"), 0o700); err != nil {
		return nil, err
	}
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, err
	}
	return &linkSnapshotter{root: root, ms: ms}, nil
}

func (s *linkSnapshotter) dir(id string) string { return filepath.Join(s.root, "snapshots", id) }

func (s *linkSnapshotter) Stat(ctx context.Context, key string) (info ctdsnapshot.Info, err error) {
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		_, info, _, err = storage.GetInfo(ctx, key)
		return err
	})
	return info, err
}

func (s *linkSnapshotter) Update(ctx context.Context, info ctdsnapshot.Info, fieldpaths ...string) (_ ctdsnapshot.Info, err error) {
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		info, err = storage.UpdateInfo(ctx, info, fieldpaths...)
		return err
	})
	return info, err
}

func (s *linkSnapshotter) Usage(ctx context.Context, key string) (usage ctdsnapshot.Usage, err error) {
	var id string
	var info ctdsnapshot.Info
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		id, info, usage, err = storage.GetInfo(ctx, key)
		return err
	})
	if err != nil || (info.Kind == ctdsnapshot.KindView && len(info.Parent) > 0) {
		return usage, err // a view of a parent has no directory of its own
	}
	// Measured when asked (BuildKit asks lazily, for du and pruning), not
	// at Commit: a walk of every file per step.
	du, err := continuityfs.DiskUsage(ctx, s.dir(id))
	return ctdsnapshot.Usage(du), err
}

func (s *linkSnapshotter) Mounts(ctx context.Context, key string) (_ []mount.Mount, err error) {
	var snap storage.Snapshot
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		snap, err = storage.GetSnapshot(ctx, key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", key, err)
	}
	return s.mounts(snap), nil
}

func (s *linkSnapshotter) Prepare(ctx context.Context, key, parent string, opts ...ctdsnapshot.Opt) ([]mount.Mount, error) {
	return s.create(ctx, ctdsnapshot.KindActive, key, parent, opts)
}

func (s *linkSnapshotter) View(ctx context.Context, key, parent string, opts ...ctdsnapshot.Opt) ([]mount.Mount, error) {
	return s.create(ctx, ctdsnapshot.KindView, key, parent, opts)
}

// create records the snapshot and, for an active one or one without a
// parent, gives it a directory: the parent's files linked in. A view of a
// parent is the parent's own directory.
func (s *linkSnapshotter) create(ctx context.Context, kind ctdsnapshot.Kind, key, parent string, opts []ctdsnapshot.Opt) ([]mount.Mount, error) {
	var snap storage.Snapshot
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		var err error
		snap, err = storage.CreateSnapshot(ctx, kind, key, parent, opts...)
		if err != nil {
			return fmt.Errorf("creating snapshot %s: %w", key, err)
		}
		if kind != ctdsnapshot.KindActive && len(snap.ParentIDs) > 0 {
			return nil
		}
		tmp, err := os.MkdirTemp(filepath.Join(s.root, "snapshots"), "new-")
		if err != nil {
			return err
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		if len(snap.ParentIDs) > 0 {
			if err := linkFarm(s.dir(snap.ParentIDs[0]), tmp); err != nil {
				os.RemoveAll(tmp)
				return fmt.Errorf("linking snapshot %s's parent: %w", key, err)
			}
		}
		if err := os.Rename(tmp, s.dir(snap.ID)); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.mounts(snap), nil
}

// linkFarm fills the empty directory dst with src's tree: directories
// made anew with src's metadata, everything else hardlinked. It is every
// step's start, so a file costs one link(2) where it can: the link keeps
// the inode's owner, mode, times and xattrs, and its hardlinks.
func linkFarm(src, dst string) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(src, &sfs); err != nil {
		return &os.PathError{Op: "statfs", Path: src, Err: err}
	}
	f := &farm{
		// fuse-overlayfs gives a linked file a new time (a copy-up).
		keepTimes: sfs.Type == unix.FUSE_SUPER_MAGIC,
		fallback:  &syncer{src: src, dst: dst, skip: newSkipList(), linkFiles: true, links: map[fileID]string{}},
	}
	if err := f.dir(""); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	// A snapshot's root is the image's "/": its metadata too.
	return copyMetadata(src, dst, &st, true)
}

type farm struct {
	keepTimes bool
	// fallback places what cannot be linked (a file at its link limit,
	// another filesystem) as the RUN sync does: copied.
	fallback *syncer
}

// dir links the entries of rel (made in dst already) from src.
func (f *farm) dir(rel string) error {
	src, dst := f.fallback.src, f.fallback.dst
	entries, err := os.ReadDir(filepath.Join(src, rel))
	if err != nil {
		return err
	}
	for _, e := range entries {
		child := join(rel, e.Name())
		srcPath, dstPath := filepath.Join(src, child), filepath.Join(dst, child)
		switch {
		case e.IsDir():
			if err := unix.Mkdir(dstPath, 0o700); err != nil {
				return &os.PathError{Op: "mkdir", Path: dstPath, Err: err}
			}
			if err := f.dir(child); err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(srcPath, &st); err != nil {
				return &os.PathError{Op: "lstat", Path: srcPath, Err: err}
			}
			if err := copyMetadata(srcPath, dstPath, &st, true); err != nil {
				return err
			}
		case e.Type()&fs.ModeSocket != 0:
			// No file content; layers and the RUN sync leave them out.
		default:
			if err := f.link(child, srcPath, dstPath); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *farm) link(rel, srcPath, dstPath string) error {
	err := os.Link(srcPath, dstPath)
	if err == nil && !f.keepTimes {
		return nil
	}
	var st unix.Stat_t
	if lerr := unix.Lstat(srcPath, &st); lerr != nil {
		return &os.PathError{Op: "lstat", Path: srcPath, Err: lerr}
	}
	if err == nil {
		return unix.UtimesNanoAt(unix.AT_FDCWD, dstPath, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	}
	if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EMLINK) && !errors.Is(err, unix.EPERM) {
		return err
	}
	return f.fallback.file(rel, &st, false, nil)
}

func (s *linkSnapshotter) Commit(ctx context.Context, name, key string, opts ...ctdsnapshot.Opt) error {
	return s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		if _, err := storage.CommitActive(ctx, key, name, ctdsnapshot.Usage{}, opts...); err != nil {
			return fmt.Errorf("committing snapshot %s: %w", key, err)
		}
		return nil
	})
}

func (s *linkSnapshotter) Remove(ctx context.Context, key string) error {
	var dir, gone string
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		id, _, err := storage.Remove(ctx, key)
		if err != nil {
			return fmt.Errorf("removing snapshot %s: %w", key, err)
		}
		// Moved aside inside the transaction: a snapshot whose record
		// stays keeps its directory, one whose record is gone loses it.
		dir, gone = s.dir(id), filepath.Join(s.root, "snapshots", "rm-"+id)
		if err := os.Rename(dir, gone); err != nil {
			gone = ""
			if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if gone != "" {
			os.Rename(gone, dir)
		}
		return err
	}
	if gone != "" && !s.leaveRemoved {
		return os.RemoveAll(gone)
	}
	return nil
}

func (s *linkSnapshotter) Walk(ctx context.Context, fn ctdsnapshot.WalkFunc, filters ...string) error {
	return s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, fn, filters...)
	})
}

func (s *linkSnapshotter) Close() error { return s.ms.Close() }

// mounts is the one bind a snapshot stands for, marked for BuildKit to use
// as a path (path-only-binds.patch).
func (s *linkSnapshotter) mounts(snap storage.Snapshot) []mount.Mount {
	source, mode := s.dir(snap.ID), "rw"
	if snap.Kind == ctdsnapshot.KindView {
		mode = "ro"
		if len(snap.ParentIDs) > 0 {
			source = s.dir(snap.ParentIDs[0])
		}
	}
	return []mount.Mount{{Type: "bind", Source: source, Options: []string{"rbind", mode, pathOnlyOption}}}
}
