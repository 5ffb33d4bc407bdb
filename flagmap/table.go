package flagmap

// Disposition says how kiln honours a Kaniko flag.
type Disposition string

const (
	// Native flags map onto a BuildKit mechanism.
	Native Disposition = "native"
	// Emulated flags are reproduced by kiln itself around BuildKit.
	Emulated Disposition = "emulated"
	// NoOp flags are accepted and have no effect; Reason says why.
	NoOp Disposition = "accepted-no-op"
	// Unsupported flags are refused with Reason and an alternative.
	Unsupported Disposition = "unsupported"
)

// Kind is the value syntax of a flag.
type Kind string

const (
	String      Kind = "string"
	Bool        Kind = "bool"
	Int         Kind = "int"
	Duration    Kind = "duration"
	Multi       Kind = "multi"       // repeatable, each occurrence appended verbatim
	KeyValue    Kind = "key=value"   // repeatable key=value, later keys win
	MultiKeyMap Kind = "multi-map"   // repeatable, ';'-separated key=value pairs appended per key
	GitKind     Kind = "git-options" // repeatable key=value for git contexts
	Enum        Kind = "enum"        // one of Values, checked while parsing
)

// EnvRule says how a flag's environment variable combines with the command line.
type EnvRule string

const (
	// EnvFallback uses the variable while the flag still holds its default.
	EnvFallback EnvRule = "fallback"
	// EnvOverride replaces the flag's value whenever the variable is set
	// (Kaniko's KANIKO_NO_PUSH; an unparsable boolean counts as false).
	EnvOverride EnvRule = "override"
	// EnvAppend adds the variable as one more occurrence after the command line.
	EnvAppend EnvRule = "append"
	// EnvDefault is the maintained fork's reading: the variable replaces the
	// default, the flag wins, and a value that is not a boolean counts as false.
	EnvDefault EnvRule = "default"
)

// CommandLine names the tool whose command line a spelling comes from.
type CommandLine string

const (
	// Kaniko is Kaniko v1.23.2's executor (the zero value).
	Kaniko CommandLine = ""
	// KanikoFork is the maintained fork's executor (osscontainertools/kaniko v1.28).
	KanikoFork CommandLine = "kaniko-fork"
	// Kimia is rapidfort/kimia v1.0.25.
	Kimia CommandLine = "kimia"
)

// Redaction says which part of a flag's values may be secret.
type Redaction string

const (
	// RedactAfterEquals hides what follows the first '=' (build-arg values).
	RedactAfterEquals Redaction = "after-equals"
	// RedactURLUserinfo hides user:password@ inside URLs (git and https contexts).
	RedactURLUserinfo Redaction = "url-userinfo"
)

// Flag is one row of the table: everything kiln knows about one flag spelling.
type Flag struct {
	Name        string // long name without dashes
	Shorthand   string // one letter, or ""
	Kind        Kind
	Default     string   // as Kaniko's --help shows it
	Values      []string // allowed values (checked for Enum while parsing, for others by ValidateFlags)
	Env         string   // environment variable that also sets it, or ""
	EnvRule     EnvRule  // how Env combines with the command line; "" when Env is ""
	Usage       string   // help text, in our words
	Disposition Disposition
	BuildKit    string // what it becomes (native) or how kiln does it (emulated)
	Reason      string // why a no-op or unsupported, and the alternative
	Hidden      bool   // accepted but not shown by --help (Kaniko hides it too)
	AliasOf     string // deprecated spelling of this flag name
	Kiln        bool   // kiln's own flag, not Kaniko's
	Issue       string // for partly implemented flags: what is still missing
	Redact      Redaction
	// CommandLine is where the spelling comes from when it is not Kaniko's.
	CommandLine CommandLine
	// Bare is the value of a non-boolean flag given without one (Kimia's
	// bare --attestation means min); "" requires a value.
	Bare string
	// EnvOnly rows are variables without a flag (the fork's FF_KANIKO_*):
	// Name and Env are the variable, Kind is Bool and Field is nil.
	EnvOnly bool
	// Field points into Options; nil for aliases, which share their target's field.
	Field func(*Options) any
}

// Table is the single source of truth for kiln's command line: the parser,
// --help, docs/flags.md and the migration dry-run all read it.
var Table = []Flag{
	// Input, build and stage selection.
	{Name: "dockerfile", Shorthand: "f", Kind: String, Default: "Dockerfile",
		Usage:       "Dockerfile to build: a path (tried as given, then inside the context) or an http(s) URL",
		Disposition: Native, BuildKit: "local source `dockerfile` (the file's directory) + frontend option `filename`; URLs are fetched first",
		Field: func(o *Options) any { return &o.Dockerfile }},
	{Name: "context", Shorthand: "c", Kind: String, Default: "/workspace/",
		Usage:       "build context: a local directory, or dir://, tar://, git://, https://, s3:// or gs:// source",
		Disposition: Native, BuildKit: "local source `context`; remote contexts (tar://, https://, git://, s3://, gs://, Azure blob URLs) are fetched and unpacked by kiln first, as Kaniko does",
		Redact: RedactURLUserinfo,
		Field:  func(o *Options) any { return &o.Context }},
	{Name: "context-sub-path", Kind: String,
		Usage:       "directory inside a remote context to use as the context (ignored for local directories)",
		Disposition: Native, BuildKit: "frontend option `contextsubdir` (git: `#ref:subdir`)",
		Field: func(o *Options) any { return &o.ContextSubPath }},
	{Name: "bucket", Shorthand: "b", Kind: String, Hidden: true,
		Usage:       "Google Cloud Storage bucket holding the context as context.tar.gz",
		Disposition: Emulated, BuildKit: "kiln downloads gs://<bucket>/context.tar.gz (Application Default Credentials, STORAGE_EMULATOR_HOST) and unpacks it safely, as for --context=gs://",
		Field: func(o *Options) any { return &o.Bucket }},
	{Name: "git", Kind: GitKind, Default: "branch=,single-branch=false,recurse-submodules=false",
		Usage:       "option for git:// contexts, one key=value per use: branch, single-branch, recurse-submodules, insecure-skip-tls",
		Disposition: Native, BuildKit: "git source attributes (ref, keep-git-dir off, submodules)",
		Field: func(o *Options) any { return &o.Git }},
	{Name: "build-arg", Kind: Multi,
		Usage:       "ARG value as NAME=VALUE; a bare NAME takes the value from the environment (repeatable)",
		Disposition: Native, BuildKit: "frontend option `build-arg:NAME`",
		Redact: RedactAfterEquals,
		Field:  func(o *Options) any { return &o.BuildArgs }},
	{Name: "target", Shorthand: "t", Kind: String,
		Usage:       "stage to build (case-insensitive); empty builds the last stage (-t is Kimia's spelling)",
		Disposition: Native, BuildKit: "frontend option `target`",
		Field: func(o *Options) any { return &o.Target }},
	{Name: "skip-unused-stages", Kind: Bool, Default: "false",
		Usage:       "build only the stages the target depends on",
		Disposition: Native, BuildKit: "the frontend `target` builds what the target needs; every other stage Kaniko builds (all stages up to the target, or with this flag those Kaniko's dependency scan keeps) is solved as its own target without export, so its RUN steps run and a failure fails the build",
		Field: func(o *Options) any { return &o.SkipUnusedStages }},
	{Name: "custom-platform", Kind: String,
		Usage:       "platform to build for, os/arch[/variant] (default: this machine's platform)",
		Disposition: Native, BuildKit: "frontend option `platform`",
		Field: func(o *Options) any { return &o.CustomPlatform }},
	{Name: "label", Kind: Multi,
		Usage:       "image label as key=value (repeatable)",
		Disposition: Native, BuildKit: "frontend option `label:KEY`",
		Field: func(o *Options) any { return &o.Labels }},

	// Destinations and outputs.
	{Name: "destination", Shorthand: "d", Kind: Multi,
		Usage:       "image reference to push to; repeat for several",
		Disposition: Native, BuildKit: "image exporter `name` with `push=true`; kiln pushes each destination in order",
		Field: func(o *Options) any { return &o.Destinations }},
	{Name: "no-push", Kind: Bool, Default: "false", Env: "KANIKO_NO_PUSH", EnvRule: EnvOverride,
		Usage:       "build without pushing the image (cache layers are still pushed unless --no-push-cache)",
		Disposition: Native, BuildKit: "image exporter with `push=false`",
		Field: func(o *Options) any { return &o.NoPush }},
	{Name: "tar-path", Kind: String,
		Usage:       "also write the image as a docker-save tarball to this path",
		Disposition: Emulated, BuildKit: "written by kiln from the exported image in Kaniko's tarball layout",
		Field: func(o *Options) any { return &o.TarPath }},
	{Name: "oci-layout-path", Kind: String,
		Usage:       "also write the image as an OCI image layout directory",
		Disposition: Emulated, BuildKit: "written by kiln from the exported image, replacing index.json as Kaniko does",
		Field: func(o *Options) any { return &o.OCILayoutPath }},
	{Name: "digest-file", Kind: String,
		Usage:       "write the image's manifest digest (sha256:...) to this file",
		Disposition: Emulated, BuildKit: "BuildKit's `containerimage.digest`, written by kiln in Kaniko's format",
		Field: func(o *Options) any { return &o.DigestFile }},
	{Name: "image-name-with-digest-file", Kind: String,
		Usage:       "write repository@digest for each destination to this file",
		Disposition: Emulated, BuildKit: "written by kiln in Kaniko's format",
		Field: func(o *Options) any { return &o.ImageNameDigestFile }},
	{Name: "image-name-tag-with-digest-file", Kind: String,
		Usage:       "write repository:tag@digest for each destination to this file",
		Disposition: Emulated, BuildKit: "written by kiln in Kaniko's format",
		Field: func(o *Options) any { return &o.ImageNameTagDigestFile }},
	{Name: "push-retry", Kind: Int, Default: "0",
		Usage:       "extra attempts for each push, with growing pauses",
		Disposition: Emulated, BuildKit: "kiln retries its own push (1s, 2s, 4s... like Kaniko)",
		Field: func(o *Options) any { return &o.PushRetry }},
	{Name: "push-ignore-immutable-tag-errors", Kind: Bool, Default: "false",
		Usage:       "count a push refused because the tag is immutable as a success",
		Disposition: Emulated, BuildKit: "kiln matches the registry's immutable-tag error texts",
		Field: func(o *Options) any { return &o.PushIgnoreImmutableTagError }},
	{Name: "skip-push-permission-check", Kind: Bool, Default: "false",
		Usage:       "do not check that each destination accepts pushes before building",
		Disposition: Emulated, BuildKit: "kiln probes write access before the solve unless this is set",
		Field: func(o *Options) any { return &o.SkipPushPermissionCheck }},

	// Caching.
	{Name: "cache", Kind: Bool, Default: "false",
		Usage:       "use a registry layer cache",
		Disposition: Native, BuildKit: "cache import and export `type=registry,mode=max,image-manifest=true,ignore-error=true` (a failed cache push only warns); cached steps log `Using caching version of cmd:`",
		Field: func(o *Options) any { return &o.Cache }},
	{Name: "cache-repo", Kind: String,
		Usage:       "repository for cache layers (default: <first destination>/cache; oci:<dir> for a local cache)",
		Disposition: Native, BuildKit: "registry cache `ref=<repo>:kiln-<hash of destination repository, --target, --custom-platform>` (one tag per image, not one per step; a tag given in the repo is used as is), and next to it `<tag>-shaped`: the Kaniko form of the cached layers, so a rebuild neither re-shapes nor re-uploads them; oci:<dir> becomes a `type=local` cache",
		Field: func(o *Options) any { return &o.CacheRepo }},
	{Name: "cache-dir", Kind: String, Default: "/cache",
		Usage:       "directory of base-image tarballs written by Kaniko's cache warmer (read with --cache)",
		Disposition: Emulated, BuildKit: "with --cache, an existing writable directory holds BuildKit's state (`--root` under <dir>/kiln/, one per daemon mode and user) so base images stay unpacked and steps cached between builds; locked per build, a concurrent build warns and uses a private state; Kaniko's warmer tarballs are not read",
		Field: func(o *Options) any { return &o.CacheDir }},
	{Name: "cache-ttl", Kind: Duration, Default: "336h0m0s",
		Usage:       "maximum age of a cache entry, with a unit (e.g. 6h)",
		Disposition: Emulated, BuildKit: "BuildKit cannot drop single cache entries: a cache whose oldest entry is older than the TTL is not imported (full rebuild, fresh cache exported); no layer older than the TTL is reused",
		Field: func(o *Options) any { return &o.CacheTTL }},
	{Name: "cache-copy-layers", Kind: Bool, Default: "false",
		Usage:       "also cache COPY layers",
		Disposition: NoOp, BuildKit: "none",
		Reason: "BuildKit always caches COPY, keyed by the checksum of the copied files, so Kaniko's stale multi-stage COPY results cannot occur",
		Field:  func(o *Options) any { return &o.CacheCopyLayers }},
	{Name: "cache-run-layers", Kind: Bool, Default: "true",
		Usage:       "cache RUN layers",
		Disposition: NoOp, BuildKit: "none",
		Reason: "BuildKit caches every instruction; --cache-run-layers=false cannot exclude RUN steps (use --cache=false to run every step)",
		Field:  func(o *Options) any { return &o.CacheRunLayers }},
	{Name: "no-push-cache", Kind: Bool, Default: "false",
		Usage:       "do not upload cache layers",
		Disposition: Native, BuildKit: "cache import without cache export (`--no-push` alone still exports the cache, as in Kaniko)",
		Field: func(o *Options) any { return &o.NoPushCache }},
	{Name: "compressed-caching", Kind: Bool, Default: "true",
		Usage:       "keep compressed copies of layers while caching (Kaniko memory trade-off)",
		Disposition: NoOp, BuildKit: "none",
		Reason: "BuildKit stores layers in its content store; there is no in-memory copy to tune",
		Field:  func(o *Options) any { return &o.CompressedCaching }},

	// Snapshotting and filesystem.
	{Name: "snapshot-mode", Kind: String, Default: "full", Values: []string{"full", "redo", "time"},
		Usage:       "how Kaniko detects changed files: full, redo or time",
		Disposition: NoOp, BuildKit: "none",
		Reason: "BuildKit's snapshotter records every change of a step exactly; there is no file scan to tune",
		Field:  func(o *Options) any { return &o.SnapshotMode }},
	{Name: "single-snapshot", Kind: Bool, Default: "false",
		Usage:       "take one snapshot per stage, after its last instruction",
		Disposition: NoOp, BuildKit: "none",
		Reason: "BuildKit writes one layer per filesystem-changing instruction; the image has more layers than Kaniko's single-snapshot image, with the same files",
		Field:  func(o *Options) any { return &o.SingleSnapshot }},
	{Name: "use-new-run", Kind: Bool, Default: "false",
		Usage:       "Kaniko's experimental RUN change detection",
		Disposition: NoOp, BuildKit: "none",
		Reason: "BuildKit runs each RUN in its own snapshot and sees every change without a scan",
		Field:  func(o *Options) any { return &o.UseNewRun }},
	{Name: "ignore-path", Kind: Multi,
		Usage:       "path Kaniko leaves out of snapshots (repeatable)",
		Disposition: Emulated, BuildKit: "kiln drops the path and everything below it from the layers it writes, as Kaniko's snapshots do",
		Field: func(o *Options) any { return &o.IgnorePaths }},
	{Name: "ignore-var-run", Kind: Bool, Default: "true",
		Usage:       "leave /var/run out of snapshots",
		Disposition: Emulated, BuildKit: "kiln drops /var/run from the layers it writes, as Kaniko's snapshots do",
		Field: func(o *Options) any { return &o.IgnoreVarRun }},
	{Name: "force-build-metadata", Kind: Bool, Default: "false",
		Usage:       "write a layer for every instruction, even ones that change no files",
		Disposition: NoOp, BuildKit: "none",
		Reason: "BuildKit records metadata-only instructions as history entries without layers; no empty layers are added",
		Field:  func(o *Options) any { return &o.ForceBuildMetadata }},
	{Name: "cleanup", Kind: Bool, Default: "false", Env: "KANIKO_CLEANUP", EnvRule: EnvDefault,
		Usage:       "delete the build filesystem when the build ends",
		Disposition: NoOp, BuildKit: "none",
		Reason: "builds happen in BuildKit's snapshots, never in the executor's own filesystem, so there is nothing to clean",
		Field:  func(o *Options) any { return &o.Cleanup }},
	{Name: "kaniko-dir", Kind: String, Default: "/kaniko", Env: "KANIKO_DIR", EnvRule: EnvFallback,
		Usage:       "kiln's work directory (Dockerfile copy, unpacked contexts, .docker/ credentials)",
		Disposition: Emulated, BuildKit: "kiln keeps Kaniko's paths; BuildKit's own state lives elsewhere",
		Field: func(o *Options) any { return &o.KanikoDir }},
	{Name: "image-fs-extract-retry", Kind: Int, Default: "0",
		Usage:       "retries for unpacking a base image's filesystem",
		Disposition: NoOp, BuildKit: "none",
		Reason: "BuildKit unpacks base layers into its snapshotter itself; download retries are --image-download-retry",
		Field:  func(o *Options) any { return &o.ImageFSExtractRetry }},
	{Name: "image-download-retry", Kind: Int, Default: "0",
		Usage:       "retries for downloading base images",
		Disposition: Emulated, BuildKit: "kiln retries the solve's image resolution",
		Field: func(o *Options) any { return &o.ImageDownloadRetry }},
	{Name: "force", Kind: Bool, Default: "false",
		Usage:       "run even when no container runtime is detected",
		Disposition: NoOp, BuildKit: "none",
		Reason: "kiln never writes to its own root filesystem (BuildKit isolates RUN), so it needs no container check",
		Field:  func(o *Options) any { return &o.Force }},
	{Name: "reproducible", Kind: Bool, Default: "false",
		Usage:       "strip timestamps so that identical inputs give identical images",
		Disposition: Emulated, BuildKit: "build-arg SOURCE_DATE_EPOCH (from the environment, else 0); kiln then re-tars every layer with zeroed times and writes the config the way Kaniko's go-containerregistry canonicalisation does, streaming",
		Field: func(o *Options) any { return &o.Reproducible }},

	// Compression.
	{Name: "compression", Kind: Enum, Values: []string{"gzip", "zstd"},
		Usage:       "compression of new layers: gzip or zstd (default gzip)",
		Disposition: Native, BuildKit: "exporter `compression`",
		Field: func(o *Options) any { return &o.Compression }},
	{Name: "compression-level", Kind: Int, Default: "-1",
		Usage:       "compression level; values <= 0 keep the default",
		Disposition: Native, BuildKit: "exporter `compression-level` (kiln passes 1 when unset, Kaniko's gzip speed)",
		Field: func(o *Options) any { return &o.CompressionLevel }},

	// Registry access.
	{Name: "insecure", Kind: Bool, Default: "false",
		Usage:       "push and read the cache over plain HTTP",
		Disposition: Native, BuildKit: "exporter `registry.insecure=true` and plain-HTTP registry settings",
		Field: func(o *Options) any { return &o.Insecure }},
	{Name: "insecure-pull", Kind: Bool, Default: "false",
		Usage:       "pull base images over plain HTTP",
		Disposition: Native, BuildKit: "buildkitd registry `http = true` for pulled registries",
		Field: func(o *Options) any { return &o.InsecurePull }},
	{Name: "insecure-registry", Kind: Multi,
		Usage:       "registry (host[:port]) to reach over plain HTTP for pushes and pulls (repeatable)",
		Disposition: Native, BuildKit: "buildkitd `[registry.\"host\"] http = true`",
		Field: func(o *Options) any { return &o.InsecureRegistries }},
	{Name: "skip-tls-verify", Kind: Bool, Default: "false",
		Usage:       "do not verify registry certificates (pushes and pulls)",
		Disposition: Native, BuildKit: "buildkitd registry `insecure = true`; kiln's pushes skip verification",
		Field: func(o *Options) any { return &o.SkipTLSVerify }},
	{Name: "skip-tls-verify-pull", Kind: Bool, Default: "false",
		Usage:       "accepted for compatibility; Kaniko never used it",
		Disposition: NoOp, BuildKit: "none",
		Reason: "Kaniko itself never reads this flag; use --skip-tls-verify or --skip-tls-verify-registry to skip verification for pulls",
		Field:  func(o *Options) any { return &o.SkipTLSVerifyPull }},
	{Name: "skip-tls-verify-registry", Kind: Multi,
		Usage:       "registry whose certificate is not verified (repeatable)",
		Disposition: Native, BuildKit: "buildkitd `[registry.\"host\"] insecure = true`",
		Field: func(o *Options) any { return &o.SkipTLSVerifyRegistries }},
	{Name: "registry-certificate", Kind: KeyValue,
		Usage:       "extra CA for a registry, as host=/path/to/ca.pem (repeatable)",
		Disposition: Native, BuildKit: "buildkitd `[registry.\"host\"] ca = [...]`",
		Field: func(o *Options) any { return &o.RegistryCertificates }},
	{Name: "registry-client-cert", Kind: KeyValue,
		Usage:       "mutual-TLS client certificate for a registry, as host=/path/to/cert,/path/to/key (repeatable)",
		Disposition: Native, BuildKit: "buildkitd `[[registry.\"host\".keypair]]`",
		Field: func(o *Options) any { return &o.RegistryClientCerts }},
	{Name: "registry-map", Kind: MultiKeyMap, Env: "KANIKO_REGISTRY_MAP", EnvRule: EnvAppend,
		Usage:       "pull a registry through replacements, as registry=replacement; several pairs may be joined with ';' (repeatable)",
		Disposition: Native, BuildKit: "buildkitd `[registry.\"host\"] mirrors = [...]`",
		Redact: RedactURLUserinfo,
		Field:  func(o *Options) any { return &o.RegistryMaps }},
	{Name: "registry-mirror", Kind: Multi, Env: "KANIKO_REGISTRY_MIRROR", EnvRule: EnvAppend,
		Usage:       "mirror to pull Docker Hub images through (repeatable)",
		Disposition: Native, BuildKit: "buildkitd `[registry.\"docker.io\"] mirrors = [...]`",
		Redact: RedactURLUserinfo,
		Field:  func(o *Options) any { return &o.RegistryMirrors }},
	{Name: "credential-helpers", Kind: Multi, CommandLine: KanikoFork,
		Usage:       "in-process credential helpers to use after config.json: any of env, google, ecr, acr, gitlab (comma-separated or repeated; default all, \"\" turns all off)",
		Disposition: Emulated, BuildKit: "kiln's keychain resolves config.json, then the selected helpers in the fork's order (env: KANIKO_<HOST>_USER/_PASSWORD; google: Application Default Credentials; ecr: GetAuthorizationToken; acr: Entra token exchanged at the registry; gitlab: CI_REGISTRY_USER/_PASSWORD); the same credentials serve pushes, the cache and BuildKit's base-image pulls through session auth",
		Field: func(o *Options) any { return &o.CredentialHelpers }},
	{Name: "skip-default-registry-fallback", Kind: Bool, Default: "false",
		Usage:       "fail when every mirror or mapped registry fails instead of pulling from the original registry",
		Disposition: Emulated, BuildKit: "kiln resolves base images through the mirrors itself and pins the result",
		Field: func(o *Options) any { return &o.SkipDefaultRegistryFallback }},

	// Logging.
	{Name: "verbosity", Shorthand: "v", Kind: String, Default: "info",
		Values:      []string{"trace", "debug", "info", "warn", "error", "fatal", "panic"},
		Usage:       "log level: trace, debug, info, warn, error, fatal or panic",
		Disposition: Native, BuildKit: "kiln's log level; debug and trace also show BuildKit's progress details",
		Field: func(o *Options) any { return &o.Verbosity }},
	{Name: "log-format", Kind: String, Default: "color", Values: []string{"text", "color", "json"},
		Usage:       "log format: text, color or json",
		Disposition: Native, BuildKit: "kiln's log format; BuildKit progress is printed as plain lines",
		Field: func(o *Options) any { return &o.LogFormat }},
	{Name: "log-timestamp", Kind: Bool, Default: "false",
		Usage:       "prefix log lines with a timestamp",
		Disposition: Native, BuildKit: "kiln's log format",
		Field: func(o *Options) any { return &o.LogTimestamp }},

	// Deprecated and hidden spellings Kaniko still accepts.
	{Name: "snapshotMode", Kind: String, AliasOf: "snapshot-mode",
		Usage: "deprecated spelling of --snapshot-mode"},
	{Name: "customPlatform", Kind: String, AliasOf: "custom-platform",
		Usage: "deprecated spelling of --custom-platform"},
	{Name: "tarPath", Kind: String, AliasOf: "tar-path",
		Usage: "deprecated spelling of --tar-path"},
	{Name: "whitelist-var-run", Kind: Bool, Default: "true", AliasOf: "ignore-var-run", Hidden: true,
		Usage: "deprecated spelling of --ignore-var-run"},
	// Registered on the global flag set by a library Kaniko links, so Kaniko accepts it.
	{Name: "azure-container-registry-config", Kind: String, Hidden: true,
		Usage:       "path to an Azure credential file for Azure Container Registry",
		Disposition: NoOp, BuildKit: "none",
		Reason: "kiln takes registry credentials from DOCKER_CONFIG/config.json and its credential helpers; for Azure Container Registry use the docker-credential-acr-env helper or an auths entry",
		Field:  func(o *Options) any { return &o.AzureContainerRegistryConfig }},

	// kiln's own flags.
	{Name: "buildkit-host", Kind: String, Env: "BUILDKIT_HOST", EnvRule: EnvFallback, Kiln: true,
		Usage:       "address of an existing BuildKit daemon (e.g. tcp://buildkitd:1234); empty starts a private engine (see --buildkit-mode)",
		Disposition: Native, BuildKit: "BuildKit client address",
		Field: func(o *Options) any { return &o.BuildkitHost }},
	{Name: "buildkit-mode", Kind: Enum, Default: "auto", Values: []string{"auto", "rootful", "rootless", "embedded"}, Env: "KILN_BUILDKIT_MODE", EnvRule: EnvFallback, Kiln: true,
		Usage:       "how kiln runs BuildKit without --buildkit-host: auto (rootless for non-root, rootful for root with CAP_SYS_ADMIN, embedded for root without it), rootful, rootless, or embedded (in kiln's process, no mounts, RUN in this container's root filesystem like Kaniko)",
		Disposition: Native, BuildKit: "the private BuildKit engine",
		Field: func(o *Options) any { return &o.BuildkitMode }},
	{Name: "migration-dry-run", Kind: Bool, Default: "false", Env: "KILN_MIGRATION_DRY_RUN", EnvRule: EnvFallback, Kiln: true,
		Usage:       "check this invocation and report what kiln would do, without building or pushing",
		Disposition: Native, BuildKit: "no build",
		Field: func(o *Options) any { return &o.MigrationDryRun }},
	{Name: "migration-report", Kind: Enum, Default: "text", Values: []string{"text", "json"}, Kiln: true,
		Usage:       "format of the migration dry-run report: text or json",
		Disposition: Native, BuildKit: "no build",
		Field: func(o *Options) any { return &o.MigrationReport }},

	// The maintained Kaniko fork's additions (osscontainertools/kaniko v1.28).
	{Name: "secret", Kind: Multi, CommandLine: KanikoFork,
		Usage:       "secret for RUN --mount=type=secret, as id=ID[,src=FILE|,env=VAR][,type=file|env]; with neither src nor env, the variable ID if set, else the file ID (repeatable)",
		Disposition: Native, BuildKit: "session secrets provider: each RUN --mount=type=secret,id=ID reads the value from kiln while it runs; values are read once at start and never reach a layer, the history, the cache or a log",
		Field: func(o *Options) any { return &o.Secrets }},
	{Name: "annotation", Kind: KeyValue, CommandLine: KanikoFork,
		Usage:       "annotation of the image manifest as key=value (repeatable)",
		Disposition: Emulated, BuildKit: "kiln writes the annotations into the manifest it publishes, after shaping (the digest includes them)",
		Field: func(o *Options) any { return &o.Annotations }},
	{Name: "preserve-context", Kind: Bool, Default: "false", Env: "KANIKO_PRESERVE_CONTEXT", EnvRule: EnvDefault, CommandLine: KanikoFork,
		Usage:       "keep the build context as it was across stages",
		Disposition: NoOp, BuildKit: "none",
		Reason: "BuildKit reads the context through its session and runs every stage in its own snapshot, so no stage can change the context another stage sees",
		Field:  func(o *Options) any { return &o.PreserveContext }},
	{Name: "pre-cleanup", Kind: Bool, Default: "false", Env: "KANIKO_PRE_CLEANUP", EnvRule: EnvDefault, CommandLine: KanikoFork,
		Usage:       "delete the build filesystem before the build starts",
		Disposition: NoOp, BuildKit: "none",
		Reason: "builds happen in BuildKit's snapshots, never in the executor's own filesystem, so there is nothing left over to clean",
		Field:  func(o *Options) any { return &o.PreCleanup }},
	{Name: "materialize", Kind: Bool, Default: "false", CommandLine: KanikoFork,
		Usage:       "leave the target's filesystem in place even when every step came from the cache",
		Disposition: NoOp, BuildKit: "none",
		Reason: "kiln never unpacks the image into its own filesystem; the target's complete filesystem is in the exported layers whether steps were cached or not",
		Field:  func(o *Options) any { return &o.Materialize }},
	{Name: "image-format", Kind: Enum, Values: []string{"docker", "oci"}, CommandLine: KanikoFork,
		Usage:       "media types of the image: docker or oci (default: the base image's)",
		Disposition: Native, BuildKit: "`docker` is what kiln always writes (exporter `oci-mediatypes=false`, Kaniko v1.23.2's Docker schema 2)",
		Issue: "`oci` is refused: kiln's Kaniko-shaped output is Docker schema 2 only (use --image-format=docker or leave it out)",
		Field: func(o *Options) any { return &o.ImageFormat }},
	{Name: "dryrun", Kind: Bool, Default: "false", CommandLine: KanikoFork,
		Usage:       "show what the build would do without building or pushing",
		Disposition: Emulated, BuildKit: "runs kiln's --migration-dry-run: the report of what kiln would do; nothing is built or pushed",
		Field: func(o *Options) any { return &o.Dryrun }},

	// Kimia's own flags (rapidfort/kimia v1.0.25); its Kaniko-like ones are above.
	{Name: "timestamp", Kind: String, CommandLine: Kimia,
		Usage:       "Unix time in seconds for every timestamp of the image; implies --reproducible and wins over SOURCE_DATE_EPOCH",
		Disposition: Emulated, BuildKit: "build-arg SOURCE_DATE_EPOCH and kiln's --reproducible shaping with this time",
		Field: func(o *Options) any { return &o.Timestamp }},
	{Name: "git-branch", Kind: String, CommandLine: Kimia,
		Usage:       "branch to clone for a git:// context",
		Disposition: Native, BuildKit: "same as --git branch=<value>: git source ref",
		Field: func(o *Options) any { return &o.GitBranch }},
	{Name: "git-revision", Kind: String, CommandLine: Kimia,
		Usage:       "commit to check out for a git:// context",
		Disposition: Native, BuildKit: "appended to the context as Kaniko's git://host/repo#ref#commit (or #commit without a ref)",
		Field: func(o *Options) any { return &o.GitRevision }},
	{Name: "git-token-file", Kind: String, CommandLine: Kimia,
		Usage:       "file holding the token for a git:// context",
		Disposition: Emulated, BuildKit: "read at start and used as GIT_TOKEN (never logged)",
		Field: func(o *Options) any { return &o.GitTokenFile }},
	{Name: "git-token-user", Kind: String, CommandLine: Kimia,
		Usage:       "user name sent with the git token",
		Disposition: Emulated, BuildKit: "used as GIT_USERNAME",
		Field: func(o *Options) any { return &o.GitTokenUser }},
	{Name: "import-cache", Kind: Multi, CommandLine: Kimia,
		Usage:       "BuildKit cache to import, as type=registry,ref=<repo:tag> or type=local,src=<dir> (repeatable)",
		Disposition: Native, BuildKit: "cache import entry, as buildctl --import-cache",
		Field: func(o *Options) any { return &o.ImportCache }},
	{Name: "export-cache", Kind: Multi, CommandLine: Kimia,
		Usage:       "BuildKit cache to export, as type=registry,ref=<repo:tag>[,mode=max] or type=local,dest=<dir> (repeatable)",
		Disposition: Native, BuildKit: "cache export entry, as buildctl --export-cache",
		Field: func(o *Options) any { return &o.ExportCache }},
	{Name: "storage-driver", Kind: String, CommandLine: Kimia,
		Usage:       "Kimia's storage driver: native, overlay or vfs",
		Disposition: NoOp, BuildKit: "none",
		Reason: "kiln starts its own buildkitd with the snapshotter that works where it runs (overlayfs where allowed, else native); there is nothing to choose",
		Field:  func(o *Options) any { return &o.StorageDriver }},
	{Name: "buildkit-opt", Kind: Multi, CommandLine: Kimia, Redact: RedactAfterEquals,
		Usage:       "raw BuildKit frontend option as key=value, as buildctl --opt (repeatable)",
		Disposition: Native, BuildKit: "frontend option `key`, applied after kiln's own",
		Field: func(o *Options) any { return &o.BuildkitOpts }},
	{Name: "buildah-opt", Kind: Multi, CommandLine: Kimia,
		Usage:       "raw Buildah option (Kimia's Buildah mode)",
		Disposition: NoOp, BuildKit: "none",
		Reason: "kiln always builds with BuildKit; Buildah options have nothing to apply to",
		Field:  func(o *Options) any { return &o.BuildahOpts }},
	{Name: "attestation", Kind: Enum, Values: []string{"off", "min", "max"}, Bare: "min", CommandLine: Kimia,
		Usage:       "attestations to attach: off, min (provenance mode=min) or max (SPDX SBOM and provenance mode=max); bare means min",
		Disposition: Emulated, BuildKit: "provenance is BuildKit's (`attest:provenance=mode=min|max`), re-addressed to the image kiln publishes; the SBOM is SPDX 2.3 JSON made by syft in kiln-sbom, a program installed next to the executor (no scanner image). Both are published in BuildKit's form: an OCI index of the image and its attestation manifest, which the tags, the digest files and BUILDER_OUTPUT then name (the --tar-path tarball keeps the image alone). With provenance the image has OCI media types, as BuildKit requires. Their times come from --timestamp or SOURCE_DATE_EPOCH (the epoch under --reproducible), so reproducible builds give the same attestations; off by default, leaving Kaniko's digests untouched",
		Field: func(o *Options) any { return &o.Attestation }},
	{Name: "attest", Kind: Multi, CommandLine: Kimia,
		Usage:       "one attestation as type=sbom or type=provenance[,mode=min|max] (repeatable; replaces --attestation)",
		Disposition: Emulated, BuildKit: "as --attestation, for the attestations listed",
		Field: func(o *Options) any { return &o.Attest }},
	{Name: "sign", Kind: Bool, Default: "false", CommandLine: Kimia,
		Usage:       "sign the pushed image and its attestations with cosign",
		Disposition: Emulated, BuildKit: "kiln signs each destination's pushed digest with cosign's library, key-based and offline (no transparency log), as cosign's sha256-<digest>.sig tag, and attests it as .att; digest files and BUILDER_OUTPUT are unchanged. Unlike Kimia, no attestation mode is needed",
		Field: func(o *Options) any { return &o.Sign }},
	{Name: "cosign-key", Kind: String, Default: "/etc/cosign/cosign.key", CommandLine: Kimia,
		Usage:       "cosign private key file for --sign (cosign's encrypted PEM or PKCS#8)",
		Disposition: Emulated, BuildKit: "read and unlocked before the build, so a missing key or a wrong password fails before anything is pushed",
		Field: func(o *Options) any { return &o.CosignKey }},
	{Name: "cosign-password-env", Kind: String, Default: "COSIGN_PASSWORD", CommandLine: Kimia,
		Usage:       "variable holding the password of --cosign-key",
		Disposition: Emulated, BuildKit: "the password is read from this variable and never logged",
		Field: func(o *Options) any { return &o.CosignPasswordEnv }},
	{Name: "scan", Kind: Bool, Default: "false", CommandLine: Kimia,
		Usage:       "Kimia enterprise: scan the image for vulnerabilities",
		Disposition: Unsupported,
		Reason:      "a RapidFort enterprise feature kiln does not have; scan the pushed image with your scanner",
		Field:       func(o *Options) any { return &o.Scan }},
	{Name: "harden", Kind: Bool, Default: "false", CommandLine: Kimia,
		Usage:       "Kimia enterprise: harden the image",
		Disposition: Unsupported,
		Reason:      "a RapidFort enterprise feature kiln does not have; build without --harden",
		Field:       func(o *Options) any { return &o.Harden }},
}

// Lookup returns the table row for a long flag name, or nil.
func Lookup(name string) *Flag {
	for i := range Table {
		if Table[i].Name == name {
			return &Table[i]
		}
	}
	return nil
}

// Target returns the row whose value this spelling sets: itself, or the
// flag it is a deprecated alias of.
func (f *Flag) Target() *Flag {
	if f.AliasOf == "" {
		return f
	}
	return Lookup(f.AliasOf)
}
