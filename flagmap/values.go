package flagmap

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// fieldValue is the pflag.Value of one table row; every spelling of a flag
// writes through its own fieldValue into the target row's Options field.
type fieldValue struct {
	spelling *Flag // the row as typed (maybe a deprecated alias)
	target   *Flag // the row that owns the Options field
	field    any
	warn     func(string)        // collects notices raised while setting
	record   func(*Flag, string) // called after a successful Set
	fail     func(*UsageError)   // keeps the error pflag would print with the raw value
}

func (v *fieldValue) Set(s string) error {
	if err := setField(v.target, v.field, s, v.warn); err != nil {
		if v.fail != nil {
			v.fail(usageErrorf("--"+v.spelling.Name, "invalid argument %q for %q flag: %v", redact(v.target.Redact, s), "--"+v.spelling.Name, err))
		}
		return err
	}
	if v.record != nil {
		v.record(v.spelling, s)
	}
	return nil
}

// String returns the default as Kaniko's --help shows it.
func (v *fieldValue) String() string { return v.spelling.Default }

// Type names the value in --help.
func (v *fieldValue) Type() string {
	switch v.target.Kind {
	case Bool:
		return "bool"
	case Int:
		return "int"
	case Duration:
		return "duration"
	case KeyValue, MultiKeyMap, GitKind:
		return "key=value"
	default:
		return "string"
	}
}

// IsBoolFlag lets pflag accept a bare --flag for booleans.
func (v *fieldValue) IsBoolFlag() bool { return v.target.Kind == Bool }

// setField parses s according to row's Kind and stores it in field.
func setField(row *Flag, field any, s string, warn func(string)) error {
	switch row.Kind {
	case String:
		*field.(*string) = s
	case Enum:
		if !contains(row.Values, s) {
			return fmt.Errorf("must be %s", oneOf(row.Values))
		}
		*field.(*string) = s
	case Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("must be true or false")
		}
		*field.(*bool) = b
	case Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("must be a whole number")
		}
		*field.(*int) = n
	case Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("must be a duration with a unit, e.g. 6h or 90m")
		}
		*field.(*time.Duration) = d
	case Multi:
		list := field.(*[]string)
		*list = append(*list, s)
	case KeyValue:
		key, val, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("must be key=value, e.g. my.registry=/path/to/file")
		}
		m := field.(*map[string]string)
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[key] = val
	case MultiKeyMap:
		m := field.(*map[string][]string)
		if *m == nil {
			*m = map[string][]string{}
		}
		for _, pair := range strings.Split(s, ";") {
			if pair == "" {
				continue
			}
			key, val, ok := strings.Cut(pair, "=")
			if !ok {
				return fmt.Errorf("each part must be registry=replacement (join several with ';')")
			}
			(*m)[key] = append((*m)[key], val)
		}
	case GitKind:
		return setGitOption(field.(*GitOptions), s, warn)
	default:
		return fmt.Errorf("flag kind %q has no parser", row.Kind)
	}
	return nil
}

// gitBoolKeys are the boolean keys of --git.
var gitBoolKeys = []string{"single-branch", "recurse-submodules", "insecure-skip-tls"}

func setGitOption(g *GitOptions, s string, warn func(string)) error {
	key, val, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("must be key=value with key branch, single-branch, recurse-submodules or insecure-skip-tls")
	}
	if key == "branch" {
		g.Branch = val
		return nil
	}
	if !contains(gitBoolKeys, key) {
		// Kaniko ignores unknown keys; say so instead of staying silent.
		warn(fmt.Sprintf("--git: unknown key %q ignored (known keys: branch, %s)", key, strings.Join(gitBoolKeys, ", ")))
		return nil
	}
	b, err := strconv.ParseBool(val)
	if err != nil {
		return fmt.Errorf("%s must be true or false", key)
	}
	switch key {
	case "single-branch":
		g.SingleBranch = b
	case "recurse-submodules":
		g.RecurseSubmodules = b
	case "insecure-skip-tls":
		g.InsecureSkipTLS = b
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// oneOf renders allowed values for an error: `either "a" or "b"`, `one of "a", "b", "c"`.
func oneOf(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = strconv.Quote(v)
	}
	if len(quoted) == 2 {
		return "either " + quoted[0] + " or " + quoted[1]
	}
	return "one of " + strings.Join(quoted, ", ")
}
