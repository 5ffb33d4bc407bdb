package engine

import (
	"bytes"
	"strings"
)

// LineWriter calls Emit with each complete line written to it (without the
// line ending): a daemon's log and BuildKit's plain progress arrive in
// arbitrary chunks. It is not safe for concurrent use.
type LineWriter struct {
	Emit    func(line string)
	partial []byte
}

func (w *LineWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.Emit(strings.TrimRight(string(w.partial[:i]), "\r"))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

// Partial is what was written after the last line ending.
func (w *LineWriter) Partial() string { return string(w.partial) }

// Flush emits a final line that lacked its line ending.
func (w *LineWriter) Flush() {
	if len(w.partial) > 0 {
		w.Emit(string(w.partial))
		w.partial = nil
	}
}
