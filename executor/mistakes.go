package executor

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/moby/buildkit/solver/errdefs"
)

// A mistake is a user error reported in terms of BuildKit's internals
// (cache keys, refs, LLB) or of a step the user did not ask for; explain
// says it the way Kaniko does, naming the instruction, the file and the
// fix, or returns "" when the report is not this mistake after all. All of
// them are in this one table.
type mistake struct {
	report  *regexp.Regexp
	explain func(match []string, at buildSite) string
}

// buildSite is what a message may name: the instruction BuildKit pointed
// at (as written, "" when unknown), the --context as given, and the
// Dockerfile.
type buildSite struct {
	instruction string
	context     string
	dockerfile  *compat.Dockerfile
	// written is the Dockerfile as the user wrote it; BuildKit's errors
	// quote kiln's rewritten copy.
	written []byte
}

func (s buildSite) prefix() string {
	if s.instruction == "" {
		return ""
	}
	return s.instruction + ": "
}

var mistakes = []mistake{
	{
		// COPY/ADD of a path the context lacks (or .dockerignore excludes).
		report: regexp.MustCompile(`failed to calculate checksum of ref \S+ "/?([^"]*)": not found`),
		explain: func(m []string, at buildSite) string {
			return fmt.Sprintf("%s%s not found in the build context %s: source paths are relative to the context; check the name and .dockerignore",
				at.prefix(), m[1], at.context)
		},
	},
	{
		// COPY --from naming neither a stage nor a pullable image.
		report: regexp.MustCompile(`failed to resolve source metadata for (\S+?):? .*(?:not found|pull access denied|insufficient_scope|unauthorized)`),
		explain: func(m []string, at buildSite) string {
			return fmt.Sprintf("%s%s is neither a stage of the Dockerfile nor an image that could be pulled: check the --from name",
				at.prefix(), strings.TrimSuffix(m[1], ":latest"))
		},
	},
	{
		// COPY --from naming no stage: Kaniko then takes it for an image.
		report: regexp.MustCompile(`retrieving base image (\S+): (.*)$`),
		explain: func(m []string, at buildSite) string {
			if at.dockerfile == nil || !copiesFromImage(at.dockerfile, m[1]) {
				return ""
			}
			return fmt.Sprintf("COPY --from=%s: no stage is named %s, and as an image it could not be retrieved (%s): check the --from name",
				m[1], m[1], m[2])
		},
	},
	{
		// A RUN whose program the stage lacks; Kaniko fails starting it too.
		report: regexp.MustCompile(`RUN could not start its command: (.*)$`),
		explain: func(m []string, at buildSite) string {
			return fmt.Sprintf("%sstarting command: %s: the stage has no such program (a scratch stage has no /bin/sh); use a base image that has it, or COPY it in first",
				at.prefix(), m[1])
		},
	},
	{
		// COPY/ADD of a symlink in the context that leads to itself.
		report: regexp.MustCompile(`failed to calculate checksum of ref \S+: too many links`),
		explain: func(m []string, at buildSite) string {
			return fmt.Sprintf("%sa source in the build context %s is a symlink loop (too many levels of links): fix the link, or exclude it in .dockerignore",
				at.prefix(), at.context)
		},
	},
	{
		// ${NAME:?message} or ${NAME?message} on an unset (or empty)
		// variable: the expansion is right, the value is missing.
		report: regexp.MustCompile(`failed to process "((?:[^"\\]|\\.)*)": (\w+): (.*)$`),
		explain: func(m []string, at buildSite) string {
			if !regexp.MustCompile(`\$\{` + regexp.QuoteMeta(m[2]) + `:?\?`).MatchString(m[1]) {
				return ""
			}
			return fmt.Sprintf("%s%s needs a value (%s: %s): give it one with --build-arg %s=... or an ARG or ENV before this instruction",
				at.prefix(), m[2], m[2], m[3], m[2])
		},
	},
	{
		// A ${...} the Dockerfile's word expansion cannot read.
		report: regexp.MustCompile(`failed to process "([^"]*)": (.*)$`),
		explain: func(m []string, at buildSite) string {
			return fmt.Sprintf("%s%q is not a valid variable expansion (%s): write $NAME, ${NAME}, ${NAME:-default} or ${NAME:+alternative}, and \\$ for a literal $",
				at.prefix(), m[1], strings.ReplaceAll(m[2], "\uFFFD", "end of text"))
		},
	},
	{
		// A context directory the executor's user cannot read (files are
		// caught as they are sent, see contextread.go).
		report: regexp.MustCompile(`(?:open|lstat|stat) (\S+): permission denied`),
		explain: func(m []string, at buildSite) string {
			dir := strings.TrimPrefix(at.context, "dir://")
			if !strings.HasPrefix(m[1], strings.TrimSuffix(dir, "/")+"/") {
				return "" // not the context's: the daemon's own, say
			}
			return at.prefix() + cannotReadInContext(m[1], at.context, "")
		},
	},
	{
		// The filesystem holding the private state or work dir filled up
		// while BuildKit or kiln wrote to it; a RUN's own full disk is the
		// RUN's failure and keeps its exit code.
		report: regexp.MustCompile(`(/\S*?)/kiln-build(?:kit)?-[^/\s]+/\S*: no space left on device`),
		explain: func(m []string, at buildSite) string {
			return fmt.Sprintf("%sno space left on device in %s, which holds this build's BuildKit state and work files: free space there or give the build a larger volume (the Kaniko dir when it is writable, else $XDG_RUNTIME_DIR for the state and $TMPDIR for work files)",
				at.prefix(), m[1])
		},
	},
}

// explainMistake returns err as the user-facing message when it is one of
// the mistakes, else err unchanged. The exit code is Kaniko's 1.
func explainMistake(err error, at buildSite) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if at.instruction == "" {
		at.instruction = failedInstruction(err, at.written)
	}
	for _, m := range mistakes {
		if match := m.report.FindStringSubmatch(msg); match != nil {
			if explained := m.explain(match, at); explained != "" {
				return &BuildError{Err: errors.New(explained), Code: 1}
			}
		}
	}
	return err
}

// copiesFromImage reports whether ref is a COPY --from value naming no
// stage and no FROM uses it as a base image.
func copiesFromImage(d *compat.Dockerfile, ref string) bool {
	copied := false
	for _, s := range d.Stages {
		if s.BaseStage < 0 && s.Base == ref {
			return false
		}
		copied = copied || slices.Contains(s.CopyFrom, ref)
	}
	return copied
}

// contextName is the build context as the user gave it, without the
// credentials a git or https URL may carry.
func contextName(opts *flagmap.Options) string {
	name := opts.Context
	if name == "" {
		name = opts.Bucket
	}
	if u, err := url.Parse(name); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return name
}

// failedInstruction is the Dockerfile text BuildKit's error points at.
func failedInstruction(err error, written []byte) string {
	for _, src := range errdefs.Sources(err) {
		if src.Info == nil || len(src.Ranges) == 0 || src.Ranges[0].Start == nil {
			continue
		}
		first, last := int(src.Ranges[0].Start.Line), int(src.Ranges[0].Start.Line)
		if src.Ranges[0].End != nil {
			last = int(src.Ranges[0].End.Line)
		}
		if text, ok := linesOf(src.Info.Data, first, last); ok {
			if asWritten, ok := writtenLines(written, src.Info.Data, first, last); ok {
				text = asWritten
			}
			return helper.OneLine(text)
		}
	}
	return ""
}

// linesOf joins lines first to last (from 1) of dt.
func linesOf(dt []byte, first, last int) (string, bool) {
	lines := strings.Split(string(dt), "\n")
	if first < 1 || last > len(lines) || first > last {
		return "", false
	}
	return strings.Join(lines[first-1:last], " "), true
}

// writtenLines is lines first to last of the rewritten Dockerfile as the
// user wrote them, where every one of them comes from a line of written.
func writtenLines(written, rewritten []byte, first, last int) (string, bool) {
	if written == nil {
		return "", false
	}
	origins := compat.LineOrigins(written, rewritten)
	if first < 1 || last > len(origins) || origins[first-1] == 0 || origins[last-1] == 0 {
		return "", false
	}
	return linesOf(written, origins[first-1], origins[last-1])
}
