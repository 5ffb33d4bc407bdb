package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Scratch filesystems -scratch-fs chooses between.
const (
	scratchJournaled = "journaled"
	scratchHere      = "here"
)

// mountJournaledScratch makes an ext4 filesystem with a journal in a sparse
// file under parent and mounts it, for the builds' scratch. Without a
// journal (as some machines' root filesystem is), ext4 places every new
// inode after a scan past those deleted in the last half minute, so each
// tool pays for the files the tool before it deleted, in proportion to the
// files it creates itself: an artefact of the machine that no node's disk
// has. unmount removes the filesystem and its file.
func mountJournaledScratch(parent string) (dir string, unmount func(), err error) {
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", nil, fmt.Errorf("%s is needed (e2fsprogs, util-linux)", tool)
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(parent, &st); err != nil {
		return "", nil, err
	}
	free := int64(st.Bavail) * st.Bsize
	const least = 24 << 30
	if free < least {
		return "", nil, fmt.Errorf("%s has %d GiB free, the bench needs %d GiB", parent, free>>30, least>>30)
	}
	img, err := os.CreateTemp(parent, "kiln-bench-fs-*.img")
	if err != nil {
		return "", nil, err
	}
	imgPath := img.Name()
	// Sparse: only what the builds write takes space.
	err = errors.Join(img.Truncate(min(free, 256<<30)), img.Close())
	if err == nil {
		if out, merr := exec.Command("mkfs.ext4", "-q", "-F", "-O", "has_journal", imgPath).CombinedOutput(); merr != nil {
			err = fmt.Errorf("mkfs.ext4: %v: %s", merr, strings.TrimSpace(string(out)))
		}
	}
	if err == nil {
		dir, err = os.MkdirTemp(parent, "kiln-bench-fs-")
	}
	if err == nil {
		if out, merr := exec.Command("mount", "-o", "loop", imgPath, dir).CombinedOutput(); merr != nil {
			os.Remove(dir)
			err = fmt.Errorf("mounting %s: %v: %s", imgPath, merr, strings.TrimSpace(string(out)))
		}
	}
	if err != nil {
		os.Remove(imgPath)
		return "", nil, err
	}
	return dir, func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: leaving %s mounted from %s: %v: %s\n", dir, imgPath, err, out)
			return
		}
		os.Remove(dir)
		os.Remove(imgPath)
	}, nil
}

// scratchParent is where run makes its scratch dir, as -scratch-fs asks.
func scratchParent(fs, scratch string) (string, func(), error) {
	switch fs {
	case scratchHere:
		return scratch, func() {}, nil
	case scratchJournaled:
		dir, unmount, err := mountJournaledScratch(scratch)
		if err != nil {
			return "", nil, fmt.Errorf("-scratch-fs %s: %w (-scratch-fs %s uses -scratch as it is)", fs, err, scratchHere)
		}
		return dir, unmount, nil
	}
	return "", nil, fmt.Errorf("-scratch-fs: %q is neither %s nor %s", fs, scratchJournaled, scratchHere)
}

// journalOf says whether the ext4 filesystem on device has a journal ("" when
// it cannot tell, as when the device is not readable).
func journalOf(device string) string {
	if !strings.HasPrefix(device, "/dev/") {
		return ""
	}
	out, err := exec.Command("dumpe2fs", "-h", device).Output()
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if features, ok := strings.CutPrefix(line, "Filesystem features:"); ok {
			if strings.Contains(features, "has_journal") {
				return "with a journal"
			}
			return "without a journal"
		}
	}
	return ""
}
