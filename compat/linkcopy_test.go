package compat

import "testing"

func TestWithLinkedCopiesLinksOnlyTrailingCopiesOfTheTarget(t *testing.T) {
	in := "FROM busybox AS build\n" +
		"COPY a /a\n" + // another stage: untouched
		"FROM debian AS final\n" +
		"COPY early /early\n" + // a RUN follows: untouched
		"RUN true\n" +
		"copy --chown=10:20 app/ /srv/app/\n" +
		"ENV X=1\n" +
		"COPY --from=build /a /usr/local/bin/a\n" +
		"CMD [\"a\"]\n"
	got, changed, err := WithLinkedCopies([]byte(in), "")
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "FROM busybox AS build\n" +
		"COPY a /a\n" +
		"FROM debian AS final\n" +
		"COPY early /early\n" +
		"RUN true\n" +
		"copy --link --chown=10:20 app/ /srv/app/\n" +
		"ENV X=1\n" +
		"COPY --link --from=build /a /usr/local/bin/a\n" +
		"CMD [\"a\"]\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}

	got, changed, err = WithLinkedCopies([]byte(in), "build")
	if err != nil || !changed || string(got[:len("FROM busybox AS build\nCOPY --link a /a\n")]) != "FROM busybox AS build\nCOPY --link a /a\n" {
		t.Fatalf("--target build: changed %v, error %v:\n%s", changed, err, got)
	}
}

func TestWithLinkedCopiesLeavesCopiesThatNeedTheFilesystemBelow(t *testing.T) {
	for _, df := range []string{
		"FROM busybox\nCOPY --chmod=755 a /a\n",               // BuildKit copies in place
		"FROM busybox\nCOPY --chown=app a /a\n",               // the name is looked up below
		"FROM busybox\nCOPY --chown=1000:staff a /a\n",        // so is the group's
		"FROM busybox\nCOPY a $HOME/\n",                       // the destination is not known here
		"FROM busybox\nCOPY <<EOF /a\nx\nEOF\n",               // heredoc
		"FROM busybox\nCOPY a /a\nWORKDIR /w\n",               // WORKDIR changes the filesystem after it
		"FROM busybox\nCOPY a /a\nVOLUME /v\n",                // so does kiln's VOLUME directory copy
		"FROM busybox\nCOPY a /a\nADD b /b\n",                 // ADD is never linked, and ends the run
		"FROM busybox\nCOPY a /a\nRUN true\nLABEL x=y\n",      // a RUN reads the COPY's result
		"FROM busybox\nCOPY --link a /a\n",                    // linked already
		"FROM busybox AS x\nCOPY a /a\nFROM busybox\nRUN x\n", // the target stage ends in RUN
	} {
		if got, changed, err := WithLinkedCopies([]byte(df), ""); err != nil || changed {
			t.Errorf("%q: changed %v, error %v:\n%s", df, changed, err, got)
		}
	}
	if _, changed, _ := WithLinkedCopies([]byte("FROM busybox\nCOPY a /a\n"), "missing"); changed {
		t.Error("an unknown --target was rewritten")
	}
}
