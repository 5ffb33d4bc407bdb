package ociruntime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// Credentials are the group ids a RUN process gets.
type Credentials struct {
	GID    uint32
	Groups []uint32 // supplementary groups; empty clears them
}

// KanikoCredentials returns the groups Kaniko v1.23.2 runs a RUN with for
// uid (pkg/util/syscall_credentials.go, built without cgo): Kaniko resolves
// only the user part of USER, so the gid is the primary gid of uid's
// passwd entry, else uid itself with no supplementary groups; with an
// entry the groups are that gid plus every /etc/group entry listing the
// user's name. The files are read inside rootfs, never outside it.
func KanikoCredentials(rootfs string, uid uint32) (Credentials, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return Credentials{}, fmt.Errorf("opening the container rootfs: %w", err)
	}
	defer root.Close()
	passwd, err := readInRoot(root, "/etc/passwd")
	if errors.Is(err, fs.ErrNotExist) {
		return Credentials{GID: uid}, nil
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("reading the image's /etc/passwd: %w", err)
	}
	entry, ok := lookupUser(passwd, strconv.FormatUint(uint64(uid), 10))
	if !ok {
		return Credentials{GID: uid}, nil
	}
	gid, err := strconv.ParseUint(entry.gid, 10, 32)
	if err != nil {
		return Credentials{}, fmt.Errorf("the image's /etc/passwd gives user %s the group id %q, not a valid id", entry.name, entry.gid)
	}
	creds := Credentials{GID: uint32(gid), Groups: []uint32{uint32(gid)}}
	// Kaniko fails the RUN without /etc/group; kiln runs it with the
	// primary group only.
	group, err := readInRoot(root, "/etc/group")
	if errors.Is(err, fs.ErrNotExist) {
		return creds, nil
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("reading the image's /etc/group: %w", err)
	}
	for _, id := range memberGroups(group, entry.name) {
		gid, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return Credentials{}, fmt.Errorf("the image's /etc/group lists %s in a group with id %q, not a valid id", entry.name, id)
		}
		creds.Groups = append(creds.Groups, uint32(gid))
	}
	return creds, nil
}

type passwdEntry struct{ name, gid string }

// lookupUser finds uid as Kaniko does (util.LookupUser with the uid as a
// string): first a user *named* uid, then the first entry with that uid.
// Lines are read as Go's os/user reads them without cgo.
func lookupUser(passwd []byte, uid string) (passwdEntry, bool) {
	var byID *passwdEntry
	for _, line := range colonLines(passwd) {
		if strings.Count(line, ":") < 6 {
			continue
		}
		parts := strings.SplitN(line, ":", 7)
		if parts[0] == "" || parts[0][0] == '+' || parts[0][0] == '-' || !isInt(parts[2]) || !isInt(parts[3]) {
			continue
		}
		entry := passwdEntry{name: parts[0], gid: parts[3]}
		if parts[0] == uid {
			return entry, true
		}
		if parts[2] == uid && byID == nil {
			byID = &entry
		}
	}
	if byID == nil {
		return passwdEntry{}, false
	}
	return *byID, true
}

// memberGroups returns the ids of the groups listing name as a member, in
// file order (Kaniko's localGroups).
func memberGroups(group []byte, name string) []string {
	var ids []string
	for _, line := range colonLines(group) {
		parts := strings.SplitN(line, ":", 4)
		if len(parts) < 4 || !isInt(parts[2]) {
			continue
		}
		for member := range strings.SplitSeq(parts[3], ",") {
			if member == name {
				ids = append(ids, parts[2])
			}
		}
	}
	return ids
}

// colonLines returns the trimmed lines that are neither blank nor comments.
func colonLines(data []byte) []string {
	var lines []string
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			lines = append(lines, string(line))
		}
	}
	return lines
}

func isInt(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// maxUserFile bounds what is read of /etc/passwd or /etc/group, as
// BuildKit's own user lookup does.
const maxUserFile = 10 << 20

// readInRoot reads name resolving symbolic links as if root were "/", as
// Kaniko (which runs in the build's root) and BuildKit's user lookup do: a
// link pointing above the root stops at the root. os.Root keeps every
// access inside root even if the tree changes meanwhile.
func readInRoot(root *os.Root, name string) ([]byte, error) {
	resolved, err := resolveInRoot(root, name)
	if err != nil {
		return nil, err
	}
	f, err := root.Open(resolved)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxUserFile+1))
	if err == nil && len(data) > maxUserFile {
		err = fmt.Errorf("%s is larger than %d bytes", name, maxUserFile)
	}
	return data, err
}

// maxSymlinks is Linux's limit on links followed in one lookup.
const maxSymlinks = 40

// resolveInRoot returns name, relative to root, with every symbolic link
// resolved within root.
func resolveInRoot(root *os.Root, name string) (string, error) {
	pending := strings.Split(name, "/")
	var resolved []string
	for links := 0; len(pending) > 0; {
		part := pending[0]
		pending = pending[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			if len(resolved) > 0 {
				resolved = resolved[:len(resolved)-1]
			}
			continue
		}
		candidate := path.Join(append(resolved, part)...)
		info, err := root.Lstat(candidate)
		if err != nil {
			return "", err
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			resolved = append(resolved, part)
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		target, err := root.Readlink(candidate)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			resolved = resolved[:0]
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	return path.Join(append([]string{"."}, resolved...)...), nil
}
