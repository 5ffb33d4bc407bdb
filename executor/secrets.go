package executor

import (
	"cmp"
	"errors"
	"os"
	"slices"
	"strings"

	"github.com/kilnbuild/kiln/compat"
	"github.com/sirupsen/logrus"
)

// minSecretLen is the shortest build-arg value hidden in BuildKit's lines:
// shorter ones ("1", "on") are no secret and would garble every line.
const minSecretLen = 4

// secretFilter replaces --build-arg values in text BuildKit wrote (its step
// names and errors, its daemon's log) with $NAME, the way Kaniko's
// unexpanded instruction lines show them. Kaniko's own lines (base images,
// pushed tags) are left as Kaniko writes them.
type secretFilter struct {
	replacer *strings.Replacer // nil: no value to hide
}

func newSecretFilter(buildArgs []string) *secretFilter {
	type arg struct{ name, value string }
	var args []arg
	for _, kv := range buildArgs {
		name, value, ok := strings.Cut(kv, "=")
		if ok && len(value) >= minSecretLen {
			args = append(args, arg{name, value})
		}
	}
	if len(args) == 0 {
		return &secretFilter{}
	}
	// At one position the Replacer takes the first match given: longer
	// values first, so one containing another is hidden whole.
	slices.SortStableFunc(args, func(a, b arg) int { return cmp.Compare(len(b.value), len(a.value)) })
	var pairs []string
	for _, a := range args {
		pairs = append(pairs, a.value, "$"+a.name)
	}
	return &secretFilter{replacer: strings.NewReplacer(pairs...)}
}

func (f *secretFilter) Redact(s string) string {
	if f == nil || f.replacer == nil {
		return s
	}
	return f.replacer.Replace(s)
}

// Hook hides the values in every line logged at a level other than info:
// BuildKit's plain progress and daemon log (debug, trace), warnings and
// errors. Info lines are Kaniko's, written with values where Kaniko writes
// them.
func (f *secretFilter) Levels() []logrus.Level {
	var levels []logrus.Level
	for _, l := range logrus.AllLevels {
		if l != logrus.InfoLevel {
			levels = append(levels, l)
		}
	}
	return levels
}

func (f *secretFilter) Fire(e *logrus.Entry) error {
	e.Message = f.Redact(e.Message)
	for k, v := range e.Data {
		switch v := v.(type) {
		case string:
			e.Data[k] = f.Redact(v)
		case error:
			e.Data[k] = f.Redact(v.Error())
		}
	}
	return nil
}

// hideIn installs the filter on logger until the returned function runs.
func (f *secretFilter) hideIn(logger *logrus.Logger) (restore func()) {
	if f.replacer == nil {
		return func() {}
	}
	previous := logger.ReplaceHooks(logrus.LevelHooks{})
	with := logrus.LevelHooks{}
	for level, hooks := range previous {
		with[level] = slices.Clone(hooks)
	}
	with.Add(f)
	logger.ReplaceHooks(with)
	return func() { logger.ReplaceHooks(previous) }
}

// Error returns err with the values hidden from its message; the exit code
// and the wrapped errors stay reachable.
func (f *secretFilter) Error(err error) error {
	if err == nil || f.replacer == nil {
		return err
	}
	msg := err.Error()
	if hidden := f.Redact(msg); hidden != msg {
		return &redactedError{msg: hidden, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// ExitCode keeps the wrapped error's exit code (a failed RUN's).
func (e *redactedError) ExitCode() int {
	var coded interface{ ExitCode() int }
	if errors.As(e.err, &coded) {
		return coded.ExitCode()
	}
	return 1
}

// stepNames reads the staged Dockerfile BuildKit builds, naming steps as
// written in the user's Dockerfile; nil (BuildKit's names, filtered by
// secretFilter) when it cannot.
func stepNames(stagedDockerfile string, written []byte) *compat.StepNames {
	dt, err := os.ReadFile(stagedDockerfile)
	if err != nil {
		return nil
	}
	steps, err := compat.NewStepNames(dt, written)
	if err != nil {
		return nil
	}
	return steps
}
