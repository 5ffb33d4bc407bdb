package flagmap

// The maintained fork switches single behaviours with FF_KANIKO_* variables
// (v1.28.3 reads these 37). kiln builds with BuildKit and reshapes the result
// into Kaniko v1.23.2's image, so none of them changes what kiln does; each
// says why. They join the table as variable-only rows.
func init() {
	for _, ff := range forkFeatureFlags {
		Table = append(Table, Flag{
			Name: ff.name, Env: ff.name, EnvRule: EnvOverride, EnvOnly: true, Kind: Bool,
			CommandLine: KanikoFork, Disposition: NoOp, BuildKit: "none",
			Usage: ff.does, Reason: ff.why,
		})
	}
}

// Reasons shared by groups of feature flags.
const (
	ffCacheKeys  = "BuildKit keys its cache by instruction and content checksums; Kaniko's cache-key variants do not exist there"
	ffSnapshots  = "RUN and COPY run in BuildKit's snapshots and kiln reshapes the layers into Kaniko v1.23.2's form (docs/conformance.md), never in the executor's own filesystem"
	ffFrontend   = "kiln uses BuildKit's Dockerfile frontend, which always behaves the way this flag makes the fork behave"
	ffPublishing = "kiln pushes with its own go-containerregistry publisher and keeps no base-image store between builds"
	ffWarmer     = "kiln's warmer fills BuildKit's state in --cache-dir, not Kaniko's tarball cache"
)

var forkFeatureFlags = []struct{ name, does, why string }{
	{"FF_KANIKO_BUILDKIT_ARG_ENV_PRECEDENCE", "ARG and ENV precedence as in BuildKit", ffFrontend},
	{"FF_KANIKO_CACHE_LOOKAHEAD", "probe cache entries of later steps ahead", ffCacheKeys},
	{"FF_KANIKO_CACHE_PROBE_AFTER_MISS", "keep probing the cache after a miss", ffCacheKeys},
	{"FF_KANIKO_CHOWN_ON_IMPLICIT_DIRS", "apply COPY --chown to directories COPY creates", ffSnapshots},
	{"FF_KANIKO_CLEAN_KANIKO_DIR", "empty the kaniko directory between builds", "kiln's work files live in a private directory removed on every exit"},
	{"FF_KANIKO_COPY_AS_ROOT", "run COPY as root under USER", ffSnapshots},
	{"FF_KANIKO_COPY_CHMOD_ON_IMPLICIT_DIRS", "apply COPY --chmod to directories COPY creates", ffSnapshots},
	{"FF_KANIKO_CROSS_REPO_MOUNT", "mount base layers from another repository when pushing", ffPublishing},
	{"FF_KANIKO_DEPRECATE_INTER_STAGE_RESTORE", "stop restoring the context between stages", "stages never share a filesystem in BuildKit, so there is nothing to restore"},
	{"FF_KANIKO_DISABLE_HTTP2", "talk to registries over HTTP/1.1 only", ffPublishing},
	{"FF_KANIKO_EXPAND_HEREDOC", "expand variables in heredocs", ffFrontend},
	{"FF_KANIKO_HASH_DIR_FRAMING", "frame directory entries in cache hashes", ffCacheKeys},
	{"FF_KANIKO_IGNORE_CACHED_MANIFEST", "ignore a cached manifest of the base image", ffCacheKeys},
	{"FF_KANIKO_INFER_CROSS_STAGE_CACHE_KEY", "derive cache keys across stages", ffCacheKeys},
	{"FF_KANIKO_NO_PROPAGATE_ANNOTATIONS", "do not copy the base image's annotations", "kiln never copies a base image's manifest annotations; only --annotation values are written"},
	{"FF_KANIKO_OCI_SCRATCH_BASE", "build FROM scratch as an OCI image", ffSnapshots},
	{"FF_KANIKO_OCI_WARMER", "let the warmer write OCI layouts", ffWarmer},
	{"FF_KANIKO_PATH_SCOPED_REGISTRY_AUTH", "match credentials by repository path", "kiln matches credentials by registry host, as Kaniko v1.23.2 does"},
	{"FF_KANIKO_PRECOMPILE_DOCKERIGNORE", "compile .dockerignore patterns once", ffFrontend},
	{"FF_KANIKO_PRESERVE_HARDLINKS", "keep hardlinks in layers", ffSnapshots},
	{"FF_KANIKO_PRESERVE_MOUNTED_PATHS", "keep files under mounted paths", ffSnapshots},
	{"FF_KANIKO_RELATIVE_LINK_TARGETS", "write hardlink targets as relative names", "kiln always writes relative hardlink names (docs/conformance.md)"},
	{"FF_KANIKO_REPRODUCIBLE_PRESERVE_BASE_LAYERS", "keep base layers unchanged under --reproducible", ffSnapshots},
	{"FF_KANIKO_RESOLVE_CACHE_KEY", "resolve variables before computing cache keys", ffCacheKeys},
	{"FF_KANIKO_ROLLING_CACHE_KEY", "chain cache keys step by step", ffCacheKeys},
	{"FF_KANIKO_RUN_HONOR_GROUP", "run RUN with the group USER names", ffSnapshots},
	{"FF_KANIKO_RUN_MOUNT_BIND", "support RUN --mount=type=bind", ffFrontend},
	{"FF_KANIKO_RUN_VIA_TINI", "run RUN under an init process", "BuildKit's runtime reaps RUN's processes itself"},
	{"FF_KANIKO_SCOPED_DOCKERIGNORE", "read Dockerfile.dockerignore next to the Dockerfile", ffFrontend},
	{"FF_KANIKO_SECUREJOIN_EXTRACTION", "resolve paths safely while unpacking", ffSnapshots},
	{"FF_KANIKO_SHARED_BASE_CACHE", "share unpacked base images between builds", ffPublishing},
	{"FF_KANIKO_SKIP_CACHED_STAGES", "skip stages whose result is cached", ffCacheKeys},
	{"FF_KANIKO_SKIP_RELABEL_RECOMPRESS", "do not recompress layers when relabelling", ffPublishing},
	{"FF_KANIKO_SKIP_WRITE_WHITEOUTS", "leave out whiteouts of files that never existed", ffSnapshots},
	{"FF_KANIKO_UNTAR_SKIP_ROOT", "skip the root entry when unpacking", ffSnapshots},
	{"FF_KANIKO_VOLUME_SKIP_MKDIR", "do not create VOLUME directories", ffSnapshots},
	{"FF_KANIKO_WARMER_CACHE_LOCK", "lock the warmer's cache", ffWarmer},
}
