package compat

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/kilnbuild/kiln/internal/testenv"
)

const (
	ecrHost    = "123456789012.dkr.ecr.eu-west-1.amazonaws.com:5000"
	googleHost = "europe-docker.pkg.dev"
	acrHost    = "kilntest.azurecr.io"
)

// isolateCloudEnv clears what the cloud SDKs would read from this machine.
func isolateCloudEnv(t *testing.T) {
	home := t.TempDir()
	for k, v := range map[string]string{
		"HOME": home, "AWS_CONFIG_FILE": filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "",
		"GOOGLE_APPLICATION_CREDENTIALS": "", "CLOUDSDK_CONFIG": filepath.Join(home, "gcloud"),
	} {
		t.Setenv(k, v)
	}
}

func resolve(t *testing.T, kc authn.Keychain, registry string) (*authn.AuthConfig, error) {
	t.Helper()
	reg, err := name.NewRegistry(registry)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := kc.Resolve(reg)
	if err != nil {
		return nil, err
	}
	return auth.Authorization()
}

// assertHelperError checks a helper failure is one line naming the helper
// and the registry, and holds none of the secrets.
func assertHelperError(t *testing.T, err error, helper, registry string, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("resolved credentials, want an error")
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "credential helper "+helper+" for "+registry) {
		t.Errorf("error %q is not one line naming helper %s and %s", msg, helper, registry)
	}
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Errorf("error %q contains a secret", msg)
		}
	}
}

func TestSelectedHelpers(t *testing.T) {
	for _, tc := range []struct {
		flag          []string
		want, unknown []string
	}{
		{nil, AllCredentialHelpers, nil},
		{[]string{""}, nil, nil},
		{[]string{"gitlab,ecr"}, []string{"gitlab", "ecr"}, nil},
		{[]string{"ecr", "ecr,env"}, []string{"ecr", "env"}, nil},
		{[]string{"env", "acr", "docker"}, []string{"env", "acr"}, []string{"docker"}},
	} {
		got, unknown := SelectedHelpers(tc.flag)
		if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(unknown, tc.unknown) {
			t.Errorf("SelectedHelpers(%q) = %v, %v; want %v, %v", tc.flag, got, unknown, tc.want, tc.unknown)
		}
	}
}

func TestEnvHelper(t *testing.T) {
	env := fakeEnv(t, map[string]string{
		"KANIKO_REGISTRY_EXAMPLE_COM_USER": "exact", "KANIKO_REGISTRY_EXAMPLE_COM_PASSWORD": "p1",
		"KANIKO_CORP_NET_USER": "parent", "KANIKO_CORP_NET_PASSWORD": "p2",
		"KANIKO_MY_REG_IO_USER": "dashes", "KANIKO_MY_REG_IO_PASSWORD": "p3",
	})
	kc := env.keychain(CredentialOptions{DockerConfigDir: t.TempDir()})
	for registry, want := range map[string]string{
		"registry.example.com": "exact:p1", "eu.mirror.corp.net": "parent:p2", "my-reg.io": "dashes:p3", "other.io": "",
	} {
		cfg, err := resolve(t, kc, registry)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Trim(cfg.Username+":"+cfg.Password, ":"); got != want {
			t.Errorf("%s: got %q, want %q", registry, got, want)
		}
	}
	off := env.keychain(CredentialOptions{DockerConfigDir: t.TempDir(), Helpers: []string{"ecr,gitlab"}})
	if cfg, _ := resolve(t, off, "registry.example.com"); cfg.Username != "" {
		t.Errorf("--credential-helpers=ecr,gitlab still used the env helper: %q", cfg.Username)
	}
	if src, ok := env.credentialSource(CredentialOptions{DockerConfigDir: t.TempDir()}, "eu.mirror.corp.net"); !ok || !strings.Contains(src, "KANIKO_CORP_NET_USER") || strings.Contains(src, "p2") {
		t.Errorf("credential source = %q, %v", src, ok)
	}
}

func TestECRHelperAgainstFakeEndpoint(t *testing.T) {
	isolateCloudEnv(t)
	creds := testenv.AWSCredentials{AccessKeyID: "AKIDKILNTEST", SecretAccessKey: "ecr-secret-key"}
	fake := testenv.StartFakeECR(t, creds, "ecr-registry-password")
	t.Setenv("AWS_ENDPOINT_URL_ECR", fake.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)

	kc := NewKeychain(CredentialOptions{DockerConfigDir: t.TempDir()})
	cfg, err := resolve(t, kc, ecrHost)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Username != "AWS" || cfg.Password != fake.Password {
		t.Errorf("ECR credentials = %q/%q, want AWS and the token's password", cfg.Username, cfg.Password)
	}
	resolve(t, kc, ecrHost)
	if fake.Calls() != 1 {
		t.Errorf("GetAuthorizationToken called %d times for one registry, want 1 (cached)", fake.Calls())
	}
	if cfg, _ := resolve(t, kc, "registry.example.com"); cfg.Password != "" {
		t.Error("the ECR helper answered for a registry that is not ECR")
	}
	if src, ok := CredentialSource(CredentialOptions{DockerConfigDir: t.TempDir()}, ecrHost); !ok || !strings.Contains(src, "credential helper ecr") || !strings.Contains(src, "AWS_ACCESS_KEY_ID") {
		t.Errorf("credential source = %q, %v", src, ok)
	}

	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-key")
	_, err = resolve(t, NewKeychain(CredentialOptions{DockerConfigDir: t.TempDir()}), ecrHost)
	assertHelperError(t, err, "ecr", ecrHost, "wrong-secret-key", fake.Password)

	off := NewKeychain(CredentialOptions{DockerConfigDir: t.TempDir(), Helpers: []string{""}})
	if cfg, err := resolve(t, off, ecrHost); err != nil || cfg.Password != "" {
		t.Errorf("--credential-helpers= still resolved ECR: %v", err)
	}
}

func TestGoogleHelperAgainstFakeTokenEndpoint(t *testing.T) {
	isolateCloudEnv(t)
	endpoint := testenv.StartFakeGoogleTokenEndpoint(t, "ya29.kiln-access-token")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", endpoint.ServiceAccountJSON(t, false))
	for _, registry := range []string{googleHost, "gcr.io", "eu.gcr.io"} {
		cfg, err := resolve(t, NewKeychain(CredentialOptions{DockerConfigDir: t.TempDir()}), registry)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Username != "oauth2accesstoken" || cfg.Password != endpoint.AccessToken {
			t.Errorf("%s: credentials = %q/%q, want the access token", registry, cfg.Username, cfg.Password)
		}
	}
	if src, ok := CredentialSource(CredentialOptions{DockerConfigDir: t.TempDir()}, googleHost); !ok || !strings.Contains(src, "GOOGLE_APPLICATION_CREDENTIALS") {
		t.Errorf("credential source = %q, %v", src, ok)
	}

	wrongKey := endpoint.ServiceAccountJSON(t, true)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", wrongKey)
	_, err := resolve(t, NewKeychain(CredentialOptions{DockerConfigDir: t.TempDir()}), googleHost)
	key, _ := os.ReadFile(wrongKey)
	assertHelperError(t, err, "google", googleHost, endpoint.AccessToken, string(key[:40]))

	// No Application Default Credentials: public images stay pullable.
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	if cfg, err := resolve(t, NewKeychain(CredentialOptions{DockerConfigDir: t.TempDir()}), "gcr.io"); err != nil || cfg.Password != "" {
		t.Errorf("without credentials: %v, %q; want anonymous", err, cfg)
	}
}

func TestACRHelperAgainstFakeAuthority(t *testing.T) {
	isolateCloudEnv(t)
	authority := testenv.StartFakeEntraAuthority(t, "entra-client-secret", "entra-access-token")
	reg := testenv.StartRegistry(t, testenv.WithTLS(), testenv.WithHostnames(acrHost),
		testenv.WithRoute("/oauth2/exchange", testenv.ACRExchange(authority.AccessToken, "acr-refresh-token")))
	proxy := testenv.StartProxy(t)
	proxy.Route(acrHost, reg.Host)

	vars := map[string]string{}
	for _, kv := range authority.Env() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	env := fakeEnv(t, vars)
	env.entraClient = &http.Client{Transport: proxy.Transport(authority.CA)}
	toRegistry := func(string) http.RoundTripper { return proxy.Transport(reg.CA) }

	cfg, err := resolve(t, env.keychain(CredentialOptions{DockerConfigDir: t.TempDir(), Transport: toRegistry}), acrHost)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Username != acrUser || cfg.Password != "acr-refresh-token" {
		t.Errorf("ACR credentials = %q/%q, want the exchanged refresh token", cfg.Username, cfg.Password)
	}
	if src, ok := env.credentialSource(CredentialOptions{DockerConfigDir: t.TempDir()}, acrHost); !ok || !strings.Contains(src, "AZURE_CLIENT_SECRET") || strings.Contains(src, "entra-client-secret") {
		t.Errorf("credential source = %q, %v", src, ok)
	}

	vars["AZURE_CLIENT_SECRET"] = "wrong-client-secret"
	_, err = resolve(t, env.keychain(CredentialOptions{DockerConfigDir: t.TempDir(), Transport: toRegistry}), acrHost)
	assertHelperError(t, err, "acr", acrHost, "wrong-client-secret", "entra-client-secret")
}

func TestSessionAuthConfigAnswersFromKeychain(t *testing.T) {
	env := fakeEnv(t, map[string]string{"KANIKO_DOCKER_IO_USER": "hub", "KANIKO_DOCKER_IO_PASSWORD": "hub-password"})
	provider := SessionAuthConfig(env.keychain(CredentialOptions{DockerConfigDir: t.TempDir()}))
	cfg, err := provider(context.Background(), "registry-1.docker.io", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Username != "hub" || cfg.Password != "hub-password" {
		t.Errorf("Docker Hub session credentials = %q/%q", cfg.Username, cfg.Password)
	}
	if cfg, err := provider(context.Background(), "other.example.com", nil, nil); err != nil || cfg.Username != "" {
		t.Errorf("other registry: %v, %q; want anonymous", err, cfg.Username)
	}
}
