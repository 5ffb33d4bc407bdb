// Package examples holds the Kubernetes manifests docs/kubernetes.md shows;
// the test decodes each strictly into the Kubernetes API types, so a typo in
// a field name fails instead of being silently ignored by kubectl apply.
package examples

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// decodeStrict converts YAML to JSON rejecting duplicate keys, then decodes
// rejecting unknown fields.
func decodeStrict(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s is not a valid object: %v", path, err)
	}
}

func kiln(t *testing.T, path string, spec corev1.PodSpec) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if strings.Contains(c.Image, "kiln") {
			return c
		}
	}
	t.Fatalf("%s: no container runs kiln's image", path)
	return corev1.Container{}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	paths, err := filepath.Glob("*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests found: %v", err)
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			var meta struct{ Kind string }
			decodeStrictKind(t, path, &meta)
			var spec corev1.PodSpec
			switch meta.Kind {
			case "Job":
				var job batchv1.Job
				decodeStrict(t, path, &job)
				spec = job.Spec.Template.Spec
			case "Pod":
				var pod corev1.Pod
				decodeStrict(t, path, &pod)
				spec = pod.Spec
			default:
				t.Fatalf("%s: kind %q is not covered by this test", path, meta.Kind)
			}
			c := kiln(t, path, spec)
			sc := c.SecurityContext
			if !rootless(spec, c) {
				// Root: the embedded engine needs nothing but the runtime's defaults.
				if sc != nil && (sc.SeccompProfile != nil || sc.AppArmorProfile != nil || sc.Capabilities != nil || sc.Privileged != nil) {
					t.Errorf("%s: a root kiln container needs no security settings (Kaniko's Job keeps its securityContext): %+v", path, sc)
				}
				return
			}
			if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined {
				t.Errorf("%s: kiln's rootless container needs seccompProfile Unconfined", path)
			}
			if sc == nil || sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
				t.Errorf("%s: kiln's rootless container needs appArmorProfile Unconfined", path)
			}
			if sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation: false stops newuidmap", path)
			}
			if !mounts(c, "/kaniko/buildkit") {
				t.Errorf("%s: mount an emptyDir at /kaniko/buildkit for BuildKit's state", path)
			}
		})
	}
}

// rootless reports a container that runs as a non-root user: kiln then
// runs BuildKit through RootlessKit.
func rootless(pod corev1.PodSpec, c corev1.Container) bool {
	uid := (*int64)(nil)
	if pod.SecurityContext != nil {
		uid = pod.SecurityContext.RunAsUser
	}
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		uid = c.SecurityContext.RunAsUser
	}
	return uid != nil && *uid != 0
}

// decodeStrictKind reads only the kind, tolerating every other field.
func decodeStrictKind(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func mounts(c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}

func TestStrictDecodingRejectsTypos(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: x\n      image: kiln\n      securityContex: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	raw, _ := os.ReadFile(bad)
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pod); err == nil {
		t.Fatal("a misspelt field must fail strict decoding")
	}
}

func TestGitLabExampleKeepsKanikoTemplateShape(t *testing.T) {
	raw, err := os.ReadFile("gitlab-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	var ci map[string]struct {
		Image struct {
			Name       string   `json:"name"`
			Entrypoint []string `json:"entrypoint"`
		} `json:"image"`
		Script []string `json:"script"`
	}
	if err := yaml.UnmarshalStrict(raw, &ci); err != nil {
		t.Fatalf("gitlab-ci.yml: %v", err)
	}
	job := ci["build"]
	if len(job.Image.Entrypoint) != 1 || job.Image.Entrypoint[0] != "" {
		t.Errorf("entrypoint must be [\"\"] as in Kaniko's template, got %q", job.Image.Entrypoint)
	}
	if !strings.HasSuffix(job.Image.Name, ":debug") {
		t.Errorf("GitLab needs the debug image (a shell), got %s", job.Image.Name)
	}
	if n := len(job.Script); n == 0 || !strings.HasPrefix(job.Script[n-1], "/kaniko/executor ") {
		t.Errorf("the script must end by calling /kaniko/executor: %q", job.Script)
	}
}
