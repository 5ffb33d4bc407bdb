package migrate

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// gitlabGlobalKeys are top-level .gitlab-ci.yml keys that are not jobs.
var gitlabGlobalKeys = map[string]bool{
	"image": true, "services": true, "stages": true, "types": true, "before_script": true, "after_script": true,
	"variables": true, "cache": true, "include": true, "default": true, "workflow": true, "spec": true,
}

// gitlabKanikoTemplate is the job GitLab's Kaniko.gitlab-ci.yml template
// adds (restated in our words): its executor call uses the variables
// KANIKO_BUILD_CONTEXT, DOCKERFILE_PATH and an unquoted $KANIKO_ARGS.
func gitlabKanikoTemplate() map[string]any {
	return map[string]any{
		"image": map[string]any{"name": "gcr.io/kaniko-project/executor:debug", "entrypoint": []any{""}},
		"variables": map[string]any{
			"KANIKO_ARGS":          "",
			"KANIKO_BUILD_CONTEXT": "$CI_PROJECT_DIR",
		},
		"script": []any{
			`DOCKERFILE_PATH=${DOCKERFILE_PATH:-"$KANIKO_BUILD_CONTEXT/Dockerfile"}`,
			"/kaniko/executor --context $KANIKO_BUILD_CONTEXT --dockerfile $DOCKERFILE_PATH --destination $CI_REGISTRY_IMAGE:$VERSION $KANIKO_ARGS",
		},
	}
}

func includesKanikoTemplate(include any) bool {
	var entries []any
	switch v := include.(type) {
	case []any:
		entries = v
	default:
		entries = []any{v}
	}
	for _, e := range entries {
		tmpl := asString(dig(e, "template"))
		if tmpl == "" {
			tmpl = asString(e)
		}
		if strings.HasSuffix(tmpl, "Kaniko.gitlab-ci.yml") {
			return true
		}
	}
	return false
}

// gitlabVariables flattens a variables: block (plain values or {value: …}).
func gitlabVariables(v any) map[string]string {
	out := map[string]string{}
	for k, val := range asMap(v) {
		if m := asMap(val); m != nil {
			val = m["value"]
		}
		if val != nil {
			out[k] = fmt.Sprint(val)
		}
	}
	return out
}

// resolveExtends merges a job over the jobs it extends.
func resolveExtends(jobs map[string]map[string]any, job map[string]any, depth int) map[string]any {
	if depth > 10 {
		return job
	}
	var parents []string
	switch e := job["extends"].(type) {
	case string:
		parents = []string{e}
	case []any:
		for _, p := range e {
			parents = append(parents, asString(p))
		}
	}
	merged := map[string]any{}
	for _, p := range parents {
		if parent, ok := jobs[p]; ok {
			merged = mergeMaps(merged, resolveExtends(jobs, parent, depth+1))
		}
	}
	return mergeMaps(merged, job)
}

func gitlabImage(v any) string {
	if s := asString(v); s != "" {
		return s
	}
	return asString(dig(v, "name"))
}

func scriptText(v any) string {
	if s := asString(v); s != "" {
		return s
	}
	return strings.Join(stringList(v), "\n")
}

func scanGitLab(path string, doc map[string]any) []found {
	jobs := map[string]map[string]any{}
	for k, v := range doc {
		if m := asMap(v); m != nil && !gitlabGlobalKeys[k] {
			jobs[k] = m
		}
	}
	if includesKanikoTemplate(doc["include"]) {
		jobs["kaniko-build"] = mergeMaps(gitlabKanikoTemplate(), jobs["kaniko-build"])
	}
	defaults := asMap(doc["default"])
	globalVars := gitlabVariables(doc["variables"])
	var out []found
	for _, name := range slices.Sorted(maps.Keys(jobs)) {
		if strings.HasPrefix(name, ".") {
			continue // hidden jobs only serve extends
		}
		job := resolveExtends(jobs, jobs[name], 0)
		if _, isJob := job["script"]; !isJob {
			continue
		}
		image := gitlabImage(job["image"])
		if image == "" {
			image = gitlabImage(defaults["image"])
		}
		if image == "" {
			image = gitlabImage(doc["image"])
		}
		vars := map[string]string{}
		for k, v := range globalVars {
			vars[k] = v
		}
		for k, v := range gitlabVariables(job["variables"]) {
			vars[k] = v
		}
		before := job["before_script"]
		if before == nil {
			before = defaults["before_script"]
		}
		if before == nil {
			before = doc["before_script"]
		}
		script := scriptText(before) + "\n" + scriptText(job["script"])
		calls := executorCalls(script, vars)
		noCall := len(calls) == 0 && isBuilderImage(image)
		if len(calls) == 0 && !noCall {
			continue
		}
		src := Source{File: path, Kind: "gitlab-ci", Job: name, Image: image}
		out = append(out, foundCalls(src, calls, noCall, vars, []Change{gitlabRunnerChange})...)
	}
	return out
}
