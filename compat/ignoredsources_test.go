package compat

import "testing"

func TestWithIgnoredSources(t *testing.T) {
	in := "FROM busybox\nCOPY secret.txt keep.txt /d/\nCOPY [\"docs/\", \"/docs\"]\nADD *.md http://x/secret.txt /m/\nCOPY --from=busybox secret.txt /s\nCOPY naïve /n\n"
	got, changed, err := WithIgnoredSources([]byte(in), []byte("# comment\nsecret.txt\ndocs\nnaïve\n"))
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "FROM busybox\nCOPY secret.tx[t] keep.txt /d/\nCOPY [\"doc[s]/\", \"/docs\"]\nADD *.md http://x/secret.txt /m/\nCOPY --from=busybox secret.txt /s\nCOPY naïv[e] /n\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	if _, changed, _ := WithIgnoredSources([]byte(in), []byte("other\n")); changed {
		t.Error("rewritten although nothing it copies is excluded")
	}
}
