package ociruntime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// BuildKit's trace recorder is always on, so it gives every RUN these
// variables (executor/oci/spec.go tracingEnvVars, appended in this order
// when the build did not set the name) and a bind mount of its socket.
var tracingEnv = []string{
	"OTEL_TRACES_EXPORTER=otlp",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=unix://" + tracingSocketPath,
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc",
}

const tracingSocketPath = "/dev/otel-grpc.sock"

// errNoRootfs reports a config without root.path, which no RUN produces.
var errNoRootfs = errors.New("root.path is missing")

// isTraceparent reports an entry in the W3C form BuildKit's
// childprocess.Environ writes: TRACEPARENT=vv-<32 hex>-<16 hex>-ff.
func isTraceparent(entry string) bool {
	value, ok := strings.CutPrefix(entry, "TRACEPARENT=")
	if !ok || len(value) != 55 {
		return false
	}
	for i, c := range value {
		if i == 2 || i == 35 || i == 52 {
			if c != '-' {
				return false
			}
		} else if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// RewriteConfig returns config (an OCI runtime config.json) without
// BuildKit's tracing additions and with the group ids Kaniko's RUN runs
// with; changed is false when config needs no change. Fields it does not
// change keep their meaning (they are copied as raw JSON).
func RewriteConfig(config []byte, bundle string) (_ []byte, changed bool, _ error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(config, &doc); err != nil {
		return nil, false, err
	}
	if raw, ok := doc["mounts"]; ok {
		mounts, err := withoutTracingMount(raw)
		if err != nil {
			return nil, false, fmt.Errorf("mounts: %w", err)
		}
		changed = setIfChanged(doc, "mounts", mounts) || changed
	}
	if raw, ok := doc["process"]; ok {
		process, err := rewriteProcess(raw, func() (string, error) { return rootfsPath(doc, bundle) })
		if err != nil {
			return nil, false, fmt.Errorf("process: %w", err)
		}
		changed = setIfChanged(doc, "process", process) || changed
	}
	if !changed {
		return config, false, nil
	}
	out, err := json.Marshal(doc)
	return out, true, err
}

// setIfChanged stores value under key unless it is what is there already.
func setIfChanged(doc map[string]json.RawMessage, key string, value json.RawMessage) bool {
	if bytes.Equal(doc[key], value) {
		return false
	}
	doc[key] = value
	return true
}

// withoutTracingMount drops the trace socket's mount. Any mount there is
// BuildKit's: it adds its own last and keeps one mount per destination.
func withoutTracingMount(raw json.RawMessage) (json.RawMessage, error) {
	var mounts []json.RawMessage
	if err := json.Unmarshal(raw, &mounts); err != nil {
		return nil, err
	}
	kept := mounts[:0:0]
	for _, m := range mounts {
		var mount struct {
			Destination string `json:"destination"`
		}
		if err := json.Unmarshal(m, &mount); err != nil {
			return nil, err
		}
		if mount.Destination != tracingSocketPath {
			kept = append(kept, m)
		}
	}
	if len(kept) == len(mounts) {
		return raw, nil
	}
	return json.Marshal(kept)
}

// rewriteProcess strips BuildKit's tracing variables from process.env and
// sets Kaniko's groups in process.user; rootfs is asked for only when the
// user's files must be read.
func rewriteProcess(raw json.RawMessage, rootfs func() (string, error)) (json.RawMessage, error) {
	var process map[string]json.RawMessage
	if err := json.Unmarshal(raw, &process); err != nil {
		return nil, err
	}
	changed := false
	if rawEnv, ok := process["env"]; ok {
		var env []string
		if err := json.Unmarshal(rawEnv, &env); err != nil {
			return nil, fmt.Errorf("env: %w", err)
		}
		if kept := WithoutTracingEnv(env); len(kept) != len(env) {
			encoded, err := json.Marshal(kept)
			if err != nil {
				return nil, err
			}
			changed = setIfChanged(process, "env", encoded) || changed
		}
	}
	if rawUser, ok := process["user"]; ok {
		user, err := rewriteUser(rawUser, rootfs)
		if err != nil {
			return nil, fmt.Errorf("user: %w", err)
		}
		changed = setIfChanged(process, "user", user) || changed
	}
	if !changed {
		return raw, nil
	}
	return json.Marshal(process)
}

// WithoutTracingEnv returns env without the entries BuildKit appended to
// it: its TRACEPARENT (and TRACESTATE) last, before them the OTEL_*
// variables with BuildKit's values that the build had not set. The build's
// own entries of these names come earlier and stay.
func WithoutTracingEnv(env []string) []string {
	n := len(env)
	if n >= 2 && strings.HasPrefix(env[n-1], "TRACESTATE=") && isTraceparent(env[n-2]) {
		n -= 2
	} else if n >= 1 && isTraceparent(env[n-1]) {
		n--
	}
	for i := len(tracingEnv) - 1; i >= 0 && n > 0; i-- {
		if env[n-1] == tracingEnv[i] && !hasName(env[:n-1], envName(tracingEnv[i])) {
			n--
		}
	}
	return env[:n:n]
}

func envName(entry string) string {
	name, _, _ := strings.Cut(entry, "=")
	return name
}

func hasName(env []string, name string) bool {
	for _, e := range env {
		if envName(e) == name {
			return true
		}
	}
	return false
}

// rewriteUser sets gid and additionalGids to Kaniko's for a non-root uid.
// For uid 0 (no USER, or root) BuildKit's ids stay.
func rewriteUser(raw json.RawMessage, rootfs func() (string, error)) (json.RawMessage, error) {
	var user map[string]json.RawMessage
	if err := json.Unmarshal(raw, &user); err != nil {
		return nil, err
	}
	var uid uint32
	if rawUID, ok := user["uid"]; ok {
		if err := json.Unmarshal(rawUID, &uid); err != nil {
			return nil, fmt.Errorf("uid: %w", err)
		}
	}
	if uid == 0 {
		return raw, nil
	}
	dir, err := rootfs()
	if err != nil {
		return nil, err
	}
	creds, err := KanikoCredentials(dir, uid)
	if err != nil {
		return nil, err
	}
	if user["gid"], err = json.Marshal(creds.GID); err != nil {
		return nil, err
	}
	delete(user, "additionalGids")
	if len(creds.Groups) > 0 {
		if user["additionalGids"], err = json.Marshal(creds.Groups); err != nil {
			return nil, err
		}
	}
	return json.Marshal(user)
}

// rootfsPath is root.path, relative to the bundle unless absolute.
func rootfsPath(doc map[string]json.RawMessage, bundle string) (string, error) {
	var root struct {
		Path string `json:"path"`
	}
	if raw, ok := doc["root"]; ok {
		if err := json.Unmarshal(raw, &root); err != nil {
			return "", fmt.Errorf("root: %w", err)
		}
	}
	if root.Path == "" {
		return "", errNoRootfs
	}
	if filepath.IsAbs(root.Path) {
		return root.Path, nil
	}
	return filepath.Join(bundle, root.Path), nil
}
