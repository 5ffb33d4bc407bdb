package runner

import (
	"regexp"

	"github.com/kilnbuild/kiln/conformance/golden"
)

// kilnClasses recognise BuildKit's wording of failures and kiln's
// explanations of them (executor/mistakes.go); kiln's other checks reuse
// Kaniko's wording, which golden.ClassifyKaniko already knows.
var kilnClasses = []struct {
	class string
	re    *regexp.Regexp
}{
	{golden.ClassRunFailed, regexp.MustCompile(`(?i)did not complete successfully: exit code: \d+`)},
	{golden.ClassFetchFailed, regexp.MustCompile(`(?i)invalid response status|bad response status|\b404 Not Found\b`)},
	{golden.ClassTargetMissing, regexp.MustCompile(`(?i)target stage "?[^ ]*"? could not be found|--target .*no stage named`)},
	{golden.ClassBaseMissing, regexp.MustCompile(`(?i)failed to resolve source metadata|failed to resolve image|pull access denied`)},
	{golden.ClassUserUnknown, regexp.MustCompile(`(?i)unable to find user|invalid user|no such user|no users found`)},
	{golden.ClassSourceMissing, regexp.MustCompile(`(?i)failed to compute cache key|failed to calculate checksum|": not found|not found in the build context`)},
	{golden.ClassParse, regexp.MustCompile(`(?i)dockerfile parse error|unknown instruction|failed to parse|invalid containerPort|invalid proto`)},
}

// fromNeitherStageNorImage is kiln's message for a COPY --from naming no
// stage and no image it could pull. Kaniko reports only the pull's error:
// an image the registry does not have is a missing base, an unreachable
// registry is another failure.
var fromNeitherStageNorImage = regexp.MustCompile(`no stage is named .*, and as an image it could not be retrieved \((.*)\)`)

// ClassifyKiln maps kiln's error message to a failure class.
func ClassifyKiln(message string) string {
	if m := fromNeitherStageNorImage.FindStringSubmatch(message); m != nil {
		if ClassifyKiln(m[1]) == golden.ClassOther {
			return golden.ClassOther
		}
		return golden.ClassBaseMissing
	}
	for _, c := range kilnClasses {
		if c.re.MatchString(message) {
			return c.class
		}
	}
	return golden.ClassifyKaniko(message)
}

var (
	ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)
	// kiln ends a failed build with cobra's "Error: <message>" line.
	kilnErrorLine = regexp.MustCompile(`(?m)^Error: (.*)$`)
)

// KilnMessage picks kiln's final error line from its output, with harness
// addresses replaced by placeholders as in the goldens.
func KilnMessage(output string, replace map[string]string) string {
	output = ansiEscape.ReplaceAllString(output, "")
	if lines := kilnErrorLine.FindAllStringSubmatch(output, -1); len(lines) > 0 {
		return golden.Placehold(lines[len(lines)-1][1], replace)
	}
	return golden.KanikoMessage(output, replace)
}
