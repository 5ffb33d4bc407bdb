// Package ociruntime is kiln-runc, the OCI runtime BuildKit's OCI worker
// calls instead of runc: before `run` and `create` it rewrites the bundle's
// config.json so that a RUN step sees what Kaniko's RUN sees, then it execs
// the real runtime with the same arguments. It imports nothing of BuildKit:
// it starts once per RUN, so it must start fast.
package ociruntime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	// BinaryName is the wrapper's file name, installed next to the executor.
	BinaryName = "kiln-runc"
	// RuntimeEnv holds the real runtime's absolute path; kiln sets it on
	// the buildkitd it starts.
	RuntimeEnv = "KILN_OCI_RUNTIME"
)

// Exec rewrites the bundle when args (without the program name) create a
// container, then replaces this process with the real runtime. It returns
// only on error.
func Exec(args []string) error {
	runtime := os.Getenv(RuntimeEnv)
	if runtime == "" {
		return fmt.Errorf("%s is not set: %s is started by kiln's buildkitd, which sets it to the real runc", RuntimeEnv, BinaryName)
	}
	if bundle, ok := BundleToRewrite(args); ok {
		if err := RewriteBundle(bundle); err != nil {
			return err
		}
	}
	argv := append([]string{runtime}, args...)
	if err := syscall.Exec(runtime, argv, os.Environ()); err != nil {
		return fmt.Errorf("running %s (from %s): %w", runtime, RuntimeEnv, err)
	}
	return nil
}

// runc's global flags that take a value (urfave/cli: "--flag value" or
// "--flag=value"; one or two dashes).
var globalValueFlags = map[string]bool{"root": true, "log": true, "log-format": true, "criu": true, "rootless": true}

// Flags of `runc run` and `runc create` that take a value.
var createValueFlags = map[string]bool{"bundle": true, "b": true, "console-socket": true, "pid-file": true, "preserve-fds": true, "pidfd-socket": true}

// BundleToRewrite returns the bundle directory of a `run` or `create`
// command line (runc's default is the working directory); ok is false for
// every other subcommand.
func BundleToRewrite(args []string) (bundle string, ok bool) {
	i := skipFlags(args, 0, globalValueFlags, nil)
	if i >= len(args) || (args[i] != "run" && args[i] != "create") {
		return "", false
	}
	bundle = "."
	skipFlags(args, i+1, createValueFlags, func(name, value string) {
		if name == "bundle" || name == "b" {
			bundle = value
		}
	})
	return bundle, true
}

// skipFlags returns the index of the first argument from start that is not
// a flag or a flag's value, calling seen (when set) for each flag.
func skipFlags(args []string, start int, valueFlags map[string]bool, seen func(name, value string)) int {
	i := start
	for i < len(args) {
		arg := args[i]
		if arg == "--" {
			return i + 1
		}
		if len(arg) < 2 || arg[0] != '-' {
			return i
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !hasValue && valueFlags[name] && i+1 < len(args) {
			i++
			value = args[i]
		}
		if seen != nil {
			seen(name, value)
		}
		i++
	}
	return i
}

// RewriteBundle rewrites <bundle>/config.json in place when it changes.
func RewriteBundle(bundle string) error {
	path := filepath.Join(bundle, "config.json")
	config, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the OCI bundle config: %w", err)
	}
	rewritten, changed, err := RewriteConfig(config, bundle)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !changed {
		return nil
	}
	if err := os.WriteFile(path, rewritten, 0); err != nil {
		return fmt.Errorf("rewriting the OCI bundle config: %w", err)
	}
	return nil
}
