// Package golden defines the conformance golden files (golden/<case>.json) and
// produces them by running Kaniko's reference executor on the corpus.
package golden

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kilnbuild/kiln/conformance/inspect"
)

// Golden is what Kaniko produced for one case with --reproducible.
type Golden struct {
	Case   string `json:"case"`
	Kaniko string `json:"kaniko"`
	// Args are the case's own executor arguments (harness flags omitted).
	Args []string `json:"args,omitempty"`
	// Bases maps each base image the case could pull (repository:tag in the
	// harness registry) to the manifest digest Kaniko built from.
	Bases   map[string]string `json:"bases,omitempty"`
	Outcome Outcome           `json:"outcome"`
	// Deterministic is false when two Kaniko runs disagreed; Differences
	// then names what differed and the image is the first run's.
	Deterministic bool           `json:"deterministic"`
	Differences   []string       `json:"differences,omitempty"`
	Image         *inspect.Image `json:"image,omitempty"`
}

// Outcome is how the build ended.
type Outcome struct {
	// Result is corpus.OutcomeBuilt or corpus.OutcomeFailed.
	Result   string `json:"result"`
	ExitCode int    `json:"exit_code,omitempty"`
	// Class is a builder-neutral failure class (see Classify).
	Class string `json:"class,omitempty"`
	// Message is Kaniko's error line with harness addresses replaced.
	Message string `json:"message,omitempty"`
}

// Failure classes shared by every builder's outcome.
const (
	ClassRunFailed     = "run-failed"
	ClassFetchFailed   = "fetch-failed"
	ClassSourceMissing = "source-missing"
	ClassParse         = "dockerfile-invalid"
	ClassTargetMissing = "target-missing"
	ClassBaseMissing   = "base-missing"
	ClassUserUnknown   = "user-unknown"
	ClassOther         = "other"
)

var kanikoClasses = []struct {
	class string
	re    *regexp.Regexp
}{
	{ClassRunFailed, regexp.MustCompile(`(?i)failed to execute command: waiting for process to exit|exit status \d+`)},
	{ClassFetchFailed, regexp.MustCompile(`(?i)invalid response status|downloading .*http|status code 404|\b404\b`)},
	{ClassTargetMissing, regexp.MustCompile(`(?i)target stage .* could not be found|failed to reach target|not a valid target build stage`)},
	{ClassBaseMissing, regexp.MustCompile(`(?i)retrieving image|MANIFEST_UNKNOWN|NAME_UNKNOWN|image not found`)},
	{ClassUserUnknown, regexp.MustCompile(`(?i)does not exist on the system|unknown user|no such user`)},
	{ClassSourceMissing, regexp.MustCompile(`(?i)no such file or directory|failed to get files used from context|no source files`)},
	{ClassParse, regexp.MustCompile(`(?i)parse|unknown instruction|dockerfile|invalid protocol`)},
}

// ClassifyKaniko maps Kaniko's error text to a failure class.
func ClassifyKaniko(message string) string {
	for _, c := range kanikoClasses {
		if c.re.MatchString(message) {
			return c.class
		}
	}
	return ClassOther
}

var errorLine = regexp.MustCompile(`(?m)^(error .*|.*level=(?:error|fatal).*)$`)

// KanikoMessage picks Kaniko's final error line from its output and replaces
// the given harness addresses by placeholders, so goldens stay stable.
func KanikoMessage(output string, replace map[string]string) string {
	lines := errorLine.FindAllString(output, -1)
	msg := ""
	if len(lines) > 0 {
		msg = lines[len(lines)-1]
	} else if trimmed := strings.TrimSpace(output); trimmed != "" {
		all := strings.Split(trimmed, "\n")
		msg = all[len(all)-1]
	}
	return Placehold(msg, replace)
}

// Placehold replaces each harness address in msg by its placeholder and trims it.
func Placehold(msg string, replace map[string]string) string {
	for from, to := range replace {
		if from != "" {
			msg = strings.ReplaceAll(msg, from, to)
		}
	}
	return strings.TrimSpace(msg)
}

// StaleBases lists the base images whose digest here differs from the one
// the golden was made with; any entry means the golden is stale, not that a
// builder changed.
func StaleBases(g *Golden, current map[string]string) []string {
	if len(g.Bases) == 0 {
		return []string{"the golden records no base image digests (made before they were recorded)"}
	}
	var stale []string
	for _, repo := range slices.Sorted(maps.Keys(g.Bases)) {
		if now := current[repo]; now != g.Bases[repo] {
			stale = append(stale, fmt.Sprintf("%s is %s here, the golden was made from %s", repo, cmp.Or(now, "missing"), g.Bases[repo]))
		}
	}
	return stale
}

// Path is the golden file of a case.
func Path(dir, caseName string) string { return filepath.Join(dir, caseName+".json") }

// Read loads a golden file.
func Read(dir, caseName string) (*Golden, error) {
	data, err := os.ReadFile(Path(dir, caseName))
	if err != nil {
		return nil, fmt.Errorf("golden for case %s: %w (run make golden)", caseName, err)
	}
	var g Golden
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("golden %s: %w", Path(dir, caseName), err)
	}
	return &g, nil
}

// Write stores a golden file.
func Write(dir string, g *Golden) error {
	data, err := inspect.Marshal(g)
	if err != nil {
		return err
	}
	return os.WriteFile(Path(dir, g.Case), data, 0o644)
}

// Compare lists what differs between two inspected images, coarsest first.
func Compare(a, b *inspect.Image) []string {
	var diffs []string
	if a.ManifestDigest == b.ManifestDigest {
		return nil
	}
	if a.ConfigDigest != b.ConfigDigest {
		diffs = append(diffs, "config_digest")
	}
	ja, _ := json.Marshal(a.Config)
	jb, _ := json.Marshal(b.Config)
	if string(ja) != string(jb) {
		diffs = append(diffs, "config")
	}
	if len(a.Layers) != len(b.Layers) {
		return append(diffs, fmt.Sprintf("layer count %d vs %d", len(a.Layers), len(b.Layers)))
	}
	for i := range a.Layers {
		la, lb := a.Layers[i], b.Layers[i]
		if la.DiffID != lb.DiffID {
			d := fmt.Sprintf("layer %d diff_id", i)
			if la.EntriesDigest != lb.EntriesDigest {
				d += ": " + describeEntryDiff(la.Entries, lb.Entries)
			} else {
				d += " (same entries; tar bytes differ)"
			}
			diffs = append(diffs, d)
		}
	}
	if a.FilesystemDigest != b.FilesystemDigest {
		diffs = append(diffs, "filesystem")
	}
	if len(diffs) == 0 {
		diffs = append(diffs, "manifest only (compressed bytes)")
	}
	return diffs
}

// describeEntryDiff names up to three differing paths.
func describeEntryDiff(a, b []inspect.Entry) string {
	seen := map[string]string{}
	for _, e := range a {
		data, _ := json.Marshal(e)
		seen[e.Path] = string(data)
	}
	var paths []string
	for _, e := range b {
		data, _ := json.Marshal(e)
		if seen[e.Path] != string(data) {
			paths = append(paths, e.Path)
		}
		delete(seen, e.Path)
	}
	for p := range seen {
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		return "entry order"
	}
	if len(paths) > 3 {
		paths = append(paths[:3], "...")
	}
	return "entries " + strings.Join(paths, ", ")
}

func regexpMatch(pattern, s string) bool {
	re, err := regexp.Compile(pattern)
	return err == nil && re.MatchString(s)
}
