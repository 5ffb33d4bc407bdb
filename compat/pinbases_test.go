package compat

import (
	"strings"
	"testing"
)

func TestWithPinnedBases(t *testing.T) {
	dt := "ARG BASE=busybox\nFROM --platform=$BUILDPLATFORM ${BASE} AS build\nRUN true\nFROM build\nFROM \\\n  debian:12\nFROM scratch\n"
	d, err := ParseDockerfileBytes("Dockerfile", []byte(dt), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, changed, err := d.WithPinnedBases([]byte(dt), map[string]string{
		"busybox":   "mirror:5000/library/busybox@sha256:aa",
		"debian:12": "mirror:5000/library/debian@sha256:bb",
	})
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	want := "ARG BASE=busybox\nFROM --platform=$BUILDPLATFORM mirror:5000/library/busybox@sha256:aa AS build\nRUN true\nFROM build\nFROM mirror:5000/library/debian@sha256:bb\n#\nFROM scratch\n"
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if strings.Count(string(got), "\n") != strings.Count(dt, "\n") {
		t.Error("line numbers moved")
	}
}
