package main

import (
	"fmt"
	"io"

	"github.com/kilnbuild/kiln/flagmap"
	"github.com/spf13/pflag"
)

// warmerArgs are Kaniko's warmer flags. Flags the warmer shares with the
// executor (logging, registry access, --build-arg, --cache-ttl) are handed
// to flagmap so both binaries parse and validate them identically; the
// warmer's own flags reuse executor shorthands with other meanings (-c is
// --cache-dir, -f --force, -d --dockerfile), so they are parsed here.
type warmerArgs struct {
	images     []string
	cacheDir   string
	force      bool
	platform   string
	dockerfile string
	help       bool
	shared     flagmap.Options
}

// sharedFlags are the executor flags the warmer accepts: name → shorthand.
var sharedFlags = map[string]string{
	"verbosity": "v", "log-format": "", "log-timestamp": "",
	"cache-ttl": "", "build-arg": "",
	"insecure-pull": "", "skip-tls-verify-pull": "",
	"insecure-registry": "", "skip-tls-verify-registry": "",
	"registry-certificate": "", "registry-client-cert": "",
	"registry-map": "", "registry-mirror": "", "skip-default-registry-fallback": "",
}

// warmerEnv is the environment Kaniko's warmer reads (not
// KANIKO_REGISTRY_MIRROR, unlike the executor).
var warmerEnv = map[string]bool{"KANIKO_REGISTRY_MAP": true, "DOCKER_CONFIG": true, "UPSTREAM_CLIENT_TYPE": true}

func parseArgs(args []string, getenv func(string) (string, bool)) (*warmerArgs, error) {
	w := &warmerArgs{}
	fs := pflag.NewFlagSet("warmer", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringArrayVarP(&w.images, "image", "i", nil, "")
	fs.StringVarP(&w.cacheDir, "cache-dir", "c", "/cache", "")
	fs.BoolVarP(&w.force, "force", "f", false, "")
	fs.StringVar(&w.platform, "customPlatform", "", "")
	fs.StringVarP(&w.dockerfile, "dockerfile", "d", "", "")
	fs.BoolVarP(&w.help, "help", "h", false, "")

	var passed []string
	for _, row := range flagmap.Table {
		shorthand, ok := sharedFlags[row.Name]
		if !ok {
			continue
		}
		f := fs.VarPF(&passthrough{name: row.Name, isBool: row.Kind == flagmap.Bool, out: &passed}, row.Name, shorthand, "")
		if row.Kind == flagmap.Bool {
			f.NoOptDefVal = "true"
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%v (see warmer --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: the warmer takes only flags (see warmer --help)", fs.Arg(0))
	}
	if w.help {
		return w, nil
	}
	inv, err := flagmap.Parse(passed, func(key string) (string, bool) {
		if !warmerEnv[key] {
			return "", false
		}
		return getenv(key)
	})
	if err != nil {
		return nil, err
	}
	w.shared = inv.Options
	if err := flagmap.ValidateLogging(&w.shared); err != nil {
		return nil, err
	}
	if len(w.images) == 0 && w.dockerfile == "" {
		return nil, fmt.Errorf("You must select at least one image to cache or a dockerfilepath to parse (give --image or --dockerfile)")
	}
	return w, nil
}

// passthrough records a shared flag as "--name=value" for flagmap.
type passthrough struct {
	name   string
	isBool bool
	out    *[]string
}

func (p *passthrough) Set(v string) error {
	*p.out = append(*p.out, "--"+p.name+"="+v)
	return nil
}

func (p *passthrough) String() string { return "" }

func (p *passthrough) Type() string {
	if p.isBool {
		return "bool"
	}
	return "string"
}
