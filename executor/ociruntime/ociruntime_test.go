package ociruntime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const (
	traceparentValue = "TRACEPARENT=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	otelExporter     = "OTEL_TRACES_EXPORTER=otlp"
	otelEndpoint     = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=unix:///dev/otel-grpc.sock"
	otelProtocol     = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"
)

func TestWithoutTracingEnv(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env, want []string
	}{
		{
			name: "all of BuildKit's",
			env:  []string{"PATH=/bin", "HOME=/root", otelExporter, otelEndpoint, otelProtocol, traceparentValue},
			want: []string{"PATH=/bin", "HOME=/root"},
		},
		{
			name: "with TRACESTATE",
			env:  []string{"PATH=/bin", otelExporter, otelEndpoint, otelProtocol, traceparentValue, "TRACESTATE=a=b"},
			want: []string{"PATH=/bin"},
		},
		{
			name: "the build set some names: BuildKit appended only the others",
			env:  []string{"PATH=/bin", "OTEL_TRACES_EXPORTER=none", otelProtocol, "TRACEPARENT=mine", otelEndpoint, traceparentValue},
			want: []string{"PATH=/bin", "OTEL_TRACES_EXPORTER=none", otelProtocol, "TRACEPARENT=mine"},
		},
		{
			name: "the build's own value equal to BuildKit's, last before BuildKit's",
			env:  []string{"PATH=/bin", otelProtocol, otelExporter, otelEndpoint, traceparentValue},
			want: []string{"PATH=/bin", otelProtocol},
		},
		{
			name: "a TRACEPARENT that is not BuildKit's form stays",
			env:  []string{"PATH=/bin", otelExporter, otelEndpoint, otelProtocol, "TRACEPARENT=mine"},
			want: []string{"PATH=/bin", otelExporter, otelEndpoint, otelProtocol, "TRACEPARENT=mine"},
		},
		{
			name: "nothing of BuildKit's",
			env:  []string{"PATH=/bin", "A=1"},
			want: []string{"PATH=/bin", "A=1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := WithoutTracingEnv(slices.Clone(tc.env)); !slices.Equal(got, tc.want) {
				t.Errorf("WithoutTracingEnv(%q)\n got %q\nwant %q", tc.env, got, tc.want)
			}
		})
	}
}

// makeBundle writes a bundle with rootfs/ holding files (path → content;
// content "->target" makes a symlink) and returns its directory.
func makeBundle(t *testing.T, files map[string]string) string {
	t.Helper()
	bundle := t.TempDir()
	for name, content := range files {
		p := filepath.Join(bundle, "rootfs", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return bundle
}

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"# a comment\n" +
		"user:x:1000:1000:user:/home/user:/bin/sh\n" +
		"other:x:2000:2100::/:/bin/sh\n"
	testGroup = "root:x:0:\n" +
		"wheel:x:10:root,other\n" +
		"user:x:1000:\n" +
		"web:x:3000:user\n" +
		"bad:x:notanumber:user\n" +
		"short:x\n" +
		"dev:x:4000:other,user\n"
)

// config is a BuildKit-like config.json with fields kiln-runc must keep.
func config(uid, gid uint32, additionalGids []uint32) map[string]any {
	user := map[string]any{"uid": uid, "gid": gid, "umask": 18}
	if additionalGids != nil {
		user["additionalGids"] = additionalGids
	}
	return map[string]any{
		"ociVersion": "1.2.1",
		"process": map[string]any{
			"args":         []string{"/bin/sh", "-c", "id"},
			"env":          []string{"PATH=/bin", "A=1", otelExporter, otelEndpoint, otelProtocol, traceparentValue},
			"user":         user,
			"cwd":          "/",
			"capabilities": map[string]any{"bounding": []string{"CAP_CHOWN"}},
			"futureField":  map[string]any{"x": []int{1, 2}},
		},
		"root": map[string]any{"path": "rootfs"},
		"mounts": []any{
			map[string]any{"destination": "/proc", "type": "proc", "source": "proc", "options": []string{"nosuid"}},
			map[string]any{"destination": "/dev/otel-grpc.sock", "type": "bind", "source": "/run/otel.sock", "options": []string{"ro", "rbind"}},
			map[string]any{"destination": "/etc/hosts", "type": "bind", "source": "/x/hosts", "futureKey": true},
		},
		"linux":       map[string]any{"namespaces": []any{map[string]any{"type": "mount"}}, "futureLinux": "kept"},
		"annotations": map[string]string{"a": "b"},
	}
}

// rewrite runs RewriteConfig on want's JSON and returns the result decoded
// for comparison.
func rewrite(t *testing.T, bundle string, in map[string]any) (map[string]any, bool) {
	t.Helper()
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, changed, err := RewriteConfig(raw, bundle)
	if err != nil {
		t.Fatalf("RewriteConfig: %v", err)
	}
	return decode(t, out), changed
}

func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return doc
}

// expected is in with env and mounts as kiln-runc leaves them and user set.
func expected(t *testing.T, in map[string]any, user map[string]any) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(in)
	want := decode(t, raw)
	process := want["process"].(map[string]any)
	process["env"] = []any{"PATH=/bin", "A=1"}
	process["user"] = decode(t, must(json.Marshal(user)))
	mounts := want["mounts"].([]any)
	want["mounts"] = []any{mounts[0], mounts[2]}
	return want
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestRewriteConfigUser(t *testing.T) {
	bundle := makeBundle(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	for _, tc := range []struct {
		name     string
		in       map[string]any
		wantUser map[string]any
	}{
		{
			name:     "passwd entry: its primary gid, and the groups listing it",
			in:       config(1000, 50, []uint32{50}),
			wantUser: map[string]any{"uid": 1000, "gid": 1000, "umask": 18, "additionalGids": []uint32{1000, 3000, 4000}},
		},
		{
			name:     "no passwd entry: gid is the uid, no supplementary groups",
			in:       config(1001, 50, []uint32{50}),
			wantUser: map[string]any{"uid": 1001, "gid": 1001, "umask": 18},
		},
		{
			name:     "uid 0 keeps BuildKit's ids",
			in:       config(0, 0, []uint32{0, 10}),
			wantUser: map[string]any{"uid": 0, "gid": 0, "umask": 18, "additionalGids": []uint32{0, 10}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := rewrite(t, bundle, tc.in)
			if want := expected(t, tc.in, tc.wantUser); !reflect.DeepEqual(got, want) {
				t.Errorf("rewritten config\n got %v\nwant %v", got, want)
			}
			if !changed {
				t.Error("changed = false for a config with BuildKit's tracing entries")
			}
		})
	}
}

func TestRewriteConfigUnchanged(t *testing.T) {
	in := config(0, 0, []uint32{0})
	process := in["process"].(map[string]any)
	process["env"] = []string{"PATH=/bin"}
	in["mounts"] = []any{}
	raw := must(json.Marshal(in))
	out, changed, err := RewriteConfig(raw, t.TempDir())
	if err != nil || changed || string(out) != string(raw) {
		t.Errorf("RewriteConfig of a config needing nothing: changed=%v err=%v, output differs: %v", changed, err, string(out) != string(raw))
	}
}

func TestRewriteConfigErrors(t *testing.T) {
	for name, raw := range map[string]string{
		"not JSON":     `{"process":`,
		"no root.path": `{"process":{"user":{"uid":1000}}}`,
		"bad env":      `{"process":{"env":"PATH=/bin"}}`,
	} {
		if _, _, err := RewriteConfig([]byte(raw), t.TempDir()); err == nil {
			t.Errorf("%s: RewriteConfig succeeded", name)
		}
	}
}

func TestKanikoCredentials(t *testing.T) {
	outside := t.TempDir()
	// An entry for uid 1001 outside the rootfs must never be read.
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("intruder:x:1001:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		uid   uint32
		want  Credentials
	}{
		{
			name:  "no /etc/passwd",
			files: map[string]string{"bin/sh": ""},
			uid:   1000,
			want:  Credentials{GID: 1000},
		},
		{
			name:  "passwd entry, no /etc/group",
			files: map[string]string{"etc/passwd": testPasswd},
			uid:   2000,
			want:  Credentials{GID: 2100, Groups: []uint32{2100}},
		},
		{
			name:  "a user named like the uid wins, as in Kaniko's lookup",
			files: map[string]string{"etc/passwd": testPasswd + "1000:x:5000:5100::/:/bin/sh\n", "etc/group": "g:x:77:1000\n"},
			uid:   1000,
			want:  Credentials{GID: 5100, Groups: []uint32{5100, 77}},
		},
		{
			name:  "relative symlink escaping the rootfs stops at its root",
			files: map[string]string{"etc/passwd": "->../../../../../../../" + outside + "/passwd"},
			uid:   1001,
			want:  Credentials{GID: 1001},
		},
		{
			name:  "absolute symlink is resolved in the rootfs",
			files: map[string]string{"etc/passwd": "->" + outside + "/passwd"},
			uid:   1001,
			want:  Credentials{GID: 1001},
		},
		{
			name:  "absolute symlink to a file inside the rootfs is followed",
			files: map[string]string{"etc": "->/usr/etc", "usr/etc/passwd": "->../lib/passwd", "usr/lib/passwd": testPasswd},
			uid:   1000,
			want:  Credentials{GID: 1000, Groups: []uint32{1000}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle := makeBundle(t, tc.files)
			got, err := KanikoCredentials(filepath.Join(bundle, "rootfs"), tc.uid)
			if err != nil {
				t.Fatalf("KanikoCredentials: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("KanikoCredentials(%d) = %+v, want %+v", tc.uid, got, tc.want)
			}
		})
	}
}

func TestKanikoCredentialsSymlinkLoop(t *testing.T) {
	bundle := makeBundle(t, map[string]string{"etc/passwd": "->group", "etc/group": "->passwd"})
	if _, err := KanikoCredentials(filepath.Join(bundle, "rootfs"), 1000); err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Errorf("KanikoCredentials with a symlink loop: err = %v, want too many symbolic links", err)
	}
}

func TestBundleToRewrite(t *testing.T) {
	for _, tc := range []struct {
		args       string
		wantBundle string
		wantOK     bool
	}{
		// go-runc's form, as BuildKit's runc executor calls it.
		{"--root /state/runc --log /state/runc-log.json --log-format json run --bundle /b/x --keep id1", "/b/x", true},
		{"--rootless=true --systemd-cgroup create -b=/b/y --pid-file /p id2", "/b/y", true},
		{"--debug run --pid-file /p id3", ".", true},
		{"-root /r create -bundle /b/z id4", "/b/z", true},
		{"--root /r delete --force id1", "", false},
		{"--root /r exec --process /p.json id1", "", false},
		{"--version", "", false},
		{"", "", false},
	} {
		bundle, ok := BundleToRewrite(strings.Fields(tc.args))
		if bundle != tc.wantBundle || ok != tc.wantOK {
			t.Errorf("BundleToRewrite(%q) = %q, %v; want %q, %v", tc.args, bundle, ok, tc.wantBundle, tc.wantOK)
		}
	}
}

func TestRewriteBundleInPlace(t *testing.T) {
	bundle := makeBundle(t, map[string]string{"etc/passwd": testPasswd})
	path := filepath.Join(bundle, "config.json")
	if err := os.WriteFile(path, must(json.Marshal(config(1001, 50, nil))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RewriteBundle(bundle); err != nil {
		t.Fatal(err)
	}
	got := decode(t, must(os.ReadFile(path)))
	process := got["process"].(map[string]any)
	if !reflect.DeepEqual(process["env"], []any{"PATH=/bin", "A=1"}) || process["user"].(map[string]any)["gid"] != 1001.0 {
		t.Errorf("rewritten process = %v", process)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode after rewrite = %v (%v), want it kept (0600)", info.Mode(), err)
	}
	if err := RewriteBundle(t.TempDir()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("RewriteBundle without config.json: err = %v", err)
	}
}
