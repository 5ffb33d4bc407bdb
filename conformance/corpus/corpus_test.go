package corpus

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
)

func TestParseDefaultsAndValidation(t *testing.T) {
	c := &Case{Name: "demo"}
	err := Parse([]byte("description: d\nbuild_args: [\"A=1\", \"B\"]\nexpect: {outcome: failed}\n"), c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Dockerfile != "Dockerfile" || c.Expect.ExitCode != 1 || len(c.BuildArgs) != 2 {
		t.Fatalf("defaults not applied: %+v", c)
	}
	bad := map[string]string{
		"unknown key":             "descripton: typo\n",
		"bad outcome":             "expect: {outcome: maybe}\n",
		"exit code on built":      "expect: {exit_code: 3}\n",
		"bad mode":                "files: [{path: a, mode: \"99\"}]\n",
		"bad owner":               "files: [{path: a, owner: \"app\"}]\n",
		"absolute path":           "files: [{path: /etc/passwd, mode: \"0644\"}]\n",
		"two kinds":               "files: [{path: a, symlink: b, hardlink: c}]\n",
		"unknown base":            "bases: [alpine]\n",
		"bad error regexp":        "expect: {outcome: failed, error: \"(\"}\n",
		"nameless build arg":      "build_args: [\"=x\"]\n",
		"level without reason":    "kiln: {level: L2}\n",
		"unknown level":           "kiln: {level: L5, reason: r}\n",
		"rootless without reason": "kiln: {level: L2, reason: r, rootless: {level: L1}}\n",
		"holds below level":       "kiln: {level: L2, holds: [L1], reason: r}\n",
		"plain at L4":             "kiln: {plain: {level: L4}}\n",
		"plain without reason":    "kiln: {plain: {level: L1}}\n",
		"plain holds L4":          "kiln: {plain: {level: L1, holds: [L4], reason: r}}\n",
		"deliberate at L4":        "kiln: {deliberate: Kaniko defect}\n",
	}
	for what, manifest := range bad {
		if err := Parse([]byte(manifest), &Case{Name: "demo"}); err == nil {
			t.Errorf("%s: manifest %q accepted", what, manifest)
		}
	}
	if err := Parse([]byte("{}"), &Case{Name: "Bad_Name"}); err == nil {
		t.Error("invalid case name accepted")
	}
}

func TestKilnExpectedLevel(t *testing.T) {
	c := &Case{Name: "demo"}
	if e := c.Kiln.For(false); e.Level != LevelDigest {
		t.Fatalf("default level = %d, want L4", e.Level)
	}
	manifest := "kiln:\n  level: L0\n  holds: [L2]\n  reason: history differs\n  rootless: {level: none, reason: owners differ}\n"
	if err := Parse([]byte(manifest), c); err != nil {
		t.Fatal(err)
	}
	if e := c.Kiln.For(false); e.Level != LevelOutcome || len(e.Holds) != 1 || e.Holds[0] != LevelFiles || e.Reason != "history differs" {
		t.Errorf("root expectation = %+v", e)
	}
	if e := c.Kiln.For(true); e.Level != LevelNone || e.Holds != nil || e.Reason != "owners differ" {
		t.Errorf("rootless expectation = %+v", e)
	}
	// Without --reproducible the root expectation applies up to L3.
	if e := c.Kiln.ForPlain(); e.Level != LevelOutcome || len(e.Holds) != 1 || e.Holds[0] != LevelFiles || e.Reason != "history differs" {
		t.Errorf("plain expectation = %+v", e)
	}
	if err := Parse([]byte("kiln: {level: L2, holds: [L4], reason: digest}\n"), &Case{Name: "demo"}); err == nil {
		t.Fatal("holds: [L4] accepted")
	}
	capped := &Case{Name: "demo"}
	if err := Parse([]byte("kiln: {level: L3, reason: tar bytes differ}\n"), capped); err != nil {
		t.Fatal(err)
	}
	if e := capped.Kiln.ForPlain(); e.Level != PlainTop || e.Holds != nil || e.Reason != "" {
		t.Errorf("plain expectation of an L3 case = %+v, want L3 without a reason", e)
	}
	own := &Case{Name: "demo"}
	if err := Parse([]byte("kiln: {plain: {level: L1, holds: [L2], reason: config author}}\n"), own); err != nil {
		t.Fatal(err)
	}
	if e := own.Kiln.ForPlain(); e.Level != LevelConfig || len(e.Holds) != 1 || e.Reason != "config author" {
		t.Errorf("declared plain expectation = %+v", e)
	}
	if e := own.Kiln.For(false); e.Level != LevelDigest {
		t.Errorf("a plain expectation changed the root one: %+v", e)
	}
	deliberate := &Case{Name: "demo"}
	if err := Parse([]byte("kiln: {level: L2, reason: link names, deliberate: Docker refuses absolute links}\n"), deliberate); err != nil {
		t.Fatal(err)
	}
	if e := deliberate.Kiln.For(false); e.Deliberate != "Docker refuses absolute links" {
		t.Errorf("deliberate expectation = %+v", e)
	}
	if e := deliberate.Kiln.ForPlain(); e.Level != LevelFiles || e.Deliberate == "" {
		t.Errorf("plain expectation of a deliberate L2 case = %+v, want it deliberate below L3 too", e)
	}
}

func TestOrderAndClosure(t *testing.T) {
	cases := []*Case{{Name: "child", Requires: []string{"base"}}, {Name: "base"}, {Name: "other"}}
	ordered, err := Order(cases)
	if err != nil {
		t.Fatal(err)
	}
	if names(ordered) != "base,child,other" {
		t.Fatalf("order = %s", names(ordered))
	}
	picked, err := Closure(cases, []string{"child"})
	if err != nil {
		t.Fatal(err)
	}
	if names(picked) != "base,child" {
		t.Fatalf("closure = %s", names(picked))
	}
	// An extended case stays when a kept case requires it.
	extended := []*Case{{Name: "child", Requires: []string{"base"}}, {Name: "base", Extended: true}, {Name: "more", Extended: true}}
	if kept, err := WithoutExtended(extended); err != nil || names(kept) != "base,child" {
		t.Fatalf("without extended = %s, %v", names(kept), err)
	}
	cycle := []*Case{{Name: "a", Requires: []string{"b"}}, {Name: "b", Requires: []string{"a"}}}
	if _, err := Order(cycle); err == nil {
		t.Fatal("cycle not detected")
	}
}

func names(cases []*Case) string {
	var n []string
	for _, c := range cases {
		n = append(n, c.Name)
	}
	return strings.Join(n, ",")
}

func TestMaterialize(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sample")
	write := func(rel, body string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM scratch\n")
	write("a.txt", "a")
	write("pack/inner.txt", "inner")
	write("serve/remote.txt", "remote")
	write(ManifestName, `
files:
  - {path: link, symlink: a.txt}
  - {path: hard, hardlink: a.txt}
  - {path: a.txt, mode: "4750"}
  - {path: big, size: 5000}
  - {path: many, count: 120}
  - {path: pack.tar.gz, tar: pack, gzip: true}
serve: {/r: remote.txt}
`)
	c, err := LoadCase(dir)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "ctx")
	if err := c.Materialize(dest); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{ManifestName, ServeDir, "pack"} {
		if _, err := os.Lstat(filepath.Join(dest, gone)); !os.IsNotExist(err) {
			t.Errorf("%s should not be in the context (err %v)", gone, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dest, "link")); err != nil || l != "a.txt" {
		t.Errorf("symlink = %q, %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(dest, "a.txt"))
	h, _ := os.Stat(filepath.Join(dest, "hard"))
	if !os.SameFile(a, h) {
		t.Error("hard is not a hardlink of a.txt")
	}
	if a.Mode()&os.ModeSetuid == 0 || a.Mode().Perm() != 0o750 {
		t.Errorf("a.txt mode = %v, want setuid 0750", a.Mode())
	}
	if st := a.Sys().(*syscall.Stat_t); st.Nlink != 2 {
		t.Errorf("nlink = %d", st.Nlink)
	}
	if !a.ModTime().Equal(ContextTime) {
		t.Errorf("mtime = %v, want %v", a.ModTime(), ContextTime)
	}
	if big, err := os.Stat(filepath.Join(dest, "big")); err != nil || big.Size() != 5000 {
		t.Errorf("big: %v %v", big, err)
	}
	var count int
	filepath.Walk(filepath.Join(dest, "many"), func(_ string, info os.FileInfo, _ error) error {
		if info.Mode().IsRegular() {
			count++
		}
		return nil
	})
	if count != 120 {
		t.Errorf("many holds %d files, want 120", count)
	}
	if got := tarNames(t, filepath.Join(dest, "pack.tar.gz")); got != "inner.txt" {
		t.Errorf("tar entries = %s", got)
	}
	// Generated content is stable between materialisations.
	again := filepath.Join(t.TempDir(), "ctx")
	if err := c.Materialize(again); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(filepath.Join(dest, "big"))
	b2, _ := os.ReadFile(filepath.Join(again, "big"))
	if string(b1) != string(b2) {
		t.Error("generated file differs between materialisations")
	}
}

func tarNames(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var n []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n = append(n, hdr.Name)
	}
	return strings.Join(n, ",")
}

// The committed corpus must load and cover every Dockerfile instruction.
func TestCorpusCoversInstructions(t *testing.T) {
	cases, err := Load("../cases")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 60 {
		t.Fatalf("corpus has %d cases, want at least 60", len(cases))
	}
	seen := map[string]bool{}
	instr := regexp.MustCompile(`(?m)^\s*([A-Za-z]+)\s`)
	for _, c := range cases {
		data, err := os.ReadFile(filepath.Join(c.Dir, c.Dockerfile))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range instr.FindAllStringSubmatch(string(data), -1) {
			seen[strings.ToUpper(m[1])] = true
		}
	}
	var missing []string
	for _, want := range []string{"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
		"ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"} {
		if !seen[want] {
			missing = append(missing, want)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("no case uses %v", missing)
	}
}
