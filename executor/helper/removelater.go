package helper

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// A build's private dirs can hold an unpacked base image: 10^5 files took
// 30-56 s to delete after the push, which the pipeline waited for and Kaniko
// never spends (its files go with the container). RemoveAfterExit hands
// them to a remover that outlives the executor: kiln-helper run under
// this name, in its own session, holding the dirs' locks
// so no other build sweeps them meanwhile. In a container the remover ends
// with the executor (PID 1) and the dirs with the container's filesystem;
// elsewhere a remover killed half-way leaves unlocked dirs the next build
// sweeps (SweepStaleDirs).
const removerName = "kiln-remover"

func init() { runAs(removerName, runRemover) }

// RemoveAfterExit starts removing dirs (as RemovePrivateDir) in a process
// that the executor does not wait for, and hands it locks, the files that
// mark the dirs in use, which the caller may then close. When the remover
// cannot start, the dirs are removed before it returns.
func RemoveAfterExit(dirs []string, locks []*os.File, rootless bool, binDir string) error {
	args := []string{"--rootless=" + strconv.FormatBool(rootless), "--bin-dir=" + binDir, "--"}
	cmd, err := command(binDir, removerName, append(args, dirs...))
	if err == nil {
		cmd.ExtraFiles = locks
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
