// Package flagmap holds Kaniko's executor command line as one declarative
// table and turns an invocation into a typed Options value.
package flagmap

import "time"

// Options is a parsed and validated Kaniko invocation. Field names follow
// Kaniko's flag names; the table in table.go is the only place that binds
// flags and environment variables to these fields.
type Options struct {
	// Input and stage selection.
	Dockerfile       string
	Context          string
	ContextSubPath   string
	Bucket           string
	Git              GitOptions
	BuildArgs        []string // verbatim KEY=VALUE, bare KEY already filled from the environment
	Target           string
	SkipUnusedStages bool
	CustomPlatform   string
	Labels           []string

	// Destinations and outputs.
	Destinations                []string
	NoPush                      bool
	TarPath                     string
	OCILayoutPath               string
	DigestFile                  string
	ImageNameDigestFile         string
	ImageNameTagDigestFile      string
	PushRetry                   int
	PushIgnoreImmutableTagError bool
	SkipPushPermissionCheck     bool

	// Caching.
	Cache             bool
	CacheRepo         string
	CacheDir          string
	CacheTTL          time.Duration
	CacheCopyLayers   bool
	CacheRunLayers    bool
	NoPushCache       bool
	CompressedCaching bool

	// Snapshotting and filesystem (Kaniko internals; see the table's dispositions).
	SnapshotMode        string
	SingleSnapshot      bool
	UseNewRun           bool
	IgnorePaths         []string
	IgnoreVarRun        bool
	ForceBuildMetadata  bool
	Cleanup             bool
	KanikoDir           string
	ImageFSExtractRetry int
	ImageDownloadRetry  int
	Force               bool
	Reproducible        bool

	// Compression.
	Compression      string // "", "gzip" or "zstd"
	CompressionLevel int

	// Registry access.
	Insecure                    bool
	InsecurePull                bool
	InsecureRegistries          []string
	SkipTLSVerify               bool
	SkipTLSVerifyPull           bool
	SkipTLSVerifyRegistries     []string
	RegistryCertificates        map[string]string   // host -> CA file
	RegistryClientCerts         map[string]string   // host -> "cert,key"
	RegistryMaps                map[string][]string // registry -> replacements, in order; mirrors already appended under index.docker.io, as Kaniko does
	RegistryMirrors             []string            // as given (flags, then KANIKO_REGISTRY_MIRROR), for reporting
	SkipDefaultRegistryFallback bool
	// CredentialHelpers is --credential-helpers as given; nil when absent
	// (every helper), [""] turns them all off.
	CredentialHelpers []string

	// AzureContainerRegistryConfig is accepted for compatibility only.
	AzureContainerRegistryConfig string

	// Logging.
	Verbosity    string
	LogFormat    string
	LogTimestamp bool

	// kiln's own additions.
	BuildkitHost    string // remote BuildKit address; empty starts a private daemon
	BuildkitMode    string // auto, rootful, rootless or embedded (migrate.EngineModes)
	MigrationDryRun bool
	MigrationReport string // "text" or "json"
	SourceDateEpoch *int64 // from --timestamp, else SOURCE_DATE_EPOCH; nil when unset

	// The maintained Kaniko fork's additions.
	Secrets         []string          // --secret specs as given; see ParseSecrets
	Annotations     map[string]string // manifest annotations
	PreserveContext bool
	PreCleanup      bool
	Materialize     bool
	ImageFormat     string // "", "docker" or "oci"
	Dryrun          bool   // runs the migration dry-run

	// Kimia's additions.
	Timestamp         string // decimal seconds; sets SourceDateEpoch and Reproducible
	GitBranch         string
	GitRevision       string
	GitTokenFile      string
	GitTokenUser      string
	ImportCache       []string // BuildKit cache specs, see ParseCacheSpec
	ExportCache       []string
	StorageDriver     string
	BuildkitOpts      []string // raw frontend options key=value
	BuildahOpts       []string
	Attestation       string // "", "off", "min" or "max"
	Attest            []string
	Sign              bool
	CosignKey         string
	CosignPasswordEnv string
	Scan              bool
	Harden            bool

	// Environment that Kaniko reads outside the flag set.
	Env Environment
}

// GitOptions is Kaniko's --git value: one key=value per occurrence.
type GitOptions struct {
	Branch            string
	SingleBranch      bool
	RecurseSubmodules bool
	InsecureSkipTLS   bool
}

// Environment is what Kaniko reads from the process environment besides flags.
type Environment struct {
	DockerConfig       string // DOCKER_CONFIG, defaulted to <kaniko dir>/.docker
	GitUsername        string
	GitPassword        string
	GitToken           string
	GitPullMethod      string // "https" (default) or "http"
	BuilderOutput      string // BUILDER_OUTPUT directory
	UpstreamClientType string // UPSTREAM_CLIENT_TYPE
}
