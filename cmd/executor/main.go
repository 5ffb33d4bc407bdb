// Command executor is kiln's drop-in for Kaniko's /kaniko/executor.
package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/kilnbuild/kiln/cli"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv, notWired{}, notWired{}))
}

// notWired stands in for the build engine and the migration tooling until
// they are connected.
type notWired struct{}

var errNotWired = errors.New("the build engine is not wired into this binary yet")

func (notWired) Build(context.Context, *flagmap.Invocation) error { return errNotWired }

func (notWired) DryRun(_ context.Context, _ *flagmap.Invocation, out io.Writer) int {
	_, _ = io.WriteString(out, "the migration dry-run is not wired into this binary yet\n")
	return 1
}

func (notWired) ScanCommand() *cobra.Command {
	return &cobra.Command{
		Use:  "scan PATH...",
		Args: cobra.MinimumNArgs(1),
		RunE: func(*cobra.Command, []string) error {
			return errors.New("migrate scan is not wired into this binary yet")
		},
	}
}
