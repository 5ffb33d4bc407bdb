package engine

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// A build's private dirs can hold an unpacked base image: 10^5 files took
// 30-56 s to delete after the push, which the pipeline waited for and Kaniko
// never spends (its files go with the container). RemoveAfterExit hands
// them to a remover that outlives the executor: the executor binary
// re-executed under this name, in its own session, holding the dirs' locks
// so no other build sweeps them meanwhile. In a container the remover ends
// with the executor (PID 1) and the dirs with the container's filesystem;
// elsewhere a remover killed half-way leaves unlocked dirs the next build
// sweeps (SweepStaleDirs).
const removerName = "kiln-remover"

func init() { RunAs(removerName, runRemover) }

// RunAs runs main and exits when this process was started under name
// (argv[0]): a helper process is the executor binary re-executed so.
func RunAs(name string, main func(args []string) int) {
	if filepath.Base(os.Args[0]) == name {
		os.Exit(main(os.Args[1:]))
	}
}

// RemoveAfterExit starts removing dirs (as RemovePrivateDir) in a process
// that the executor does not wait for, and hands it locks, the files that
// mark the dirs in use, which the caller may then close. When the remover
// cannot start, the dirs are removed before it returns.
func RemoveAfterExit(dirs []string, locks []*os.File, rootless bool, binDir string) error {
	self, err := os.Executable()
	if err == nil {
		args := []string{"--rootless=" + strconv.FormatBool(rootless), "--bin-dir=" + binDir, "--"}
		cmd := &exec.Cmd{Path: self, Args: append(append([]string{removerName}, args...), dirs...), ExtraFiles: locks}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err = cmd.Start(); err == nil {
			return cmd.Process.Release()
		}
	}
	var errs []error
	for _, dir := range dirs {
		if err := RemovePrivateDir(dir, rootless, binDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func runRemover(args []string) int {
	fs := flag.NewFlagSet(removerName, flag.ContinueOnError)
	rootless := fs.Bool("rootless", false, "")
	binDir := fs.String("bin-dir", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	status := 0
	for _, dir := range fs.Args() {
		if err := RemovePrivateDir(dir, *rootless, *binDir); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", removerName, err)
			status = 1
		}
	}
	return status
}
