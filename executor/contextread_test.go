package executor

import (
	"context"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

// A file the sender cannot open is reported in the words of an unreadable
// context directory (mistakes.go): which of the two meets it first depends
// on timing, the message must not.
func TestUnreadableFileNamesTheContext(t *testing.T) {
	ctx, stop := context.WithCancelCause(context.Background())
	u := newUnreadableFiles(stop, "/workspace/app")
	u.failed("data/key.pem", &fs.PathError{Op: "open", Path: "/workspace/app/data/key.pem", Err: syscall.EACCES})
	want := "cannot read data/key.pem in the build context /workspace/app (permission denied): make it readable"
	if err := u.Err(); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Err() = %v, want it to contain %q", err, want)
	}
	if context.Cause(ctx) != u.Err() {
		t.Errorf("the solve was not stopped with the error: cause %v", context.Cause(ctx))
	}
}
