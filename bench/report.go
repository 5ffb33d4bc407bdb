package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kilnbuild/kiln/conformance/kaniko"
)

// Machine describes where the numbers come from.
type Machine struct {
	CPUs     int
	CPUModel string
	MemTotal string
	Kernel   string
	Disk     string // filesystem holding the scratch dir
	Versions map[string]string
}

func describeMachine(scratch, binDir string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Versions: map[string]string{}}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.Kernel = utsString(u.Release[:])
	}
	m.Disk = mountOf(scratch)
	m.Versions["Kaniko"] = kaniko.Version + " (built with " + kaniko.Toolchain + ")"
	m.Versions["Go (kiln)"] = runtime.Version()
	if out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		m.Versions["kiln"] = strings.TrimSpace(string(out))
	}
	// The daemons are built from go.mod's pins (make build).
	for module, label := range map[string]string{"github.com/moby/buildkit": "BuildKit", "github.com/rootless-containers/rootlesskit/v2": "rootlesskit"} {
		if v := goModVersion(filepath.Join(filepath.Dir(binDir), "go.mod"), module); v != "" {
			m.Versions[label] = v
		}
	}
	if out, err := exec.Command("runc", "--version").Output(); err == nil {
		m.Versions["runc"] = strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "runc version ")
	}
	if b, err := dockerBuilder(); err == nil {
		m.Versions["docker"] = b
	}
	return m
}

func utsString(chars []int8) string {
	var b strings.Builder
	for _, c := range chars {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

// procField is the first "key: value" value in a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// mountOf names the device and filesystem type of the mount holding path.
func mountOf(path string) string {
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return ""
	}
	best, desc := "", ""
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if (path == f[1] || strings.HasPrefix(path, strings.TrimSuffix(f[1], "/")+"/")) && len(f[1]) > len(best) {
			fsType := f[2]
			if j := journalOf(f[0]); fsType == "ext4" && j != "" {
				fsType += " " + j
			}
			best, desc = f[1], fmt.Sprintf("%s (%s) mounted at %s", f[0], fsType, f[1])
		}
	}
	var st syscall.Statfs_t
	if syscall.Statfs(path, &st) == nil {
		desc += fmt.Sprintf(", %.0f GiB", float64(st.Blocks)*float64(st.Bsize)/(1<<30))
	}
	return desc
}

// Stats are medians over a result's samples.
type Stats struct {
	N                      int
	Wall, WallMin, WallMax time.Duration
	CPU                    time.Duration
	PeakMem, PeakRSS       int64
	Pulled, Pushed         int64
	MemKnown               bool
	Load1                  float64
}

func statsOf(samples []Sample) Stats {
	st := Stats{N: len(samples)}
	if len(samples) == 0 {
		return st
	}
	var walls, cpus []time.Duration
	var mems, rsss, loads, pulled, pushed []int64
	st.MemKnown = true
	for _, s := range samples {
		loads = append(loads, int64(s.Load1*100))
		walls, cpus = append(walls, s.Wall), append(cpus, s.CPU)
		mems, rsss = append(mems, s.PeakMem), append(rsss, s.PeakRSS)
		pulled, pushed = append(pulled, s.Traffic.Pulled), append(pushed, s.Traffic.Pushed)
		st.MemKnown = st.MemKnown && s.MemKnown
	}
	st.Wall, st.CPU = median(walls), median(cpus)
	st.WallMin, st.WallMax = slices.Min(walls), slices.Max(walls)
	st.PeakMem, st.PeakRSS = median(mems), median(rsss)
	st.Pulled, st.Pushed = median(pulled), median(pushed)
	st.Load1 = float64(median(loads)) / 100
	return st
}

// median of an odd count is the middle value; of an even count the mean of
// the two middle values.
func median[T int64 | time.Duration](values []T) T {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// ratio is a/b as text, "–" when either is missing.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

const (
	generatedBegin = "<!-- bench:generated:begin (go run ./bench rewrites this part) -->"
	generatedEnd   = "<!-- bench:generated:end -->"
)

// updateResultsMarkdown replaces the generated part of RESULTS.md and keeps
// the hand-written analysis around it.
func updateResultsMarkdown(path string, r *Report) error {
	generated := generatedBegin + "\n" + renderResults(r) + generatedEnd + "\n"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	begin, end := strings.Index(text, generatedBegin), strings.Index(text, generatedEnd)
	switch {
	case begin >= 0 && end > begin:
		text = text[:begin] + generated + text[end+len(generatedEnd)+1:]
	case text == "":
		text = "# kiln vs Kaniko: benchmark results\n\n" + generated
	default:
		text += "\n" + generated
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

func renderResults(r *Report) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("Run %s, took %s; %d counted runs per tool and scenario after %d discarded warm-up run(s), interleaved by round.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Duration.Round(time.Second), r.Runs, r.Warmup)
	w("![wall time and peak memory relative to Kaniko](chart.png)\n\n")
	w("### Machine and versions\n\n")
	w("- %d CPUs (%s), %s RAM, kernel %s\n", r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemTotal, r.Machine.Kernel)
	w("- scratch disk (contexts, registry blobs, BuildKit state, Kaniko roots): %s\n", r.Machine.Disk)
	keys := make([]string, 0, len(r.Machine.Versions))
	for k := range r.Machine.Versions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w("- %s: %s\n", k, r.Machine.Versions[k])
	}
	w("- tools: ")
	for i, t := range r.Tools {
		if i > 0 {
			w(", ")
		}
		w("`%s` = %s", t.Name, t.Label)
	}
	w("\n\n### Medians\n\n")
	w("Wall and CPU in seconds; CPU is user+system of the whole process tree; mem is the cgroup's peak (`memory.max_usage_in_bytes`, page cache included), RSS the peak anonymous memory sampled at 20 ms. Ratios are tool ÷ Kaniko (below 1 is better). Pulled and pushed are the bytes the build moved through the harness registry (responses and request bodies): with CPU, the figures this machine's noise does not change. Load is the machine's median 1-minute load average at the end of the runs (2 CPUs: above 2 means other work competed).\n\n")
	w("| scenario | tool | n | wall (min–max) | CPU | peak mem | peak RSS | pulled | pushed | wall ÷ Kaniko | CPU ÷ Kaniko | mem ÷ Kaniko | load |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, sc := range scenarioOrder(r) {
		base := statsOf(find(r, sc, "kaniko").samplesOrNil())
		for _, res := range r.Results {
			if res.Scenario != sc {
				continue
			}
			if res.Skipped != "" || (res.Error != "" && len(res.Samples) == 0) {
				reason := res.Skipped
				if reason == "" {
					reason = "failed: " + oneLine(res.Error, 160)
				}
				w("| %s | %s | 0 | %s | | | | | | | | | |\n", sc, res.Tool, mdEscape(reason))
				continue
			}
			st := statsOf(res.Samples)
			mem, rss, memRatio := "n/a", "n/a", "n/a"
			if st.MemKnown {
				mem, rss = mibText(st.PeakMem), mibText(st.PeakRSS)
				memRatio = ratio(float64(st.PeakMem), float64(base.PeakMem))
			}
			w("| %s | %s | %d | %.2f (%.2f–%.2f) | %.2f | %s | %s | %s | %s | %s | %s | %s | %.1f |\n", sc, res.Tool, st.N,
				st.Wall.Seconds(), st.WallMin.Seconds(), st.WallMax.Seconds(), st.CPU.Seconds(), mem, rss,
				trafficText(st.Pulled), trafficText(st.Pushed),
				ratio(st.Wall.Seconds(), base.Wall.Seconds()), ratio(st.CPU.Seconds(), base.CPU.Seconds()), memRatio, st.Load1)
		}
	}
	w("\n")
	renderTargets(&b, r)
	renderProfiles(&b, r)
	return b.String()
}

func (r *Result) samplesOrNil() []Sample {
	if r == nil {
		return nil
	}
	return r.Samples
}

func find(r *Report, scenario, tool string) *Result {
	for _, res := range r.Results {
		if res.Scenario == scenario && res.Tool == tool {
			return res
		}
	}
	return nil
}

func scenarioOrder(r *Report) []string {
	var order []string
	for _, res := range r.Results {
		if !slices.Contains(order, res.Scenario) {
			order = append(order, res.Scenario)
		}
	}
	return order
}

// renderTargets checks the goals for each kiln variant measured.
func renderTargets(b *strings.Builder, r *Report) {
	var tools []string
	for _, t := range r.Tools {
		if strings.HasPrefix(t.Name, "kiln") {
			tools = append(tools, t.Name)
		}
	}
	fmt.Fprintf(b, "### Targets\n\n| target | %s |\n|---%s|\n", strings.Join(tools, " | "), strings.Repeat("|---", len(tools)))
	row := func(name string, cell func(tool string) string) {
		fmt.Fprintf(b, "| %s |", name)
		for _, t := range tools {
			fmt.Fprintf(b, " %s |", cell(t))
		}
		b.WriteString("\n")
	}
	wallRatio := func(sc, tool string) (float64, bool) {
		k, t := statsOf(find(r, sc, "kaniko").samplesOrNil()), statsOf(find(r, sc, tool).samplesOrNil())
		if k.N == 0 || t.N == 0 {
			return 0, false
		}
		return t.Wall.Seconds() / k.Wall.Seconds(), true
	}
	row("every scenario's wall ÷ Kaniko ≤ 1.0", func(tool string) string {
		var over []string
		measured := 0
		for _, sc := range scenarioOrder(r) {
			if x, ok := wallRatio(sc, tool); ok {
				measured++
				if x > 1 {
					over = append(over, fmt.Sprintf("%s %.2f", sc, x))
				}
			}
		}
		switch {
		case measured == 0:
			return "not measured"
		case len(over) == 0:
			return fmt.Sprintf("%d of %d: %s", measured, measured, verdict(true))
		}
		return fmt.Sprintf("%d of %d (over: %s): %s", measured-len(over), measured, strings.Join(over, ", "), verdict(false))
	})
	row("median wall ÷ Kaniko across cold scenarios ≤ 0.5", func(tool string) string {
		var ratios []int64
		for _, sc := range scenarioOrder(r) {
			if s := scenarioByName(sc); s != nil && s.Kind == Cold {
				if x, ok := wallRatio(sc, tool); ok {
					ratios = append(ratios, int64(x*1000))
				}
			}
		}
		if len(ratios) == 0 {
			return "not measured"
		}
		m := float64(median(ratios)) / 1000
		return fmt.Sprintf("%.2f over %d scenarios: %s", m, len(ratios), verdict(m <= 0.5))
	})
	for _, goal := range []struct {
		scenario string
		limit    float64
	}{{"warm-repo", 0.5}, {"warm-repo-large", 0.1}} {
		row(fmt.Sprintf("%s wall ÷ Kaniko ≤ %.1f", goal.scenario, goal.limit), func(tool string) string {
			x, ok := wallRatio(goal.scenario, tool)
			if !ok {
				return "not measured"
			}
			return fmt.Sprintf("%.2f: %s", x, verdict(x <= goal.limit))
		})
	}
	row("peak memory ≤ Kaniko's (scenarios met)", func(tool string) string {
		met, total := 0, 0
		for _, sc := range scenarioOrder(r) {
			k, t := statsOf(find(r, sc, "kaniko").samplesOrNil()), statsOf(find(r, sc, tool).samplesOrNil())
			if k.N == 0 || t.N == 0 {
				continue
			}
			total++
			if t.PeakMem <= k.PeakMem {
				met++
			}
		}
		if total == 0 {
			return "not measured"
		}
		return fmt.Sprintf("%d of %d: %s", met, total, verdict(met == total))
	})
	b.WriteString("\n")
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func mibText(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// trafficText shows small transfers (manifests only) in KiB.
func trafficText(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// goModVersion is the version go.mod requires for module.
func goModVersion(goMod, module string) string {
	data, err := os.ReadFile(goMod)
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	return ""
}
