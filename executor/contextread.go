package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/tonistiigi/fsutil"
)

// unreadableFiles catches context files the executor cannot open.
// BuildKit's file sync sends such a file as empty without a word, so
// `COPY key.pem /` would build an image with an empty key; Kaniko fails
// naming the file, and so does kiln.
type unreadableFiles struct {
	stop context.CancelCauseFunc // ends the solve at the first one

	mu    sync.Mutex
	first error
}

func newUnreadableFiles(stop context.CancelCauseFunc) *unreadableFiles {
	return &unreadableFiles{stop: stop}
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
	u.mu.Lock()
	if u.first == nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err
		}
		u.first = fmt.Errorf("cannot read %s in the build context (%v): make it readable by the executor's user or exclude it in .dockerignore", path, err)
	}
	first := u.first
	u.mu.Unlock()
	u.stop(first)
}

type openChecked struct {
	fsutil.FS
	files *unreadableFiles
}

func (c *openChecked) Open(path string) (io.ReadCloser, error) {
	r, err := c.FS.Open(path)
	if err != nil {
		c.files.failed(path, err)
	}
	return r, err
}
