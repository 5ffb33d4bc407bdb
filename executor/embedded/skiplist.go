package embedded

import (
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnbuild/kiln/internal/mountinfo"
)

// skipList holds the paths of the container's root that are the
// container's own, never the build's: what Kaniko leaves out of every layer
// because it is not the image's (its own directory, every mount point, the
// runtime's /etc/hosts and friends) plus kiln's own state. Paths are
// relative to the root, without leading slash.
type skipList struct {
	exact    map[string]bool
	prefixes []string // a name prefix: "tmp/apt-key-gpghome" skips "tmp/apt-key-gpghome.XYZ"
}

func newSkipList() *skipList { return &skipList{exact: map[string]bool{}} }

// add skips an absolute path (and everything below it).
func (s *skipList) add(abs string) {
	rel := strings.Trim(filepath.Clean("/"+abs), "/")
	if rel != "" {
		s.exact[rel] = true
	}
}

func (s *skipList) addPrefix(abs string) {
	s.prefixes = append(s.prefixes, strings.Trim(filepath.Clean("/"+abs), "/"))
}

func (s *skipList) has(rel string) bool {
	if s.exact[rel] {
		return true
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(rel, p) {
			return true
		}
	}
	return false
}

// hasBelow reports a skipped path strictly inside rel.
func (s *skipList) hasBelow(rel string) bool {
	prefix := rel + "/"
	if rel == "" {
		prefix = ""
	}
	for p := range s.exact {
		if strings.HasPrefix(p, prefix) && p != rel {
			return true
		}
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// holdsOnlySkipped reports that root's directory rel contains skipped
// paths and nothing else but directories that do the same.
func (s *skipList) holdsOnlySkipped(root, rel string) bool {
	if !s.hasBelow(rel) {
		return false
	}
	names, err := readNames(filepath.Join(root, rel))
	if err != nil || len(names) == 0 {
		// An empty directory is the image's own (/tmp, which holds
		// apt's skipped key directory only while apt runs).
		return false
	}
	for _, name := range names {
		child := join(rel, name)
		if s.has(child) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(root, child))
		if err != nil || !fi.IsDir() || !s.holdsOnlySkipped(root, child) {
			return false
		}
	}
	return true
}

// kanikoSkipList is Kaniko's list of what is never the image's, read for
// the container kiln runs in: its directory, /etc/mtab, apt's temporary
// key directory, and every mount point of mountinfo (/proc, /dev, /sys,
// /etc/hosts, /etc/resolv.conf, volumes, secrets). own adds kiln's paths
// (the state directory, the build context) that must survive every RUN.
func kanikoSkipList(kanikoDir string, mountinfo io.Reader, own ...string) (*skipList, error) {
	s := newSkipList()
	s.add(kanikoDir)
	s.add("/etc/mtab")
	s.addPrefix("/tmp/apt-key-gpghome")
	points, err := mountPoints(mountinfo)
	if err != nil {
		return nil, err
	}
	for _, p := range points {
		s.add(p)
	}
	for _, p := range own {
		if p != "" {
			s.add(p)
		}
	}
	return s, nil
}

// mountPoints lists the mount points of a /proc/self/mountinfo, but "/".
func mountPoints(r io.Reader) ([]string, error) {
	mounts, err := mountinfo.Parse(r)
	var out []string
	for _, m := range mounts {
		if m.Point != "/" {
			out = append(out, m.Point)
		}
	}
	return out, err
}

// under is the part of the list inside dir, relative to dir: the skip list
// of a subtree synced on its own.
func (s *skipList) under(dir string) *skipList {
	base := strings.Trim(filepath.Clean("/"+dir), "/")
	out := newSkipList()
	for p := range s.exact {
		if rel, ok := strings.CutPrefix(p, base+"/"); ok {
			out.exact[rel] = true
		}
	}
	for _, p := range s.prefixes {
		if rel, ok := strings.CutPrefix(p, base+"/"); ok {
			out.prefixes = append(out.prefixes, rel)
		}
	}
	return out
}
