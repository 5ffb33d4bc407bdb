package flagmap

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/platforms"
	"github.com/spf13/pflag"
)

// ErrHelp is returned by Parse when -h or --help was given.
var ErrHelp = pflag.ErrHelp

// DefaultKanikoDir is Kaniko's work directory.
const DefaultKanikoDir = "/kaniko"

// dockerHubRegistry is the key Kaniko files --registry-mirror under.
const dockerHubRegistry = "index.docker.io"

// Invocation is one parsed command line with its environment.
type Invocation struct {
	Options    Options
	Given      []Given  // every flag given, in command-line order, then environment-supplied ones
	Positional []string // arguments that are not flags (Kaniko tolerates empty ones)
	Warnings   []string // deprecations and other notices, to be logged as warnings
	// Getenv is the environment the invocation was parsed with; values read
	// at build time (--secret env=) come from it too.
	Getenv func(string) (string, bool)

	valueErr *UsageError // first bad flag value, worded without secrets
}

// Given is one flag spelling as the user supplied it.
type Given struct {
	Flag     *Flag    // the row as typed; Flag.Target() owns the value
	Spelling string   // "--snapshotMode", or "env KANIKO_NO_PUSH"
	Values   []string // each occurrence verbatim; may hold secrets, print Redacted()
}

// Redacted returns Values with secrets replaced by "***".
func (g Given) Redacted() []string {
	out := make([]string, len(g.Values))
	for i, v := range g.Values {
		out[i] = redact(g.Flag.Target().Redact, v)
	}
	return out
}

func redact(rule Redaction, v string) string {
	switch rule {
	case RedactAfterEquals:
		if name, _, ok := strings.Cut(v, "="); ok {
			return name + "=***"
		}
	case RedactURLUserinfo:
		return redactUserinfo(v)
	}
	return v
}

// redactUserinfo hides credentials in "scheme://user:pass@host/..." and in
// each "key=scheme://..." part of a registry map.
func redactUserinfo(v string) string {
	parts := strings.Split(v, ";")
	for i, part := range parts {
		prefix, rest := "", part
		if k, val, ok := strings.Cut(part, "="); ok && !strings.Contains(k, "://") {
			prefix, rest = k+"=", val
		}
		scheme, after, ok := strings.Cut(rest, "://")
		if !ok {
			scheme, after = "", rest
		}
		at := strings.LastIndex(strings.SplitN(after, "/", 2)[0], "@")
		if at < 0 {
			continue
		}
		if scheme != "" {
			scheme += "://"
		}
		parts[i] = prefix + scheme + "***@" + after[at+1:]
	}
	return strings.Join(parts, ";")
}

// UsageError is a bad command line or environment: one line, exit code 1.
type UsageError struct {
	Flag string // the flag or variable at fault, e.g. "--label" or "SOURCE_DATE_EPOCH"
	Msg  string
}

func (e *UsageError) Error() string { return e.Msg }

// ExitCode is Kaniko's exit code for usage errors.
func (e *UsageError) ExitCode() int { return 1 }

func usageErrorf(flag, format string, args ...any) *UsageError {
	return &UsageError{Flag: flag, Msg: Printable(fmt.Sprintf(format, args...))}
}

// Printable escapes what would break a one-line message or a terminal:
// control characters (a newline in a flag value) and invalid UTF-8.
func Printable(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], string(utf8.RuneError)):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unicode.IsPrint(r) && r != ' ':
			b.WriteString(strings.Trim(strconv.QuoteRune(r), "'"))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Parse turns Kaniko's command line (without the program name) and its
// environment into an Invocation, applying the environment in Kaniko's
// order. It does not validate; see ValidateFlags and ValidateNameFiles.
func Parse(args []string, getenv func(string) (string, bool)) (*Invocation, error) {
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	inv := &Invocation{Getenv: getenv}
	fs := newFlagSet(&inv.Options, inv.warn, inv.record)
	for _, f := range flagValues(fs) {
		f.fail = inv.failValue
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, ErrHelp
		}
		if inv.valueErr != nil {
			return nil, inv.valueErr
		}
		return nil, parseError(err)
	}
	inv.Positional = fs.Args()
	inv.warnDeprecated()
	if err := inv.applyEnvironment(getenv); err != nil {
		return nil, err
	}
	return inv, nil
}

// newFlagSet registers every table row on a fresh flag set bound to opts,
// with Kaniko's defaults already applied.
func newFlagSet(opts *Options, warn func(string), record func(*Flag, string)) *pflag.FlagSet {
	fs := pflag.NewFlagSet("executor", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for i := range Table {
		row := &Table[i]
		if row.EnvOnly {
			continue
		}
		target := row.Target()
		field := target.Field(opts)
		if row.AliasOf == "" && row.Default != "" && row.Kind != GitKind {
			if err := setField(row, field, row.Default, warn); err != nil {
				panic(fmt.Sprintf("flag table: default of --%s: %v", row.Name, err))
			}
		}
		value := &fieldValue{spelling: row, target: target, field: field, warn: warn, record: record}
		f := fs.VarPF(value, row.Name, row.Shorthand, row.Usage)
		if row.Kind == Bool {
			f.NoOptDefVal = "true"
		}
		if row.Bare != "" {
			f.NoOptDefVal = row.Bare
		}
		f.Hidden = row.Hidden
	}
	return fs
}

// parseError rewrites pflag's errors into one-line usage errors with a fix.
func parseError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if hint, ok := renamedFlags[name]; ok {
			return usageErrorf("--"+name, "unknown flag: --%s; %s", name, hint)
		}
		return usageErrorf("--"+name, "unknown flag: --%s; run 'executor --help' to list the accepted flags", name)
	}
	if strings.HasPrefix(msg, "unknown shorthand flag") {
		return usageErrorf("", "%s; the short flags are -f -c -d -v -b -t, run 'executor --help' for the rest", msg)
	}
	if strings.HasPrefix(msg, "flag needs an argument") {
		return usageErrorf("", "%s; give it as --flag=value or --flag value", msg)
	}
	return usageErrorf("", "%s", msg)
}

// renamedFlags are spellings older Kaniko releases or tutorials used.
var renamedFlags = map[string]string{
	"insecure-skip-tls-verify": "Kaniko split it into --skip-tls-verify (no certificate check) and --insecure (plain HTTP)",
}

func (inv *Invocation) warn(msg string) { inv.Warnings = append(inv.Warnings, msg) }

func (inv *Invocation) failValue(err *UsageError) {
	if inv.valueErr == nil {
		inv.valueErr = err
	}
}

func flagValues(fs *pflag.FlagSet) []*fieldValue {
	var out []*fieldValue
	fs.VisitAll(func(f *pflag.Flag) { out = append(out, f.Value.(*fieldValue)) })
	return out
}

// record appends a command-line value to Given, to the last entry when it
// has the same spelling: merging with an earlier one would lose which of
// two spellings of a flag came last.
func (inv *Invocation) record(row *Flag, value string) {
	spelling := "--" + row.Name
	if n := len(inv.Given); n > 0 && inv.Given[n-1].Spelling == spelling {
		inv.Given[n-1].Values = append(inv.Given[n-1].Values, value)
		return
	}
	inv.Given = append(inv.Given, Given{Flag: row, Spelling: spelling, Values: []string{value}})
}

// lastValue is the last value the command line gave for row or any alias of it.
func (inv *Invocation) lastValue(row *Flag) (string, bool) {
	for i := len(inv.Given) - 1; i >= 0; i-- {
		g := inv.Given[i]
		if g.Flag.Target() == row && !strings.HasPrefix(g.Spelling, "env ") {
			return g.Values[len(g.Values)-1], true
		}
	}
	return "", false
}

func (inv *Invocation) warnDeprecated() {
	warned := map[string]bool{}
	for _, g := range inv.Given {
		if g.Flag.AliasOf != "" && !warned[g.Spelling] {
			warned[g.Spelling] = true
			inv.warn(fmt.Sprintf("Flag --%s is deprecated. Use: --%s", g.Flag.Name, g.Flag.AliasOf))
		}
	}
}

// applyEnvironment follows Kaniko's step 2 (mirror, no-push, registry map,
// mirrors folded into the map, platform default), then step 4 (bare
// build args), then kiln's own variables.
func (inv *Invocation) applyEnvironment(getenv func(string) (string, bool)) error {
	o := &inv.Options
	for i := range Table {
		row := &Table[i]
		if row.Env == "" {
			continue
		}
		val, ok := getenv(row.Env)
		if !ok {
			continue
		}
		if err := inv.applyEnv(row, val); err != nil {
			return err
		}
	}
	for _, mirror := range o.RegistryMirrors {
		if o.RegistryMaps == nil {
			o.RegistryMaps = map[string][]string{}
		}
		o.RegistryMaps[dockerHubRegistry] = append(o.RegistryMaps[dockerHubRegistry], mirror)
	}
	if o.CustomPlatform == "" {
		o.CustomPlatform = DefaultPlatform()
	}
	for i, arg := range o.BuildArgs {
		if !strings.Contains(arg, "=") {
			val, _ := getenv(arg)
			o.BuildArgs[i] = arg + "=" + val
		}
	}
	if err := inv.readEnvironment(getenv); err != nil {
		return err
	}
	return applyOtherCommandLines(o)
}

func (inv *Invocation) applyEnv(row *Flag, val string) error {
	if row.EnvOnly {
		if _, err := strconv.ParseBool(val); err != nil {
			inv.warn(fmt.Sprintf("%s=%q is not true or false; it has no effect with kiln anyway", row.Env, val))
		}
		inv.Given = append(inv.Given, Given{Flag: row, Spelling: "env " + row.Env, Values: []string{val}})
		return nil
	}
	field := row.Field(&inv.Options)
	noWarn := func(string) {}
	switch row.EnvRule {
	case EnvDefault:
		if _, given := inv.lastValue(row); given {
			return nil
		}
		if err := setField(row, field, val, noWarn); err != nil {
			*field.(*bool) = false
			inv.warn(fmt.Sprintf("%s=%q is not true or false; treating it as false like the Kaniko fork does", row.Env, val))
		}
	case EnvOverride:
		if err := setField(row, field, val, inv.warn); err != nil {
			if row.Kind != Bool {
				return usageErrorf(row.Env, "%s=%q: %v", row.Env, redact(row.Redact, val), err)
			}
			// Kaniko discards the parse error and uses false.
			*field.(*bool) = false
			inv.warn(fmt.Sprintf("%s=%q is not true or false; treating it as false like Kaniko does", row.Env, val))
		}
	case EnvAppend:
		if val == "" {
			return nil
		}
		if err := setField(row, field, val, noWarn); err != nil {
			return usageErrorf(row.Env, "%s=%q: %v", row.Env, redact(row.Redact, val), err)
		}
	case EnvFallback:
		if val == "" {
			return nil
		}
		if last, given := inv.lastValue(row); given && last != row.Default {
			return nil
		}
		if err := setField(row, field, val, noWarn); err != nil {
			return usageErrorf(row.Env, "%s=%q: %v; fix or unset the variable", row.Env, redact(row.Redact, val), err)
		}
	default:
		return fmt.Errorf("flag table: --%s has Env without EnvRule", row.Name)
	}
	inv.Given = append(inv.Given, Given{Flag: row, Spelling: "env " + row.Env, Values: []string{val}})
	return nil
}

// readEnvironment fills Options.Env and SourceDateEpoch.
func (inv *Invocation) readEnvironment(getenv func(string) (string, bool)) error {
	o := &inv.Options
	lookup := func(name string) string { v, _ := getenv(name); return v }
	env := &o.Env
	env.DockerConfig = lookup("DOCKER_CONFIG")
	// Kaniko points DOCKER_CONFIG into a relocated kaniko dir, overriding the variable.
	if o.KanikoDir != DefaultKanikoDir || env.DockerConfig == "" {
		env.DockerConfig = filepath.Join(o.KanikoDir, ".docker")
	}
	env.GitUsername = lookup("GIT_USERNAME")
	env.GitPassword = lookup("GIT_PASSWORD")
	env.GitToken = lookup("GIT_TOKEN")
	env.GitPullMethod = lookup("GIT_PULL_METHOD")
	if env.GitPullMethod == "" {
		env.GitPullMethod = "https"
	}
	env.BuilderOutput = lookup("BUILDER_OUTPUT")
	env.UpstreamClientType = lookup("UPSTREAM_CLIENT_TYPE")

	raw, ok := getenv("SOURCE_DATE_EPOCH")
	if !ok || raw == "" {
		return nil
	}
	epoch, err := strconv.ParseInt(raw, 10, 64)
	if err == nil && epoch >= 0 {
		o.SourceDateEpoch = &epoch
		return nil
	}
	if o.Reproducible {
		return usageErrorf("SOURCE_DATE_EPOCH", "SOURCE_DATE_EPOCH=%q is not a Unix time; --reproducible needs whole seconds since 1970 (e.g. 1700000000) or the variable unset", raw)
	}
	inv.warn(fmt.Sprintf("SOURCE_DATE_EPOCH=%q is not a Unix time in seconds; ignoring it", raw))
	return nil
}

// DefaultPlatform is this machine's platform written as Kaniko writes it.
func DefaultPlatform() string {
	return platforms.Format(platforms.Normalize(platforms.DefaultSpec()))
}
