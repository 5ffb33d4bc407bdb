package compat

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// fakeEnv is a process environment with a private HOME and no helpers.
func fakeEnv(t *testing.T, vars map[string]string) credentialEnv {
	home := t.TempDir()
	return credentialEnv{
		getenv:   func(k string) string { return vars[k] },
		homeDir:  func() (string, error) { return home, nil },
		lookPath: func(string) (string, error) { return "", errors.New("not found") },
	}
}

func writeDockerConfig(t *testing.T, dir, content string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "config.json"), content)
}

func resolveBasic(t *testing.T, kc authn.Keychain, ref string) *authn.AuthConfig {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	a, err := kc.Resolve(r.Context())
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	if a == authn.Anonymous {
		return nil
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestKeychainConfigJSON(t *testing.T) {
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	writeDockerConfig(t, dir, `{"auths":{
		"registry.example.com:5000":{"auth":"`+auth+`"},
		"https://other.example.com":{"username":"u","password":"p"},
		"https://index.docker.io/v1/":{"auth":"`+auth+`"}}}`)
	kc := fakeEnv(t, nil).keychain(CredentialOptions{DockerConfigDir: dir})

	for ref, wantUser := range map[string]string{
		"registry.example.com:5000/group/app:1": "ci",
		"other.example.com/app":                 "u",
		"busybox":                               "ci",
	} {
		cfg := resolveBasic(t, kc, ref)
		if cfg == nil {
			t.Errorf("%s: anonymous", ref)
			continue
		}
		user := cfg.Username
		if cfg.Auth != "" {
			dec, _ := base64.StdEncoding.DecodeString(cfg.Auth)
			user, _, _ = strings.Cut(string(dec), ":")
		}
		if user != wantUser {
			t.Errorf("%s: user %q, want %q", ref, user, wantUser)
		}
	}
	if cfg := resolveBasic(t, kc, "unknown.example.com/app"); cfg != nil {
		t.Errorf("unknown registry resolved to %+v", cfg)
	}
}

func TestKeychainHomeFallbackAndPrecedence(t *testing.T) {
	env := fakeEnv(t, nil)
	home, _ := env.homeDir()
	writeDockerConfig(t, filepath.Join(home, ".docker"), `{"auths":{"home.example.com":{"username":"h","password":"p"}}}`)
	configDir := t.TempDir()

	// No config in DOCKER_CONFIG: $HOME/.docker/config.json is used.
	if cfg := resolveBasic(t, env.keychain(CredentialOptions{DockerConfigDir: configDir}), "home.example.com/app"); cfg == nil || cfg.Username != "h" {
		t.Fatalf("home fallback: %+v", cfg)
	}
	// A config in DOCKER_CONFIG wins, as in Kaniko.
	writeDockerConfig(t, configDir, `{"auths":{"dc.example.com":{"username":"d","password":"p"}}}`)
	kc := env.keychain(CredentialOptions{DockerConfigDir: configDir})
	if cfg := resolveBasic(t, kc, "home.example.com/app"); cfg != nil {
		t.Errorf("home file read although DOCKER_CONFIG has a config: %+v", cfg)
	}
	if cfg := resolveBasic(t, kc, "dc.example.com/app"); cfg == nil || cfg.Username != "d" {
		t.Errorf("DOCKER_CONFIG: %+v", cfg)
	}
}

func TestKeychainMalformedConfig(t *testing.T) {
	dir := t.TempDir()
	writeDockerConfig(t, dir, `{"auths":`)
	r, _ := name.ParseReference("example.com/app")
	_, err := fakeEnv(t, nil).keychain(CredentialOptions{DockerConfigDir: dir}).Resolve(r.Context())
	if err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("malformed config: error %v", err)
	}
}

func TestKeychainGitLab(t *testing.T) {
	env := fakeEnv(t, map[string]string{
		"CI_REGISTRY":          "registry.gitlab.example.com",
		"CI_REGISTRY_USER":     "gitlab-ci-token",
		"CI_REGISTRY_PASSWORD": "job-token",
	})
	kc := env.keychain(CredentialOptions{DockerConfigDir: t.TempDir()})
	if cfg := resolveBasic(t, kc, "registry.gitlab.example.com/group/app:tag"); cfg == nil || cfg.Username != "gitlab-ci-token" || cfg.Password != "job-token" {
		t.Errorf("GitLab registry: %+v", cfg)
	}
	if cfg := resolveBasic(t, kc, "registry.example.com/app"); cfg != nil {
		t.Errorf("other registry got GitLab credentials: %+v", cfg)
	}
}

func TestCredentialSource(t *testing.T) {
	dir := t.TempDir()
	writeDockerConfig(t, dir, `{"auths":{"https://registry.example.com":{"auth":"c2VjcmV0OnNlY3JldA=="}},
		"credHelpers":{"123456789012.dkr.ecr.eu-west-1.amazonaws.com":"ecr-login"}}`)
	env := fakeEnv(t, map[string]string{"CI_REGISTRY": "gitlab.example.com:5050", "CI_REGISTRY_USER": "u", "CI_REGISTRY_PASSWORD": "secret-password"})

	for _, tc := range []struct {
		host   string
		wantOK bool
		want   string
	}{
		{"registry.example.com", true, `auths entry "https://registry.example.com"`},
		{"123456789012.dkr.ecr.eu-west-1.amazonaws.com", false, "docker-credential-ecr-login (credHelpers in"},
		{"gitlab.example.com:5050", true, "GitLab CI job credentials"},
		{"docker.io", false, "no credentials for index.docker.io"},
	} {
		got, ok := env.credentialSource(CredentialOptions{DockerConfigDir: dir}, tc.host)
		if ok != tc.wantOK || !strings.Contains(got, tc.want) {
			t.Errorf("%s: got %q %v, want %q %v", tc.host, got, ok, tc.want, tc.wantOK)
		}
		for _, secret := range []string{"c2VjcmV0OnNlY3JldA==", "secret-password", "secret:secret"} {
			if strings.Contains(got, secret) {
				t.Errorf("%s: description leaks a secret: %q", tc.host, got)
			}
		}
	}

	env.lookPath = func(string) (string, error) { return "/usr/local/bin/docker-credential-ecr-login", nil }
	if got, ok := env.credentialSource(CredentialOptions{DockerConfigDir: dir}, "123456789012.dkr.ecr.eu-west-1.amazonaws.com"); !ok || !strings.Contains(got, "credential helper docker-credential-ecr-login") {
		t.Errorf("helper on PATH: %q %v", got, ok)
	}
}

func TestCredentialSourceDockerAuthConfig(t *testing.T) {
	env := fakeEnv(t, map[string]string{"DOCKER_AUTH_CONFIG": `{"auths":{"registry.example.com":{"auth":"dTpw"}}}`})
	got, ok := env.credentialSource(CredentialOptions{DockerConfigDir: t.TempDir()}, "registry.example.com")
	if !ok || !strings.Contains(got, "DOCKER_AUTH_CONFIG") || strings.Contains(got, "dTpw") {
		t.Errorf("got %q %v", got, ok)
	}
}

func TestKeychainUsesProcessEnvironment(t *testing.T) {
	dir := t.TempDir()
	writeDockerConfig(t, dir, `{"auths":{"registry.example.com":{"username":"u","password":"p"}}}`)
	if cfg := resolveBasic(t, Keychain(dir), "registry.example.com/app"); cfg == nil || cfg.Username != "u" {
		t.Fatalf("Keychain: %+v", cfg)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
}
