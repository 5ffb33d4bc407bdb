// Package helper holds what kiln's helper processes run — the remover of a
// build's private dirs and the reaper around a private daemon — and what
// they share with the executor (FindBinary, private dir removal). It
// imports nothing but the standard library and x/sys, so that kiln-helper
// (cmd/kiln-helper), the small program they run as, starts in milliseconds
// where the executor binary took 70-110 ms and 39 MiB to initialise its
// dependencies.
package helper

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ProgramName is the helper program, installed next to the executor.
const ProgramName = "kiln-helper"

// helpers are the processes kiln-helper runs, by argv[0].
var helpers = map[string]func(args []string) int{}

// runAs registers main as the helper called name and, when this process
// was started under that name, runs it and exits: the executor binary
// still serves as helper where kiln-helper is not installed.
func runAs(name string, main func(args []string) int) {
	helpers[name] = main
	if filepath.Base(os.Args[0]) == name {
		os.Exit(main(os.Args[1:]))
	}
}

// Main is kiln-helper's: it runs the helper argv[0] names.
func Main() {
	name := filepath.Base(os.Args[0])
	if main, ok := helpers[name]; ok {
		os.Exit(main(os.Args[1:]))
	}
	fmt.Fprintf(os.Stderr, "%s: the executor runs this program as %s or %s, not as %s\n", ProgramName, removerName, ReaperName, name)
	os.Exit(2)
}

// command runs the helper name with args: kiln-helper where FindBinary
// finds it in binDir, else the running executable.
func command(binDir, name string, args []string) (*exec.Cmd, error) {
	path, err := FindBinary(binDir, ProgramName)
	if err != nil {
		if path, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding a program to run %s: %w", name, err)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Args[0] = name
	return cmd, nil
}
