package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cgroupV1Root is where this machine mounts its cgroup v1 controllers.
const cgroupV1Root = "/sys/fs/cgroup"

// Sample is one measured build.
type Sample struct {
	Wall time.Duration
	// CPU is user+system time of the whole process tree (cpuacct.usage),
	// plus any escaped daemon-side time the tool's Extra accounts for.
	CPU time.Duration
	// PeakMem is memory.max_usage_in_bytes: resident memory plus page
	// cache the tree dirtied or read, what a pod's memory limit is charged.
	PeakMem int64
	// PeakRSS is the highest anonymous memory (memory.stat total_rss)
	// sampled every 20 ms.
	PeakRSS int64
	// MemKnown is false when the tool's work happens outside the tree
	// (a shared daemon) so memory cannot be attributed to the run.
	MemKnown bool
	// Traffic is what the build pulled from and pushed to the registry.
	Traffic Traffic
	// Load1 is the machine's 1-minute load average when the run ended:
	// other work on a shared machine shows here.
	Load1 float64
}

func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(data))[0], 64)
	return f
}

// runCgroups is a pair of fresh cgroups (memory, cpuacct) for one run.
type runCgroups struct {
	memory, cpuacct string
	// home is where the launcher thread goes back to.
	home *runCgroups
}

// cgroupParents are the bench's parent cgroups: under this process's own
// memory cgroup (so everything stays charged where it was) and under the
// cpuacct root.
type cgroupParents struct {
	memory, cpuacct string
	// own are this process's cgroups, where launcher threads return.
	own runCgroups
}

func newCgroupParents() (*cgroupParents, error) {
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("kiln-bench-%d", os.Getpid())
	p := &cgroupParents{
		memory:  filepath.Join(cgroupV1Root, "memory", own["memory"], name),
		cpuacct: filepath.Join(cgroupV1Root, "cpuacct", own["cpuacct"], name),
		own: runCgroups{
			memory:  filepath.Join(cgroupV1Root, "memory", own["memory"]),
			cpuacct: filepath.Join(cgroupV1Root, "cpuacct", own["cpuacct"]),
		},
	}
	for _, dir := range []string{p.memory, p.cpuacct} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating cgroup %s (the bench needs root and cgroup v1 memory and cpuacct controllers): %w", dir, err)
		}
	}
	return p, nil
}

// ownCgroups maps each v1 controller to this process's cgroup path.
func ownCgroups() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	paths := parseProcCgroup(bufio.NewScanner(f))
	for _, c := range []string{"memory", "cpuacct"} {
		if _, ok := paths[c]; !ok {
			return nil, fmt.Errorf("no cgroup v1 %s controller in /proc/self/cgroup: the bench measures with cgroup v1", c)
		}
	}
	return paths, nil
}

// parseProcCgroup reads "ID:controllers:path" lines; comounted controllers
// ("cpu,cpuacct") each get the path.
func parseProcCgroup(s *bufio.Scanner) map[string]string {
	paths := map[string]string{}
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	return paths
}

func (p *cgroupParents) newRun(id string) (*runCgroups, error) {
	r := &runCgroups{memory: filepath.Join(p.memory, id), cpuacct: filepath.Join(p.cpuacct, id), home: &p.own}
	for _, dir := range []string{r.memory, r.cpuacct} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// remove waits for the cgroups to empty (a killed daemon may take a moment)
// and removes them.
func (r *runCgroups) remove() error {
	var errs []error
	for _, dir := range []string{r.memory, r.cpuacct} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dir, err))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

func (p *cgroupParents) remove() error {
	return errors.Join(syscall.Rmdir(p.memory), syscall.Rmdir(p.cpuacct))
}

// runIn calls start on an OS thread placed in the run's cgroups, so every
// process start forks inherits them (cgroup v1 places threads
// individually); the thread then returns to the bench's own cgroups, or the
// run's cgroups could not be removed.
func (r *runCgroups) runIn(start func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tid := []byte(strconv.Itoa(syscall.Gettid()))
		if err := r.place(tid); err != nil {
			// Never unlocked: a half-moved thread exits with the goroutine.
			done <- err
			return
		}
		err := start()
		if herr := r.home.place(tid); herr != nil {
			done <- errors.Join(err, herr)
			return
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}

func (r *runCgroups) place(tid []byte) error {
	for _, dir := range []string{r.memory, r.cpuacct} {
		if err := os.WriteFile(filepath.Join(dir, "tasks"), tid, 0); err != nil {
			return fmt.Errorf("moving the launcher thread into %s: %w", dir, err)
		}
	}
	return nil
}

// measure runs build inside r and returns wall time, CPU and memory peaks.
func (r *runCgroups) measure(build func() error) (Sample, error) {
	stop := make(chan struct{})
	var peakRSS int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := memoryStat(r.memory, "total_rss"); err == nil {
				peakRSS = max(peakRSS, rss)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	began := time.Now()
	err := r.runIn(build)
	wall := time.Since(began)
	// What the tool left running (kiln's removal of its private dirs)
	// is no wait of the pipeline's but still its CPU and memory, and must
	// not run into the next tool's measurement.
	r.waitEmpty()
	close(stop)
	wg.Wait()
	s := Sample{Wall: wall, PeakRSS: peakRSS, MemKnown: true}
	cpu, cerr := readInt(filepath.Join(r.cpuacct, "cpuacct.usage"))
	mem, merr := readInt(filepath.Join(r.memory, "memory.max_usage_in_bytes"))
	s.CPU, s.PeakMem = time.Duration(cpu), mem
	return s, errors.Join(err, cerr, merr)
}

// waitEmpty waits, up to ten minutes, until no process is left in the
// run's cgroups.
func (r *runCgroups) waitEmpty() {
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		procs, err := os.ReadFile(filepath.Join(r.memory, "cgroup.procs"))
		if err != nil || len(bytes.TrimSpace(procs)) == 0 {
			return
		}
	}
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

func memoryStat(dir, key string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", dir, key)
}

// cpuCounter reads a CPU-time counter that lives outside the run's cgroups
// (a shared daemon, containers BuildKit places in its own cgroups).
type cpuCounter func() (time.Duration, error)

// cgroupCPU is the cpuacct.usage of an existing cgroup (0 while absent).
// cpuacct charges every ancestor, so a parent keeps the time of children
// that are already gone.
func cgroupCPU(rel string) cpuCounter {
	return func() (time.Duration, error) {
		n, err := readInt(filepath.Join(cgroupV1Root, "cpuacct", rel, "cpuacct.usage"))
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return time.Duration(n), err
	}
}

// processCPU is utime+stime+cutime+cstime of the named long-running
// processes (children that exited and were reaped included).
func processCPU(names ...string) cpuCounter {
	return func() (time.Duration, error) {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return 0, err
		}
		var ticks int64
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if err != nil {
				continue
			}
			comm, t, ok := parseProcStat(string(data))
			if ok && slices.Contains(names, comm) {
				ticks += t
			}
		}
		return time.Duration(ticks) * time.Second / clockTicks, nil
	}
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// parseProcStat returns the command name and utime+stime+cutime+cstime.
func parseProcStat(stat string) (string, int64, bool) {
	open, closing := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || closing < open {
		return "", 0, false
	}
	fields := strings.Fields(stat[closing+1:])
	// fields[0] is the state (stat field 3); utime..cstime are fields 14-17.
	if len(fields) < 15 {
		return "", 0, false
	}
	var sum int64
	for _, f := range fields[11:15] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return "", 0, false
		}
		sum += n
	}
	return stat[open+1 : closing], sum, true
}
