// Command executor is kiln's drop-in for Kaniko's /kaniko/executor.
package main

import (
	"os"

	"github.com/kilnbuild/kiln/cli"
	"github.com/kilnbuild/kiln/executor"
	"github.com/kilnbuild/kiln/migrate"
)

func main() {
	engine := &executor.Builder{Version: cli.Version(), Stdout: os.Stdout, Stderr: os.Stderr}
	migrator := migrate.New()
	migrator.Stdin = os.Stdin
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv, engine, migrator))
}
