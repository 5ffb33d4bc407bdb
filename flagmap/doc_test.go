package flagmap

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/flags.md from the table")

func TestFlagsDocIsCurrent(t *testing.T) {
	path := filepath.Join("..", "docs", "flags.md")
	want := Markdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v (generate it with: go test ./flagmap -run TestFlagsDocIsCurrent -update)", path, err)
	}
	if string(got) != want {
		t.Fatalf("%s is stale: regenerate it with: go run ./flagmap/cmd/flagsdoc > docs/flags.md", path)
	}
}

func TestFlagsDocMentionsEveryFlag(t *testing.T) {
	doc := Markdown()
	for _, f := range Table {
		spelling := "`--" + f.Name + "`"
		if f.EnvOnly {
			spelling = "`" + f.Name + "`"
		}
		if !strings.Contains(doc, spelling) {
			t.Errorf("docs lack --%s", f.Name)
		}
		if reason := f.Target().Reason; reason != "" && !strings.Contains(doc, reason[1:]) {
			t.Errorf("docs lack the reason for --%s", f.Name)
		}
	}
}
