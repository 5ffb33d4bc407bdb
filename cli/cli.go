// Package cli is kiln's /kaniko/executor command: Kaniko's command line in
// front of an injected build engine and migration tooling.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/kilnbuild/kiln/flagmap"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// version is set at link time: -X github.com/kilnbuild/kiln/cli.version=...
var version = "dev"

// Version is the version stamped into this binary at build time.
func Version() string { return version }

// kanikoVersion is the Kaniko release whose command line kiln accepts.
const kanikoVersion = "v1.23.2"

// Engine builds and publishes an invocation. An error with an ExitCode()
// method (a failing RUN) sets the process exit code.
type Engine interface {
	Build(ctx context.Context, inv *flagmap.Invocation) error
}

// ContextResolver is implemented by engines that resolve the build context
// and Dockerfile before building (Kaniko's step 7), so that the name-file
// check (step 8) runs after it as in Kaniko.
type ContextResolver interface {
	ResolveContext(ctx context.Context, inv *flagmap.Invocation) error
}

// Migrator provides the migration dry-run and `executor migrate scan`.
type Migrator interface {
	// DryRun reports on inv without building; it validates inv itself.
	DryRun(ctx context.Context, inv *flagmap.Invocation, out io.Writer) (exitCode int)
	ScanCommand() *cobra.Command
}

type stdinKey struct{}

// Stdin returns the executor's standard input (for tar://stdin contexts).
func Stdin(ctx context.Context) io.Reader {
	if r, ok := ctx.Value(stdinKey{}).(io.Reader); ok {
		return r
	}
	return strings.NewReader("")
}

// Main runs the executor with args (without the program name) and returns
// the process exit code. getenv nil means the process environment.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) (string, bool), engine Engine, migrator Migrator) int {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	ctx, stopped, stop := signalContext(os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = context.WithValue(ctx, stdinKey{}, stdin)

	root := newRootCommand(stdout, stderr, getenv, engine, migrator)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if sig := stopped(); sig != 0 && err != nil {
		err = &stoppedBySignal{sig: sig, err: err}
	}
	return report(err, stderr)
}

// signalContext is cancelled by the first of signals; stopped tells which
// one arrived (0 for none).
func signalContext(signals ...os.Signal) (ctx context.Context, stopped func() syscall.Signal, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	received := make(chan os.Signal, 1)
	signal.Notify(received, signals...)
	var got atomic.Int32
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-received:
			got.Store(int32(sig.(syscall.Signal)))
			cancel(fmt.Errorf("%v signal received", sig))
		case <-done:
		}
	}()
	return ctx, func() syscall.Signal { return syscall.Signal(got.Load()) }, func() {
		signal.Stop(received)
		close(done)
		cancel(nil)
	}
}

// stoppedBySignal is a build ended by SIGTERM or SIGINT (a CI job's
// deadline, a deleted pod). Kaniko, which does not catch them, dies of the
// signal: the exit code a shell or Kubernetes shows is 128+signal.
type stoppedBySignal struct {
	sig syscall.Signal
	err error
}

func (s *stoppedBySignal) Error() string {
	return fmt.Sprintf("the build was stopped by %s before it finished: %v", unix.SignalName(s.sig), s.err)
}
func (s *stoppedBySignal) Unwrap() error { return s.err }
func (s *stoppedBySignal) ExitCode() int { return 128 + int(s.sig) }

// report prints err as one line and returns its exit code.
func report(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	code := 1
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		code = coded.ExitCode()
	}
	if msg := oneLine(err.Error()); msg != "" {
		fmt.Fprintln(stderr, "Error: "+msg)
	}
	return code
}

// exitCode ends the process with a code whose reason was already printed.
type exitCode int

func (e exitCode) Error() string { return "" }
func (e exitCode) ExitCode() int { return int(e) }

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.TrimSpace(s)), " ")
}

func newRootCommand(stdout, stderr io.Writer, getenv func(string) (string, bool), engine Engine, migrator Migrator) *cobra.Command {
	root := &cobra.Command{
		Use:   "executor",
		Short: "Build a Dockerfile with BuildKit, taking Kaniko's executor flags",
		// flagmap parses Kaniko's flags itself so that --help, the parser
		// and the dry-run share one table.
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		SilenceErrors:      true,
		SilenceUsage:       true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return build(cmd.Context(), args, stdout, stderr, getenv, engine, migrator)
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	// Known only so that cobra's subcommand lookup skips flag values
	// ("--target version" builds the stage named version).
	root.Flags().AddFlagSet(flagmap.FlagSet())
	defaultHelp := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		if cmd == root {
			fmt.Fprint(stdout, helpText())
			return
		}
		defaultHelp(cmd, args)
	})
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(stdout, "kiln version :  %s (Kaniko %s command line)\n", version, kanikoVersion)
		},
	})
	root.AddCommand(forkCommands(getenv)...)
	if migrator != nil {
		migrate := &cobra.Command{Use: "migrate", Short: "Help moving Kaniko invocations to kiln"}
		migrate.AddCommand(migrator.ScanCommand())
		root.AddCommand(migrate)
	}
	return root
}

func helpText() string {
	return "kiln builds a Dockerfile with BuildKit and publishes it like Kaniko's /kaniko/executor,\n" +
		"taking the same flags and environment.\n\n" +
		"Usage:\n  executor [flags]\n  executor version\n  executor migrate scan PATH...\n  executor login REGISTRY -u USER --password-stdin\n\n" +
		flagmap.HelpFlags() +
		"\nSee docs/flags.md for what each flag becomes with BuildKit.\n"
}

// build runs Kaniko's sequence: parse, logging, validation, context, name
// files, then the engine (or the migration dry-run instead).
func build(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) (string, bool), engine Engine, migrator Migrator) error {
	inv, err := flagmap.Parse(args, getenv)
	if errors.Is(err, flagmap.ErrHelp) {
		fmt.Fprint(stdout, helpText())
		return nil
	}
	if err != nil {
		return err
	}
	if err := ConfigureLogging(&inv.Options, stderr); err != nil {
		return err
	}
	printed := logWarnings(inv, 0)
	if inv.Options.MigrationDryRun {
		if migrator == nil {
			return errors.New("--migration-dry-run is not available in this build")
		}
		if code := migrator.DryRun(ctx, inv, stdout); code != 0 {
			return exitCode(code)
		}
		return nil
	}
	err = inv.Validate()
	logWarnings(inv, printed)
	if err != nil {
		return err
	}
	for _, notice := range inv.Notices() {
		logrus.Info(notice)
	}
	if err := flagmap.ReadGitTokenFile(&inv.Options); err != nil {
		return err
	}
	if resolver, ok := engine.(ContextResolver); ok {
		if err := resolver.ResolveContext(ctx, inv); err != nil {
			return err
		}
	}
	if err := flagmap.ValidateNameFiles(&inv.Options); err != nil {
		return err
	}
	return engine.Build(ctx, inv)
}

// logWarnings logs inv.Warnings from index from on and returns the new count.
func logWarnings(inv *flagmap.Invocation, from int) int {
	for _, w := range inv.Warnings[from:] {
		logrus.Warn(w)
	}
	return len(inv.Warnings)
}
