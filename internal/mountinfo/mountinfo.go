// Package mountinfo reads /proc/<pid>/mountinfo: the migration preflight and
// the embedded engine's ignore list both need the container's mounts.
package mountinfo

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo.
type Mount struct {
	Point    string // unescaped mount point
	FSType   string
	ReadOnly bool
}

// Parse reads mountinfo lines; malformed lines are skipped.
func Parse(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 6 || len(postFields) < 1 {
			continue
		}
		out = append(out, Mount{
			Point:    Unescape(fields[4]),
			FSType:   postFields[0],
			ReadOnly: strings.HasPrefix(fields[5], "ro"),
		})
	}
	return out, sc.Err()
}

// Unescape decodes mountinfo's octal escapes (\040 for a space).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
