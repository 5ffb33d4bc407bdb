package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/kilnbuild/kiln/flagmap"
)

// found is one executor invocation discovered in a file.
type found struct {
	src     Source
	args    []string
	noCall  bool              // a Kaniko or Kimia image with no executor call in sight
	env     map[string]string // variables the job or container sets
	changes []Change
}

// ScanResult is the JSON form of `executor migrate scan --format=json`.
type ScanResult struct {
	SchemaVersion int      `json:"schemaVersion"`
	Invocations   []Report `json:"invocations"`
	Summary       struct {
		Files        int `json:"files"`
		Invocations  int `json:"invocations"`
		Ready        int `json:"ready"`
		NeedsChanges int `json:"needsChanges"`
		Invalid      int `json:"invalid"`
	} `json:"summary"`
}

// scanExit carries scan's exit code to the command line.
type scanExit struct {
	code int
	msg  string
}

func (e *scanExit) Error() string { return e.msg }
func (e *scanExit) ExitCode() int { return e.code }

// ScanCommand is `executor migrate scan PATH…`.
func (m *Migrator) ScanCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "scan PATH...",
		Short: "Find Kaniko invocations in CI and Kubernetes files and report what kiln needs changed",
		Long: "Walks the given files and directories for GitLab CI files, Kubernetes workloads and Tekton tasks that run\n" +
			"Kaniko's executor, and reports for each the flag mapping and the image and securityContext changes kiln needs.\n" +
			"Exits 0 when nothing needs changing, 3 otherwise.",
		Args:          cobra.MinimumNArgs(1),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, paths []string) error {
			if format != "text" && format != "json" {
				return &scanExit{1, fmt.Sprintf("--format=%q: use text or json", format)}
			}
			result, err := m.Scan(paths)
			if err != nil {
				return &scanExit{1, err.Error()}
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				err = enc.Encode(result)
			} else {
				err = writeScanText(out, result)
			}
			if err != nil {
				return &scanExit{1, err.Error()}
			}
			if s := result.Summary; s.NeedsChanges+s.Invalid > 0 {
				return &scanExit{3, fmt.Sprintf("%d of %d Kaniko invocations need changes for kiln", s.NeedsChanges+s.Invalid, s.Invocations)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "report format: text or json")
	cmd.Flags().StringVar(&m.KilnImage, "kiln-image", m.KilnImage, "image reference to suggest in place of Kaniko's")
	return cmd
}

func writeScanText(w io.Writer, res *ScanResult) error {
	for i := range res.Invocations {
		if err := res.Invocations[i].WriteText(w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	s := res.Summary
	_, err := fmt.Fprintf(w, "%d Kaniko invocations in %d files: %d ready, %d need changes, %d invalid\n",
		s.Invocations, s.Files, s.Ready, s.NeedsChanges, s.Invalid)
	return err
}

// Scan walks paths and reports every Kaniko invocation found.
func (m *Migrator) Scan(paths []string) (*ScanResult, error) {
	res := &ScanResult{SchemaVersion: SchemaVersion, Invocations: []Report{}}
	files := map[string]bool{}
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != root && (d.Name() == ".git" || d.Name() == "node_modules") {
					return filepath.SkipDir
				}
				return nil
			}
			if ext := filepath.Ext(path); ext != ".yml" && ext != ".yaml" {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			invs, err := scanYAML(path, data)
			if err != nil {
				return err
			}
			for _, f := range invs {
				files[path] = true
				res.Invocations = append(res.Invocations, *m.reportFound(f))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("migrate scan: %v", err)
		}
	}
	res.Summary.Files = len(files)
	res.Summary.Invocations = len(res.Invocations)
	for _, r := range res.Invocations {
		switch r.Verdict {
		case VerdictReady:
			res.Summary.Ready++
		case VerdictNeedsChanges:
			res.Summary.NeedsChanges++
		default:
			res.Summary.Invalid++
		}
	}
	return res, nil
}

func (m *Migrator) reportFound(f found) *Report {
	var r *Report
	if f.noCall {
		r = &Report{SchemaVersion: SchemaVersion}
		r.note(SeverityWarning, "scan", "the job uses a Kaniko or Kimia image but no executor or kimia call was found in its script; check the scripts it runs")
	} else {
		getenv := func(k string) (string, bool) { v, ok := f.env[k]; return v, ok }
		inv, err := flagmap.Parse(f.args, getenv)
		if err != nil {
			r = &Report{SchemaVersion: SchemaVersion, Error: err.Error()}
		} else {
			var runtime []string
			kept := inv.Positional[:0]
			for _, p := range inv.Positional {
				if strings.Contains(p, "$") {
					runtime = append(runtime, p)
				} else {
					kept = append(kept, p)
				}
			}
			inv.Positional = kept
			r = m.analyse(inv, false)
			for _, p := range runtime {
				r.note(SeverityInfo, "scan", "%s expands at run time; the flags it holds are not checked here (run the job with KILN_MIGRATION_DRY_RUN=true to check them)", p)
			}
		}
	}
	src := f.src
	r.Source = &src
	r.Changes = append(r.Changes, f.changes...)
	r.finish()
	if isBuilderImage(src.Image) {
		// Swapping the image is the migration itself, so it does not count
		// towards the verdict.
		want := "kiln's executor image (keep the debug flavour when the job runs a shell)"
		if m.KilnImage != "" {
			want = m.KilnImage
		}
		swap := []Change{{"image", src.Image, want, "kiln accepts Kaniko's flags and paths unchanged"}}
		if isKimiaImage(src.Image) {
			swap[0].Why = "kiln accepts Kimia's flags unchanged"
			swap = append(swap, Change{"command", "kimia", "/kaniko/executor", "kiln's image runs its executor there; the arguments stay as they are"})
		}
		r.Changes = append(swap, r.Changes...)
	}
	return r
}

// isBuilderImage recognises Kaniko's images, its forks' (the maintained
// osscontainertools/kaniko, martizih/kaniko, Chainguard's) and Kimia's by
// repository name.
func isBuilderImage(image string) bool {
	return strings.Contains(imageRepository(image), "kaniko") || isKimiaImage(image)
}

func isKimiaImage(image string) bool {
	return strings.Contains(imageRepository(image), "kimia")
}

func imageRepository(image string) string {
	repo := strings.ToLower(image)
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo
}

func scanYAML(path string, data []byte) ([]found, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []found
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// Not every .yml file is ours to judge; skip what is not YAML maps.
			return out, nil
		}
		if doc == nil {
			continue
		}
		apiVersion, _ := doc["apiVersion"].(string)
		kind, _ := doc["kind"].(string)
		switch {
		case strings.HasPrefix(apiVersion, "tekton.dev/"):
			out = append(out, scanTekton(path, kind, doc)...)
		case apiVersion != "" && kind != "":
			out = append(out, scanKubernetes(path, kind, doc)...)
		default:
			out = append(out, scanGitLab(path, doc)...)
		}
	}
	return out, nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

// dig follows keys through nested maps.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		v = asMap(v)[k]
	}
	return v
}

func stringList(v any) []string {
	var out []string
	for _, e := range asList(v) {
		switch e := e.(type) {
		case string:
			out = append(out, e)
		case []any:
			out = append(out, stringList(e)...) // !reference and nested lists
		default:
			out = append(out, fmt.Sprint(e))
		}
	}
	return out
}

// argvCalls turns a container's command/args/script into executor calls.
func argvCalls(image string, command, args []string, script string, env map[string]string) (calls [][]string, noCall bool) {
	switch {
	case script != "":
		calls = executorCalls(script, env)
	case len(command) > 0 && isExecutorCommand(command[0]):
		calls = [][]string{append(append([]string{}, command[1:]...), args...)}
	case len(command) > 0 && isShell(command[0]):
		argv := append(append([]string{}, command[1:]...), args...)
		for i, a := range argv {
			if a == "-c" && i+1 < len(argv) {
				calls = executorCalls(argv[i+1], env)
				break
			}
		}
	case len(command) == 0 && isBuilderImage(image):
		// The image's ENTRYPOINT is /kaniko/executor (Kimia's: kimia).
		calls = [][]string{append([]string{}, args...)}
	}
	return calls, len(calls) == 0 && isBuilderImage(image)
}

func isShell(argv0 string) bool {
	switch filepath.Base(argv0) {
	case "sh", "bash", "ash", "dash":
		return true
	}
	return false
}

// workloadPodSpec finds the pod spec inside a Kubernetes object.
func workloadPodSpec(kind string, doc map[string]any) (spec, meta map[string]any) {
	switch kind {
	case "Pod":
		return asMap(doc["spec"]), asMap(doc["metadata"])
	case "CronJob":
		t := dig(doc, "spec", "jobTemplate", "spec", "template")
		return asMap(dig(t, "spec")), asMap(dig(t, "metadata"))
	case "Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController":
		t := dig(doc, "spec", "template")
		return asMap(dig(t, "spec")), asMap(dig(t, "metadata"))
	}
	return nil, nil
}

func envMap(v any) map[string]string {
	env := map[string]string{}
	for _, e := range asList(v) {
		if name := asString(dig(e, "name")); name != "" {
			if value, ok := asMap(e)["value"]; ok {
				env[name] = fmt.Sprint(value)
			}
		}
	}
	return env
}

func scanKubernetes(path, kind string, doc map[string]any) []found {
	spec, meta := workloadPodSpec(kind, doc)
	if spec == nil {
		return nil
	}
	objName := kind + "/" + asString(dig(doc, "metadata", "name"))
	if gen := asString(dig(doc, "metadata", "generateName")); gen != "" && strings.HasSuffix(objName, "/") {
		objName += gen + "*"
	}
	var out []found
	for _, list := range []string{"initContainers", "containers"} {
		for _, c := range asList(spec[list]) {
			image := asString(dig(c, "image"))
			env := envMap(dig(c, "env"))
			calls, noCall := argvCalls(image, stringList(dig(c, "command")), stringList(dig(c, "args")), "", env)
			if len(calls) == 0 && !noCall {
				continue
			}
			name := asString(dig(c, "name"))
			changes := securityChanges(name, asMap(dig(spec, "securityContext")), asMap(dig(c, "securityContext")), asMap(dig(meta, "annotations")))
			src := Source{File: path, Kind: "kubernetes", Job: objName, Container: name, Image: image}
			out = append(out, foundCalls(src, calls, noCall, env, changes)...)
		}
	}
	return out
}

func foundCalls(src Source, calls [][]string, noCall bool, env map[string]string, changes []Change) []found {
	if noCall {
		return []found{{src: src, noCall: true, env: env, changes: changes}}
	}
	var out []found
	for _, args := range calls {
		out = append(out, found{src: src, args: args, env: env, changes: changes})
	}
	return out
}

// tektonTaskSpecs finds task specs in Tekton objects, with a label each.
func tektonTaskSpecs(kind string, doc map[string]any) map[string]map[string]any {
	specs := map[string]map[string]any{}
	name := kind + "/" + asString(dig(doc, "metadata", "name"))
	addPipeline := func(p any) {
		for _, key := range []string{"tasks", "finally"} {
			for _, t := range asList(dig(p, key)) {
				if ts := asMap(dig(t, "taskSpec")); ts != nil {
					specs[name+" task "+asString(dig(t, "name"))] = ts
				}
			}
		}
	}
	switch kind {
	case "Task", "ClusterTask":
		specs[name] = asMap(doc["spec"])
	case "TaskRun":
		if ts := asMap(dig(doc, "spec", "taskSpec")); ts != nil {
			specs[name] = ts
		}
	case "Pipeline":
		addPipeline(doc["spec"])
	case "PipelineRun":
		addPipeline(dig(doc, "spec", "pipelineSpec"))
	}
	return specs
}

func scanTekton(path, kind string, doc map[string]any) []found {
	specs := tektonTaskSpecs(kind, doc)
	var out []found
	for _, job := range slices.Sorted(maps.Keys(specs)) {
		spec := specs[job]
		template := asMap(spec["stepTemplate"])
		for _, step := range asList(spec["steps"]) {
			image := asString(dig(step, "image"))
			if image == "" {
				image = asString(template["image"])
			}
			image = paramDefault(spec, image)
			env := envMap(dig(template, "env"))
			for k, v := range envMap(dig(step, "env")) {
				env[k] = v
			}
			calls, noCall := argvCalls(image, stringList(dig(step, "command")), stringList(dig(step, "args")), asString(dig(step, "script")), env)
			if len(calls) == 0 && !noCall {
				continue
			}
			sc := mergeMaps(asMap(template["securityContext"]), asMap(dig(step, "securityContext")))
			name := asString(dig(step, "name"))
			changes := securityChanges("step-"+name, nil, sc, nil)
			src := Source{File: path, Kind: "tekton", Job: job, Container: name, Image: image}
			out = append(out, foundCalls(src, calls, noCall, env, changes)...)
		}
	}
	return out
}

// mergeMaps deep-merges over onto base (GitLab extends and Tekton
// stepTemplate semantics: maps merge, everything else is replaced).
func mergeMaps(base, over map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeMaps(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// paramDefault replaces an image written as "$(params.NAME)" with the
// param's default, so the catalog's BUILDER_IMAGE param is recognised.
func paramDefault(spec map[string]any, image string) string {
	name, ok := strings.CutPrefix(image, "$(params.")
	if !ok || !strings.HasSuffix(name, ")") {
		return image
	}
	name = strings.TrimSuffix(name, ")")
	for _, p := range asList(spec["params"]) {
		if asString(dig(p, "name")) == name {
			if def := asString(dig(p, "default")); def != "" {
				return def
			}
		}
	}
	return image
}
