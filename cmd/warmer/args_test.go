package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWarmerFlagsFollowKaniko(t *testing.T) {
	env := map[string]string{
		"KANIKO_REGISTRY_MAP":    "index.docker.io=mirror.example",
		"KANIKO_REGISTRY_MIRROR": "ignored.example",
	}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	w, err := parseArgs([]string{
		"-i", "busybox", "--image=alpine:3", "-c", "/warm", "-f", "-d", "Dockerfile",
		"--customPlatform=linux/arm64", "-v", "debug", "--cache-ttl=6h",
		"--insecure-registry=reg.local:5000", "--build-arg", "BASE=debian",
	}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(w.images, []string{"busybox", "alpine:3"}) || w.cacheDir != "/warm" || !w.force ||
		w.dockerfile != "Dockerfile" || w.platform != "linux/arm64" {
		t.Errorf("warmer's own flags: %+v", w)
	}
	o := w.shared
	if o.Verbosity != "debug" || o.CacheTTL != 6*time.Hour || !slices.Equal(o.InsecureRegistries, []string{"reg.local:5000"}) ||
		!slices.Equal(o.BuildArgs, []string{"BASE=debian"}) {
		t.Errorf("shared flags: verbosity %q ttl %s insecure %v build args %v", o.Verbosity, o.CacheTTL, o.InsecureRegistries, o.BuildArgs)
	}
	if !slices.Contains(o.RegistryMaps["index.docker.io"], "mirror.example") {
		t.Errorf("KANIKO_REGISTRY_MAP not read: %v", o.RegistryMaps)
	}
	if slices.Contains(o.RegistryMaps["index.docker.io"], "ignored.example") {
		t.Errorf("KANIKO_REGISTRY_MIRROR was read; Kaniko's warmer ignores it: %v", o.RegistryMaps)
	}
	if _, err := parseArgs(nil, getenv); err == nil || !strings.Contains(err.Error(), "at least one image") {
		t.Errorf("no image: %v, want Kaniko's message", err)
	}
	w, err = parseArgs([]string{"--dockerfile=Dockerfile"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if w.cacheDir != "/cache" {
		t.Errorf("default cache dir %q, want /cache", w.cacheDir)
	}
}

func TestWarmerRejectsBadInputInOneLine(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-i", "busybox", "--destination=reg/app"},
		{"-i", "busybox", "stray"},
		{"-i", "busybox", "--verbosity=loud"},
		{"-i", "busybox", "--cache-ttl=soon"},
	} {
		_, err := parseArgs(args, func(string) (string, bool) { return "", false })
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line", args, err)
		}
	}
}
