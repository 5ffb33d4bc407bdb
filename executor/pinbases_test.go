package executor

import (
	"strings"
	"testing"
)

func TestRedirects(t *testing.T) {
	same := []PinnedImage{{Image: "busybox", Pinned: "index.docker.io/library/busybox@sha256:" + strings.Repeat("a", 64)}}
	mirrored := []PinnedImage{{Image: "busybox", Pinned: "mirror.example.com/library/busybox@sha256:" + strings.Repeat("a", 64)}}
	if redirects(same) || !redirects(mirrored) {
		t.Errorf("redirects: same registry %v, mirror %v", redirects(same), redirects(mirrored))
	}
}
