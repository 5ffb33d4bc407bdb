package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"unicode/utf8"

	"github.com/tonistiigi/fsutil"
	"github.com/tonistiigi/fsutil/types"

	"github.com/kilnbuild/kiln/flagmap"
)

// unreadableFiles catches context files the executor cannot open, or
// whose names BuildKit cannot send.
// BuildKit's file sync sends such a file as empty without a word, so
// `COPY key.pem /` would build an image with an empty key; Kaniko fails
// naming the file, and so does kiln.
type unreadableFiles struct {
	stop    context.CancelCauseFunc // ends the solve at the first one
	context string                  // as the user named it

	mu    sync.Mutex
	first error
}

func newUnreadableFiles(stop context.CancelCauseFunc, contextName string) *unreadableFiles {
	return &unreadableFiles{stop: stop, context: contextName}
}

// watch returns fs reporting its open failures to u; a nil u watches nothing.
func (u *unreadableFiles) watch(fs fsutil.FS) fsutil.FS {
	if u == nil {
		return fs
	}
	return &openChecked{FS: fs, files: u}
}

// Err is the first file that could not be read, or nil.
func (u *unreadableFiles) Err() error {
	if u == nil {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.first
}

func (u *unreadableFiles) failed(path string, err error) {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		err = pathErr.Err
	}
	u.fail(errors.New(cannotReadInContext(path, u.context, err.Error())))
}

// cannotReadInContext is the one wording of an unreadable context path,
// whether kiln's sender (here) or BuildKit (mistakes.go) meets it first;
// why, when known, is the system's reason.
func cannotReadInContext(path, context, why string) string {
	if why != "" {
		context += " (" + why + ")"
	}
	return fmt.Sprintf("cannot read %s in the build context %s: make it readable by the executor's user or exclude it in .dockerignore", path, context)
}

// fail keeps the first problem and ends the solve with it.
func (u *unreadableFiles) fail(err error) {
	u.mu.Lock()
	if u.first == nil {
		u.first = err
	}
	first := u.first
	u.mu.Unlock()
	u.stop(first)
}

type openChecked struct {
	fsutil.FS
	files *unreadableFiles
}

// Walk names the file when sending it failed because its name or link
// target is not UTF-8: BuildKit's file sync sends them as protobuf strings
// and fails with "grpc: error while marshaling", naming nothing, where
// Kaniko copies the file. (Checked after fn: a file .dockerignore excludes
// is never sent, and may have any name.)
func (c *openChecked) Walk(ctx context.Context, target string, fn fs.WalkDirFunc) error {
	return c.FS.Walk(ctx, target, func(path string, entry fs.DirEntry, err error) error {
		sendErr := fn(path, entry, err)
		if sendErr == nil || err != nil {
			return sendErr
		}
		what := ""
		if !utf8.ValidString(path) {
			what = "a name"
		} else if fi, err := entry.Info(); err == nil {
			if st, ok := fi.Sys().(*types.Stat); ok && !utf8.ValidString(st.Linkname) {
				what = "a link target"
			}
		}
		if what == "" {
			return sendErr
		}
		problem := fmt.Errorf("%s in the build context has %s that is not valid UTF-8, which BuildKit cannot send: rename it or exclude it in .dockerignore", flagmap.Printable(path), what)
		c.files.fail(problem)
		return problem
	})
}

func (c *openChecked) Open(path string) (io.ReadCloser, error) {
	r, err := c.FS.Open(path)
	if err != nil {
		c.files.failed(path, err)
	}
	return r, err
}
