package flagmap

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// applyOtherCommandLines turns the fork's and Kimia's spellings into the
// Kaniko options that mean the same, after the environment is read.
func applyOtherCommandLines(o *Options) error {
	if o.Dryrun {
		o.MigrationDryRun = true
	}
	if o.GitBranch != "" {
		o.Git.Branch = o.GitBranch
	}
	if o.GitTokenUser != "" {
		o.Env.GitUsername = o.GitTokenUser
	}
	if o.GitRevision != "" && strings.HasPrefix(o.Context, "git://") {
		// Kaniko's git://host/repo#ref#commit; a bare #commit is fetched as a ref.
		if strings.Count(o.Context, "#") > 1 {
			return usageErrorf("--git-revision", "--git-revision=%s: --context already names a commit (#ref#commit); give the commit in one place", o.GitRevision)
		}
		o.Context += "#" + o.GitRevision
	}
	if o.Timestamp != "" {
		epoch, err := strconv.ParseInt(o.Timestamp, 10, 64)
		if err != nil || epoch < 0 {
			return usageErrorf("--timestamp", "--timestamp=%q is not a Unix time; give whole seconds since 1970, e.g. --timestamp=1700000000", o.Timestamp)
		}
		o.SourceDateEpoch = &epoch
		o.Reproducible = true
	}
	return nil
}

// Secret is one parsed --secret: the value comes from File or from the
// variable Env.
type Secret struct {
	ID   string
	File string
	Env  string
}

// ParseSecrets reads --secret specs the way the fork (and buildx) does:
// id=ID[,src|source=FILE][,env=VAR][,type=file|env]; with neither src nor
// env the variable ID is used when set, else the file ID.
func ParseSecrets(specs []string, getenv func(string) (string, bool)) ([]Secret, error) {
	var out []Secret
	seen := map[string]bool{}
	for _, spec := range specs {
		s, err := parseSecret(spec, getenv)
		if err != nil {
			return nil, usageErrorf("--secret", "--secret %s: %v", spec, err)
		}
		if seen[s.ID] {
			return nil, usageErrorf("--secret", "--secret %s: id %q is given twice; give each secret once", spec, s.ID)
		}
		seen[s.ID] = true
		out = append(out, s)
	}
	return out, nil
}

func parseSecret(spec string, getenv func(string) (string, bool)) (Secret, error) {
	var s Secret
	var typ, src string
	for _, part := range strings.Split(spec, ",") {
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return s, fmt.Errorf("%q is not key=value; write id=ID[,src=FILE|,env=VAR]", part)
		}
		switch key {
		case "id":
			s.ID = val
		case "type":
			if val != "file" && val != "env" {
				return s, fmt.Errorf("type=%s: use type=file or type=env", val)
			}
			typ = val
		case "src", "source":
			src = val
		case "env":
			s.Env = val
		default:
			return s, fmt.Errorf("unknown key %q; the keys are id, src, env and type", key)
		}
	}
	switch {
	case s.ID == "":
		return s, fmt.Errorf("no id; write id=ID[,src=FILE|,env=VAR]")
	case src != "" && s.Env != "":
		return s, fmt.Errorf("give either src or env, not both")
	case typ == "file" && s.Env != "":
		return s, fmt.Errorf("env= cannot be used with type=file; use src=FILE")
	case typ == "env" && src != "":
		s.Env = src
	case src != "":
		s.File = src
	case s.Env != "":
	case typ == "env":
		s.Env = s.ID
	case typ == "file":
		s.File = s.ID
	default:
		if _, ok := getenv(s.ID); ok {
			s.Env = s.ID
		} else {
			s.File = s.ID
		}
	}
	return s, nil
}

// ReadSecrets returns each secret's value, read once: from its file or its
// variable. Errors name the secret and the source, never a value.
func ReadSecrets(secrets []Secret, getenv func(string) (string, bool)) (map[string][]byte, error) {
	values := make(map[string][]byte, len(secrets))
	for _, s := range secrets {
		if s.Env != "" {
			v, ok := getenv(s.Env)
			if !ok {
				return nil, usageErrorf("--secret", "--secret id=%s: the variable %s is not set; set it or give src=FILE", s.ID, s.Env)
			}
			values[s.ID] = []byte(v)
			continue
		}
		v, err := os.ReadFile(s.File)
		if err != nil {
			return nil, usageErrorf("--secret", "--secret id=%s: cannot read %s (%v); give an existing file as src=FILE or the variable as env=VAR", s.ID, s.File, pathErrText(err))
		}
		values[s.ID] = v
	}
	return values, nil
}

// pathErrText is the reason of a file error without repeating the path.
func pathErrText(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// CacheSpec is one --import-cache or --export-cache value.
type CacheSpec struct {
	Type  string
	Attrs map[string]string
}

// ParseCacheSpec reads buildctl's cache syntax: type=NAME,key=value,...; a
// value without type= is a registry reference, as buildctl takes it.
func ParseCacheSpec(flag, spec string) (CacheSpec, error) {
	c := CacheSpec{Attrs: map[string]string{}}
	if !strings.Contains(spec, "=") {
		return CacheSpec{Type: "registry", Attrs: map[string]string{"ref": spec}}, nil
	}
	for _, part := range strings.Split(spec, ",") {
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return c, usageErrorf(flag, "%s %s: %q is not key=value; write type=registry,ref=REPO:TAG", flag, spec, part)
		}
		if key == "type" {
			c.Type = val
			continue
		}
		c.Attrs[key] = val
	}
	if c.Type == "" {
		return c, usageErrorf(flag, "%s %s: no type; write type=registry,ref=REPO:TAG or type=local,...", flag, spec)
	}
	return c, nil
}

// validateOtherCommandLines checks the fork's and Kimia's values that the
// parser takes as plain strings.
func validateOtherCommandLines(o *Options) error {
	if o.Sign && (o.NoPush || len(o.Destinations) == 0) {
		return usageErrorf("--sign", "--sign signs what is pushed, but this build pushes nothing; add a --destination and drop --no-push, or drop --sign")
	}
	if _, err := Attestations(o); err != nil {
		return err
	}
	if o.ImageFormat == "oci" {
		return usageErrorf("--image-format", "--image-format=oci is not supported by kiln: it writes Docker schema 2 like Kaniko v1.23.2; use --image-format=docker or leave the flag out")
	}
	if _, err := ParseSecrets(o.Secrets, func(string) (string, bool) { return "", false }); err != nil {
		return err
	}
	for _, spec := range o.ImportCache {
		if _, err := ParseCacheSpec("--import-cache", spec); err != nil {
			return err
		}
	}
	for _, spec := range o.ExportCache {
		if _, err := ParseCacheSpec("--export-cache", spec); err != nil {
			return err
		}
	}
	for _, opt := range o.BuildkitOpts {
		if !strings.Contains(opt, "=") {
			return usageErrorf("--buildkit-opt", "--buildkit-opt %s: write key=value, e.g. --buildkit-opt build-arg:FOO=bar", opt)
		}
	}
	return nil
}

// ReadGitTokenFile fills GIT_TOKEN from Kimia's --git-token-file. It reads
// a file, so it runs just before the context is fetched, not while parsing.
func ReadGitTokenFile(o *Options) error {
	if o.GitTokenFile == "" {
		return nil
	}
	token, err := os.ReadFile(o.GitTokenFile)
	if err != nil {
		return usageErrorf("--git-token-file", "--git-token-file %s: %v; mount the token there or leave the flag out", o.GitTokenFile, pathErrText(err))
	}
	o.Env.GitToken = strings.TrimSpace(string(token))
	return nil
}

// AttestRequest is what Kimia's --attestation and --attest ask for.
type AttestRequest struct {
	SBOM       bool
	Provenance string // "", "min" or "max"
}

// Any reports whether any attestation is asked for.
func (a AttestRequest) Any() bool { return a.SBOM || a.Provenance != "" }

// Attestations reads --attest (which replaces --attestation) or
// --attestation: min is provenance mode=min, max an SBOM and provenance
// mode=max.
func Attestations(o *Options) (AttestRequest, error) {
	var req AttestRequest
	if len(o.Attest) == 0 {
		switch o.Attestation {
		case "min":
			req.Provenance = "min"
		case "max":
			req.SBOM, req.Provenance = true, "max"
		}
		return req, nil
	}
	for _, spec := range o.Attest {
		var typ, mode string
		for _, part := range strings.Split(spec, ",") {
			key, val, _ := strings.Cut(part, "=")
			switch key {
			case "type":
				typ = val
			case "mode":
				mode = val
			default:
				return req, usageErrorf("--attest", "--attest %s: unknown key %q; kiln takes type=sbom or type=provenance[,mode=min|max]", spec, key)
			}
		}
		switch {
		case typ == "sbom" && mode == "":
			req.SBOM = true
		case typ == "provenance" && (mode == "" || mode == "min" || mode == "max"):
			req.Provenance = mode
			if mode == "" {
				req.Provenance = "min"
			}
		default:
			return req, usageErrorf("--attest", "--attest %s: write type=sbom or type=provenance[,mode=min|max]", spec)
		}
	}
	return req, nil
}
