package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	ctdmetadata "github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/mount"
	ctdsnapshot "github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/platforms"
	"github.com/moby/buildkit/cache/metadata"
	bkexecutor "github.com/moby/buildkit/executor"
	"github.com/moby/buildkit/snapshot"
	containerdsnapshot "github.com/moby/buildkit/snapshot/containerd"
	"github.com/moby/buildkit/util/db/boltutil"
	"github.com/moby/buildkit/util/leaseutil"
	"github.com/moby/buildkit/worker/base"
	wlabel "github.com/moby/buildkit/worker/label"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// pathOnlyOption marks the snapshotter's binds so BuildKit uses them
// as plain paths even when it asks for read-only ones; kiln's BuildKit patch
// (hack/buildkit/path-only-binds.patch) defines the same string.
const pathOnlyOption = "x-kiln.path-only"

// snapshotterName is "native" for BuildKit: its code treats a snapshotter
// of plain directories by that name (hardlink merges, no overlay diffs).
const snapshotterName = "native"

// errUnpatchedBuildKit explains a binary built without kiln's BuildKit patch.
var errUnpatchedBuildKit = errors.New("this kiln binary was built without kiln's BuildKit patch, so BuildKit would mount read-only snapshots; build it with `make build` (hack/buildkit-workspace.sh)")

// checkPathOnlyBinds proves that BuildKit in this binary hands a marked
// read-only bind over as its path instead of mounting it.
func checkPathOnlyBinds(tmp string) error {
	dir, err := os.MkdirTemp(tmp, "kiln-bind-check-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	m := snapshot.LocalMounterWithMounts([]mount.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", "ro", pathOnlyOption}}})
	got, err := m.Mount()
	if err == nil {
		defer m.Unmount()
	}
	if err != nil || got != dir {
		return errUnpatchedBuildKit
	}
	return nil
}

// newWorkerOpt assembles a BuildKit worker whose every step works on plain
// directories: linkSnapshotter, a path-based layer applier and
// differ, and exec as the RUN executor.
// throwAway leaves removed snapshots to the removal of the whole state.
func newWorkerOpt(root string, exec bkexecutor.Executor, headers *layerHeaders, throwAway bool) (base.WorkerOpt, error) {
	var opt base.WorkerOpt
	if err := os.MkdirAll(root, 0o700); err != nil {
		return opt, err
	}
	sn, err := newLinkSnapshotter(filepath.Join(root, "snapshots"))
	if err != nil {
		return opt, fmt.Errorf("snapshotter: %w", err)
	}
	sn.leaveRemoved = throwAway
	store, err := local.NewStore(filepath.Join(root, "content"))
	if err != nil {
		return opt, err
	}
	db, err := boltutil.Open(filepath.Join(root, "containerdmeta.db"), 0o644, &bolt.Options{
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		return opt, err
	}
	mdb := ctdmetadata.NewDB(db, store, map[string]ctdsnapshot.Snapshotter{snapshotterName: sn})
	if err := mdb.Init(context.TODO()); err != nil {
		return opt, err
	}
	contentStore := containerdsnapshot.NewContentStore(mdb.ContentStore(), "buildkit")
	id, err := base.ID(root)
	if err != nil {
		return opt, err
	}
	md, err := metadata.NewStore(filepath.Join(root, "metadata_v2.db"))
	if err != nil {
		return opt, err
	}
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}
	return base.WorkerOpt{
		ID:   id,
		Root: root,
		Labels: map[string]string{
			wlabel.Executor:    "kiln-embedded",
			wlabel.Snapshotter: snapshotterName,
			wlabel.Hostname:    hostname,
			wlabel.Network:     "host",
		},
		MetadataStore:   md,
		ContentMetadata: db,
		Executor:        exec,
		Snapshotter:     containerdsnapshot.NewSnapshotter(snapshotterName, mdb.Snapshotter(snapshotterName), "buildkit", nil),
		ContentStore:    contentStore,
		Applier:         layerApplier{store: contentStore, headers: headers},
		Differ:          layerDiffer{store: contentStore},
		Platforms:       []ocispecs.Platform{platforms.Normalize(platforms.DefaultSpec())},
		LeaseManager:    leaseutil.WithNamespace(ctdmetadata.NewLeaseManager(mdb), "buildkit"),
		GarbageCollect:  mdb.GarbageCollect,
		MountPoolRoot:   filepath.Join(root, "cachemounts"),
	}, nil
}
