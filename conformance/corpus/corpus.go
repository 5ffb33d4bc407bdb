// Package corpus reads the conformance cases (conformance/cases/<name>/) and
// materialises their build contexts, including the file metadata git cannot
// store (hardlinks, modes, owners, generated large or numerous files).
package corpus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ManifestName is the per-case manifest file; it is never part of the context.
const ManifestName = "case.yaml"

// ServeDir holds files the harness serves over HTTP for ADD <url>; it is not
// part of the build context either.
const ServeDir = "serve"

// Case is one conformance case: a Dockerfile, its context and expectations.
type Case struct {
	Name string `yaml:"-"`
	Dir  string `yaml:"-"`

	Description string `yaml:"description"`
	// Flags are extra executor flags, e.g. --single-snapshot.
	Flags []string `yaml:"flags"`
	// BuildArgs are "NAME=value" or a bare "NAME" (value taken from Env).
	BuildArgs []string          `yaml:"build_args"`
	Env       map[string]string `yaml:"env"`
	Target    string            `yaml:"target"`
	// Dockerfile is relative to the context; default "Dockerfile".
	Dockerfile string `yaml:"dockerfile"`
	// Requires names cases whose images must be pushed first, as
	// cases/<name>, so this case can use them as a base.
	Requires []string `yaml:"requires"`
	// Bases names harness base images the case pulls (busybox, debian).
	Bases []string `yaml:"bases"`
	// Serve maps URL paths to files under serve/; every other path is a 404.
	// The harness passes the server's base URL as build arg HTTP_BASE.
	Serve map[string]string `yaml:"serve"`
	// Files creates or adjusts context entries after copying.
	Files  []FileSpec `yaml:"files"`
	Expect Expect     `yaml:"expect"`
	// Kiln is the conformance level kiln is expected to reach on this case.
	Kiln KilnExpect `yaml:"kiln"`
	// Extended cases are built by the full conformance run (make
	// conformance) only, which keeps make test's run shorter.
	Extended bool `yaml:"extended"`
}

// Conformance levels, each including the ones below it.
const (
	LevelNone    = -1 // not even the same outcome
	LevelOutcome = 0  // L0: same outcome (built/failed, exit code, message class)
	LevelConfig  = 1  // L1: same normalised config
	LevelFiles   = 2  // L2: same flattened filesystem
	LevelLayers  = 3  // L3: same per-layer entry lists
	LevelDigest  = 4  // L4: same image digest
)

// PlainTop is the highest level judged for a build without --reproducible:
// its digest covers build times, so L4 cannot hold.
const PlainTop = LevelLayers

// KilnExpect records the level kiln reaches compared with Kaniko's golden,
// and why when it is below L4. A run fails when kiln drops below it or when
// a level listed in holds stops holding.
type KilnExpect struct {
	Level LevelExpect `yaml:",inline"`
	// Rootless overrides Level for the non-root (rootless BuildKit) run.
	Rootless *LevelExpect `yaml:"rootless"`
	// Plain overrides Level for the run without --reproducible, judged up
	// to PlainTop with times ignored. Without it Level applies, capped at
	// PlainTop.
	Plain *LevelExpect `yaml:"plain"`
}

// LevelExpect is one expected level with its reason.
type LevelExpect struct {
	// Level is "L0".."L4" or "none"; empty means L4. Levels are a ladder:
	// a case is at Ln when L0..Ln all hold.
	Level string `yaml:"level"`
	// Holds lists higher levels that hold on their own (e.g. the same
	// filesystem while the config still differs); they must keep holding.
	Holds  []string `yaml:"holds"`
	Reason string   `yaml:"reason"`
	// Deliberate, below the top level, says why kiln differs on purpose
	// (a Kaniko defect it does not reproduce, a form Docker refuses);
	// empty for a difference kiln would remove if it could.
	Deliberate string `yaml:"deliberate"`
}

// Expectation is a parsed LevelExpect.
type Expectation struct {
	Level      int
	Holds      []int
	Reason     string
	Deliberate string
}

// For returns the expectation for a root or rootless run.
func (k KilnExpect) For(rootless bool) Expectation {
	e := k.Level
	if rootless && k.Rootless != nil {
		e = *k.Rootless
	}
	return e.parse()
}

// ForPlain returns the expectation for the run without --reproducible:
// Plain, or else Level, capped at PlainTop (where no reason is needed).
func (k KilnExpect) ForPlain() Expectation {
	e := k.Level
	if k.Plain != nil {
		e = *k.Plain
	}
	out := e.parse()
	out.Holds = slices.DeleteFunc(out.Holds, func(l int) bool { return l > PlainTop })
	if out.Level >= PlainTop {
		out.Level, out.Reason, out.Deliberate = PlainTop, "", ""
	}
	return out
}

// parse reads a validated LevelExpect.
func (e LevelExpect) parse() Expectation {
	level, _ := ParseLevel(e.Level)
	out := Expectation{Level: level, Reason: e.Reason, Deliberate: e.Deliberate}
	for _, h := range e.Holds {
		l, _ := ParseLevel(h)
		out.Holds = append(out.Holds, l)
	}
	return out
}

// ParseLevel reads "L0".."L4", "none", or "" (L4).
func ParseLevel(s string) (int, error) {
	switch s {
	case "":
		return LevelDigest, nil
	case "none":
		return LevelNone, nil
	}
	if len(s) == 2 && s[0] == 'L' && s[1] >= '0' && s[1] <= '4' {
		return int(s[1] - '0'), nil
	}
	return 0, fmt.Errorf("level %q must be L0, L1, L2, L3, L4 or none", s)
}

// LevelName is the manifest spelling of a level.
func LevelName(level int) string {
	if level < LevelOutcome {
		return "none"
	}
	return fmt.Sprintf("L%d", level)
}

// validate checks an expectation for a run judged up to level top (L4, or
// PlainTop without --reproducible); an empty level means top.
func (e LevelExpect) validate(top int) error {
	level, err := ParseLevel(e.Level)
	if err != nil {
		return err
	}
	if e.Level != "" && level > top {
		return fmt.Errorf("level %s is not judged here: the highest level is %s", e.Level, LevelName(top))
	}
	level = min(level, top)
	if level < top && strings.TrimSpace(e.Reason) == "" {
		return fmt.Errorf("level %s needs a reason (why kiln does not reach %s here)", LevelName(level), LevelName(top))
	}
	if level == top && e.Deliberate != "" {
		return fmt.Errorf("deliberate: kiln reaches %s here, so there is no deviation to explain", LevelName(top))
	}
	for _, h := range e.Holds {
		held, err := ParseLevel(h)
		if err != nil {
			return fmt.Errorf("holds: %w", err)
		}
		if held <= level || held == LevelDigest {
			return fmt.Errorf("holds: %s must be above level %s and below L4 (L4 implies every level)", h, LevelName(level))
		}
	}
	return nil
}

// FileSpec describes one context entry with metadata git cannot carry.
// Exactly one of Symlink, Hardlink, Size, Count, Tar, Dir may create the entry;
// with none of them the entry must already exist and only Mode/Owner apply.
type FileSpec struct {
	Path     string `yaml:"path"`
	Symlink  string `yaml:"symlink"`
	Hardlink string `yaml:"hardlink"`
	Dir      bool   `yaml:"dir"`
	// Size generates a regular file of that many pseudo-random bytes.
	Size int64 `yaml:"size"`
	// Count generates a directory holding that many small files.
	Count int `yaml:"count"`
	// Tar builds an archive of a context directory (which is then removed
	// from the context unless KeepSource is set).
	Tar        string `yaml:"tar"`
	Gzip       bool   `yaml:"gzip"`
	KeepSource bool   `yaml:"keep_source"`
	// Mode is octal, e.g. "4755".
	Mode string `yaml:"mode"`
	// Owner is "uid:gid".
	Owner string `yaml:"owner"`
}

// Expect is the outcome the case is written to produce with Kaniko.
type Expect struct {
	// Outcome is "built" (default) or "failed".
	Outcome string `yaml:"outcome"`
	// ExitCode is the expected executor exit code for failures.
	ExitCode int `yaml:"exit_code"`
	// Error is a regular expression the failure message must match.
	Error string `yaml:"error"`
}

// Outcome values.
const (
	OutcomeBuilt  = "built"
	OutcomeFailed = "failed"
)

var knownBases = map[string]bool{"busybox": true, "debian": true}

var caseName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Load reads every case below dir, sorted by name.
func Load(dir string) ([]*Case, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading corpus %s: %w", dir, err)
	}
	var cases []*Case
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c, err := LoadCase(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		cases = append(cases, c)
	}
	byName := map[string]*Case{}
	for _, c := range cases {
		byName[c.Name] = c
	}
	for _, c := range cases {
		for _, r := range c.Requires {
			if byName[r] == nil {
				return nil, fmt.Errorf("%s: requires unknown case %q", c.manifestPath(), r)
			}
		}
	}
	if _, err := Order(cases); err != nil {
		return nil, err
	}
	return cases, nil
}

// LoadCase reads one case directory.
func LoadCase(dir string) (*Case, error) {
	c := &Case{Name: filepath.Base(dir), Dir: dir}
	data, err := os.ReadFile(c.manifestPath())
	if err != nil {
		return nil, fmt.Errorf("case %s: %w (every case needs a %s)", c.Name, err, ManifestName)
	}
	if err := Parse(data, c); err != nil {
		return nil, fmt.Errorf("%s: %w", c.manifestPath(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, c.Dockerfile)); err != nil {
		return nil, fmt.Errorf("%s: dockerfile %q is missing", c.manifestPath(), c.Dockerfile)
	}
	for urlPath, file := range c.Serve {
		if _, err := os.Stat(filepath.Join(dir, ServeDir, file)); err != nil {
			return nil, fmt.Errorf("%s: serve %q: file %s/%s is missing", c.manifestPath(), urlPath, ServeDir, file)
		}
	}
	return c, nil
}

func (c *Case) manifestPath() string { return filepath.Join(c.Dir, ManifestName) }

// Parse decodes a manifest into c (whose Name must be set), applies defaults
// and validates it. Unknown keys are errors so typos do not go unnoticed.
func Parse(data []byte, c *Case) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("invalid manifest: %w", err)
	}
	if !caseName.MatchString(c.Name) {
		return fmt.Errorf("case name %q must be lower-case letters, digits and dashes", c.Name)
	}
	if c.Dockerfile == "" {
		c.Dockerfile = "Dockerfile"
	}
	switch c.Expect.Outcome {
	case "":
		c.Expect.Outcome = OutcomeBuilt
	case OutcomeBuilt, OutcomeFailed:
	default:
		return fmt.Errorf("expect.outcome %q must be %q or %q", c.Expect.Outcome, OutcomeBuilt, OutcomeFailed)
	}
	if c.Expect.Outcome == OutcomeBuilt && (c.Expect.ExitCode != 0 || c.Expect.Error != "") {
		return fmt.Errorf("expect.exit_code and expect.error only apply to outcome %q", OutcomeFailed)
	}
	if c.Expect.Outcome == OutcomeFailed && c.Expect.ExitCode == 0 {
		c.Expect.ExitCode = 1
	}
	if c.Expect.Error != "" {
		if _, err := regexp.Compile(c.Expect.Error); err != nil {
			return fmt.Errorf("expect.error: %w", err)
		}
	}
	for _, b := range c.Bases {
		if !knownBases[b] {
			return fmt.Errorf("bases: unknown base image %q (known: busybox, debian)", b)
		}
	}
	for _, a := range c.BuildArgs {
		if strings.HasPrefix(a, "=") || a == "" {
			return fmt.Errorf("build_args: %q needs a name", a)
		}
	}
	if err := c.Kiln.Level.validate(LevelDigest); err != nil {
		return fmt.Errorf("kiln: %w", err)
	}
	if c.Kiln.Rootless != nil {
		if err := c.Kiln.Rootless.validate(LevelDigest); err != nil {
			return fmt.Errorf("kiln.rootless: %w", err)
		}
	}
	if c.Kiln.Plain != nil {
		if err := c.Kiln.Plain.validate(PlainTop); err != nil {
			return fmt.Errorf("kiln.plain: %w", err)
		}
	}
	for i := range c.Files {
		if err := c.Files[i].validate(); err != nil {
			return fmt.Errorf("files[%d] (%s): %w", i, c.Files[i].Path, err)
		}
	}
	return nil
}

func (f *FileSpec) validate() error {
	if f.Path == "" || filepath.IsAbs(f.Path) || strings.HasPrefix(filepath.Clean(f.Path), "..") {
		return fmt.Errorf("path must be relative to the context")
	}
	kinds := 0
	for _, set := range []bool{f.Symlink != "", f.Hardlink != "", f.Dir, f.Size > 0, f.Count > 0, f.Tar != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		return fmt.Errorf("set only one of symlink, hardlink, dir, size, count, tar")
	}
	if f.Mode != "" {
		if _, err := parseMode(f.Mode); err != nil {
			return err
		}
	}
	if f.Owner != "" {
		if _, _, err := parseOwner(f.Owner); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the case with the given name.
func Get(cases []*Case, name string) (*Case, bool) {
	for _, c := range cases {
		if c.Name == name {
			return c, true
		}
	}
	return nil, false
}

// Order returns the cases with every case after the cases it requires.
func Order(cases []*Case) ([]*Case, error) {
	byName := map[string]*Case{}
	for _, c := range cases {
		byName[c.Name] = c
	}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var out []*Case
	var visit func(c *Case) error
	visit = func(c *Case) error {
		switch state[c.Name] {
		case visiting:
			return fmt.Errorf("case %s: requires forms a cycle", c.Name)
		case done:
			return nil
		}
		state[c.Name] = visiting
		reqs := append([]string(nil), c.Requires...)
		sort.Strings(reqs)
		for _, r := range reqs {
			if dep := byName[r]; dep != nil {
				if err := visit(dep); err != nil {
					return err
				}
			}
		}
		state[c.Name] = done
		out = append(out, c)
		return nil
	}
	for _, c := range cases {
		if err := visit(c); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Closure returns the named cases plus everything they require, ordered.
func Closure(cases []*Case, names []string) ([]*Case, error) {
	want := map[string]bool{}
	var add func(name string) error
	add = func(name string) error {
		c, ok := Get(cases, name)
		if !ok {
			return fmt.Errorf("unknown case %q", name)
		}
		if want[name] {
			return nil
		}
		want[name] = true
		for _, r := range c.Requires {
			if err := add(r); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := add(n); err != nil {
			return nil, err
		}
	}
	var picked []*Case
	for _, c := range cases {
		if want[c.Name] {
			picked = append(picked, c)
		}
	}
	return Order(picked)
}

// WithoutExtended drops the extended cases from cases (in order), except
// those the others require.
func WithoutExtended(cases []*Case) ([]*Case, error) {
	var names []string
	for _, c := range cases {
		if !c.Extended {
			names = append(names, c.Name)
		}
	}
	return Closure(cases, names)
}

// NeedsBase reports whether any of the cases pulls the named base image.
func NeedsBase(cases []*Case, base string) bool {
	for _, c := range cases {
		for _, b := range c.Bases {
			if b == base {
				return true
			}
		}
	}
	return false
}
