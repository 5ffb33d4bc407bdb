package flagmap

import (
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	"github.com/sirupsen/logrus"
)

// Validate checks an invocation the way Kaniko's command does before it
// resolves the build context: stray arguments, then ValidateFlags, then
// flags kiln refuses. ValidateNameFiles runs after context resolution.
func (inv *Invocation) Validate() error {
	for _, arg := range inv.Positional {
		if arg != "" {
			return usageErrorf("", "unexpected argument %q: executor takes only flags (write a boolean as --flag=false, not --flag false)", arg)
		}
	}
	if err := ValidateFlags(&inv.Options); err != nil {
		return err
	}
	return inv.refuseUnsupported()
}

// ValidateFlags runs the checks Kaniko makes before resolving the context
// (logging, platform, destination, cache; steps 1, 2, 5 and 6) and the
// value checks Kaniko only makes later (labels, snapshot mode, client certs).
func ValidateFlags(o *Options) error {
	if err := ValidateLogging(o); err != nil {
		return err
	}
	if _, err := platforms.Parse(o.CustomPlatform); err != nil || strings.Count(o.CustomPlatform, "/") > 2 {
		return usageErrorf("--custom-platform", "Invalid platform %q for --custom-platform: use os/arch[/variant], e.g. linux/amd64 or linux/arm/v7", o.CustomPlatform)
	}
	if !o.NoPush && len(o.Destinations) == 0 {
		return usageErrorf("--destination", "you must provide --destination, or use --no-push")
	}
	if o.Cache && o.NoPush && o.CacheRepo == "" {
		return usageErrorf("--cache-repo", "cache flags invalid: if using cache with --no-push, specify cache repo with --cache-repo")
	}
	for _, label := range o.Labels {
		if !strings.Contains(label, "=") {
			return usageErrorf("--label", "labels must be of the form key=value, got %s (fix --label %s)", label, label)
		}
	}
	if !contains(Lookup("snapshot-mode").Values, o.SnapshotMode) {
		return usageErrorf("--snapshot-mode", "%s is not a valid snapshot mode; use --snapshot-mode=%s", o.SnapshotMode, strings.Join(Lookup("snapshot-mode").Values, "|"))
	}
	for host, files := range o.RegistryClientCerts {
		if len(strings.Split(files, ",")) != 2 {
			return usageErrorf("--registry-client-cert", "--registry-client-cert %s=%s: expected format %s=/path/to/cert,/path/to/key", host, files, host)
		}
	}
	return validateOtherCommandLines(o)
}

// ValidateLogging checks --verbosity and --log-format (Kaniko's step 1).
func ValidateLogging(o *Options) error {
	if _, err := logrus.ParseLevel(o.Verbosity); err != nil {
		return usageErrorf("--verbosity", "--verbosity=%q is not a log level; use %s", o.Verbosity, strings.Join(Lookup("verbosity").Values, ", "))
	}
	if !contains(Lookup("log-format").Values, o.LogFormat) {
		return usageErrorf("--log-format", "--log-format=%q is not a log format; use %s", o.LogFormat, oneOf(Lookup("log-format").Values))
	}
	return nil
}

// ValidateNameFiles is Kaniko's step 8, after the context and Dockerfile
// are resolved: the name files need a destination to name.
func ValidateNameFiles(o *Options) error {
	if len(o.Destinations) > 0 {
		return nil
	}
	if o.ImageNameDigestFile != "" {
		return usageErrorf("--image-name-with-digest-file", "you must provide --destination if setting ImageNameDigestFile (--image-name-with-digest-file)")
	}
	if o.ImageNameTagDigestFile != "" {
		return usageErrorf("--image-name-tag-with-digest-file", "you must provide --destination if setting ImageNameTagDigestFile (--image-name-tag-with-digest-file)")
	}
	return nil
}

// refuseUnsupported fails for flags kiln cannot honour, but only where
// Kaniko would use them.
func (inv *Invocation) refuseUnsupported() error {
	for _, g := range inv.Given {
		row := g.Flag.Target()
		if row.Name == "bucket" && !bucketUsed(&inv.Options) {
			inv.warn("--bucket is ignored because --context is a local directory (Kaniko ignores it too)")
			continue
		}
		if row.Disposition != Unsupported {
			continue
		}
		if row.Kind == Bool && g.Values[len(g.Values)-1] == "false" {
			continue // --sign=false asks for nothing kiln lacks
		}
		return usageErrorf("--"+row.Name, "--%s is not supported by kiln: %s", row.Name, row.Reason)
	}
	return nil
}

// bucketUsed mirrors Kaniko: a local --context wins over --bucket.
func bucketUsed(o *Options) bool {
	return o.Bucket != "" && (o.Context == "" || strings.Contains(o.Context, "://"))
}

// Notices explains each given flag that has no effect with kiln, once per flag.
func (inv *Invocation) Notices() []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range inv.Given {
		row := g.Flag.Target()
		if row.Disposition != NoOp || seen[row.Name] {
			continue
		}
		last := g.Values[len(g.Values)-1]
		if row.Kind != Multi && last == row.Default {
			continue
		}
		seen[row.Name] = true
		out = append(out, fmt.Sprintf("%s has no effect with kiln: %s", g.Spelling, row.Reason))
	}
	return out
}
