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

// runAs runs main and exits, at package initialisation, when this process
// was started under name (argv[0]): in kiln-helper, and in the executor
// binary, which still serves where kiln-helper is not installed.
func runAs(name string, main func(args []string) int) {
	if filepath.Base(os.Args[0]) == name {
		os.Exit(main(os.Args[1:]))
	}
}

// Main is kiln-helper's, reached only when argv[0] names no helper (runAs
// ran the one it names).
func Main() {
	fmt.Fprintf(os.Stderr, "%s: the executor runs this program as %s or %s, not as %s\n", ProgramName, removerName, ReaperName, filepath.Base(os.Args[0]))
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
