package testenv

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// DockerConfig writes a Kaniko-style config.json ({"auths":{host:{"auth":
// base64(user:pass)}}}) into a fresh directory every user can read and
// returns that directory (the value for DOCKER_CONFIG). creds maps a
// registry host to "user:password".
func DockerConfig(t testing.TB, creds map[string]string) string {
	t.Helper()
	dir := ReadableTempDir(t)
	if err := WriteDockerConfig(dir, creds); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

// WriteDockerConfig writes <dir>/config.json as DockerConfig does.
func WriteDockerConfig(dir string, creds map[string]string) error {
	auths := map[string]map[string]string{}
	for host, userPass := range creds {
		if !strings.Contains(userPass, ":") {
			return fmt.Errorf("docker config credentials for %s must be user:password", host)
		}
		auths[host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(userPass))}
	}
	data, err := json.MarshalIndent(map[string]any{"auths": auths}, "", "\t")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
