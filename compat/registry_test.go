package compat

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	buildkitdconfig "github.com/moby/buildkit/cmd/buildkitd/config"
	"github.com/moby/buildkit/session/auth/authprovider"

	"github.com/kilnbuild/kiln/flagmap"
	"github.com/kilnbuild/kiln/internal/testenv"
)

func mustRegistrySettings(t *testing.T, opts *flagmap.Options) *RegistrySettings {
	t.Helper()
	s, err := NewRegistrySettings(opts, "v9.9.9")
	if err != nil {
		t.Fatalf("NewRegistrySettings: %v", err)
	}
	return s
}

func TestNewRegistrySettingsRejectsBadFilesInOneLine(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not-a-cert.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := testenv.NewTestCA(t, "client-ca").IssueClient("client")
	if err != nil {
		t.Fatal(err)
	}
	missingKey := filepath.Join(dir, "missing-key.pem")

	for _, tc := range []struct {
		name string
		opts flagmap.Options
		want []string
	}{
		{"missing CA", flagmap.Options{RegistryCertificates: map[string]string{"reg.example.com": filepath.Join(dir, "nope.pem")}},
			[]string{"--registry-certificate reg.example.com=", "nope.pem", "no such file"}},
		{"CA without certificate", flagmap.Options{RegistryCertificates: map[string]string{"reg.example.com": notPEM}},
			[]string{"--registry-certificate reg.example.com=", "no PEM certificate found in " + notPEM}},
		{"client cert without key", flagmap.Options{RegistryClientCerts: map[string]string{"reg.example.com": client.CertFile}},
			[]string{"--registry-client-cert reg.example.com=" + client.CertFile, "expected reg.example.com=/path/to/cert.pem,/path/to/key.pem"}},
		{"unreadable key", flagmap.Options{RegistryClientCerts: map[string]string{"reg.example.com": client.CertFile + "," + missingKey}},
			[]string{"--registry-client-cert reg.example.com=", missingKey, "cannot load the certificate and key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRegistrySettings(&tc.opts, "v1")
			if err == nil {
				t.Fatal("NewRegistrySettings accepted a bad file")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
		})
	}
}

func TestCAOfSkippedHostIsNeverRead(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, opts := range []flagmap.Options{
		{SkipTLSVerify: true, RegistryCertificates: map[string]string{"reg.example.com": missing}},
		{SkipTLSVerifyRegistries: []string{"reg.example.com"}, RegistryCertificates: map[string]string{"reg.example.com": missing}},
	} {
		if _, err := NewRegistrySettings(&opts, "v1"); err != nil {
			t.Errorf("Kaniko ignores the CA of a host whose verification is skipped, got %v", err)
		}
	}
}

// pingStatus GETs /v2/ through the settings' transport for reg.
func pingStatus(s *RegistrySettings, reg *testenv.Registry) (int, error) {
	client := &http.Client{Transport: s.Transport(reg.Host)}
	resp, err := client.Get(reg.Scheme + "://" + reg.Host + "/v2/")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestTransportFollowsKanikoTLSRules(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.WithTLS())
	for _, tc := range []struct {
		name string
		opts flagmap.Options
		ok   bool
	}{
		{"system roots only", flagmap.Options{}, false},
		{"CA for another host", flagmap.Options{RegistryCertificates: map[string]string{"other.example.com": reg.CAFile}}, false},
		{"--registry-certificate", flagmap.Options{RegistryCertificates: map[string]string{reg.Host: reg.CAFile}}, true},
		{"--skip-tls-verify-registry", flagmap.Options{SkipTLSVerifyRegistries: []string{reg.Host}}, true},
		{"--skip-tls-verify", flagmap.Options{SkipTLSVerify: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, err := pingStatus(mustRegistrySettings(t, &tc.opts), reg)
			if tc.ok && (err != nil || status != http.StatusOK) {
				t.Fatalf("GET /v2/ = %d, %v; want 200", status, err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "certificate")) {
				t.Fatalf("GET /v2/ = %d, %v; want a certificate error", status, err)
			}
		})
	}
}

func TestTransportPresentsClientCertificate(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.WithMTLS())
	caOnly := flagmap.Options{RegistryCertificates: map[string]string{reg.Host: reg.CAFile}}
	if _, err := pingStatus(mustRegistrySettings(t, &caOnly), reg); err == nil {
		t.Fatal("the mTLS registry accepted a client without a certificate; the test proves nothing")
	}
	withCert := caOnly
	withCert.RegistryClientCerts = map[string]string{reg.Host: reg.ClientCert.CertFile + "," + reg.ClientCert.KeyFile}
	if status, err := pingStatus(mustRegistrySettings(t, &withCert), reg); err != nil || status != http.StatusOK {
		t.Fatalf("GET /v2/ with --registry-client-cert = %d, %v; want 200", status, err)
	}
}

func TestRemoteOptionsSendKilnUserAgentOnly(t *testing.T) {
	var mu sync.Mutex
	agents := map[string]bool{}
	store := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents[r.UserAgent()] = true
		mu.Unlock()
		store.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	opts := flagmap.Options{Env: flagmap.Environment{UpstreamClientType: "gitlab-ci"}}
	s := mustRegistrySettings(t, &opts)
	host := strings.TrimPrefix(srv.URL, "http://")
	tag, err := s.ParseTag(host+"/ua/test:1", false)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, s.RemoteOptions(context.Background(), host, authn.DefaultKeychain)...); err != nil {
		t.Fatalf("push: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(agents) != 1 || !agents["kiln/v9.9.9,gitlab-ci"] {
		t.Fatalf("User-Agent headers seen = %v, want only kiln/v9.9.9,gitlab-ci", agents)
	}
}

func TestParseTagAppliesPlainHTTPPerDirection(t *testing.T) {
	const internal = "registry.internal:5000"
	for _, tc := range []struct {
		name       string
		opts       flagmap.Options
		ref        string
		push, pull string // expected schemes
	}{
		{"defaults", flagmap.Options{}, internal + "/app", "https", "https"},
		{"--insecure-registry", flagmap.Options{InsecureRegistries: []string{internal}}, internal + "/app", "http", "http"},
		{"--insecure-registry other host", flagmap.Options{InsecureRegistries: []string{"other:5000"}}, internal + "/app", "https", "https"},
		{"--insecure", flagmap.Options{Insecure: true}, internal + "/app", "http", "https"},
		{"--insecure-pull", flagmap.Options{InsecurePull: true}, internal + "/app", "https", "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustRegistrySettings(t, &tc.opts)
			for forPull, want := range map[bool]string{false: tc.push, true: tc.pull} {
				tag, err := s.ParseTag(tc.ref, forPull)
				if err != nil {
					t.Fatal(err)
				}
				if got := tag.Scheme(); got != want {
					t.Errorf("forPull=%t: scheme %s, want %s", forPull, got, want)
				}
			}
		})
	}
}

func TestParseTagNormalisesLikeKaniko(t *testing.T) {
	tag, err := mustRegistrySettings(t, &flagmap.Options{}).ParseTag("bob/image", false)
	if err != nil {
		t.Fatal(err)
	}
	if tag.Name() != "index.docker.io/bob/image:latest" || tag.String() != "bob/image" {
		t.Fatalf("ParseTag(bob/image) = %q (as given %q)", tag.Name(), tag.String())
	}
	if _, err := mustRegistrySettings(t, &flagmap.Options{}).ParseTag("a,b", false); err == nil {
		t.Fatal(`"a,b" parsed as one destination; Kaniko rejects it`)
	}
}

func TestMirrorsFollowExplicitMaps(t *testing.T) {
	opts := flagmap.Options{
		RegistryMaps:    map[string][]string{DockerHub: {"map.example.com"}, "gcr.io": {"gcr-mirror.example.com"}},
		RegistryMirrors: []string{"mirror.gcr.io", "map.example.com"},
	}
	s := mustRegistrySettings(t, &opts)
	if got, want := s.maps[DockerHub], []string{"map.example.com", "mirror.gcr.io"}; !slices.Equal(got, want) {
		t.Errorf("Docker Hub replacements = %v, want %v", got, want)
	}
	if got := s.maps["gcr.io"]; !slices.Equal(got, []string{"gcr-mirror.example.com"}) {
		t.Errorf("gcr.io replacements = %v", got)
	}
	opts.RegistryMaps[DockerHub][0] = "changed"
	if s.maps[DockerHub][0] != "map.example.com" {
		t.Error("settings share the caller's slices")
	}
}

// daemonTestSettings is a representative mix of every registry flag.
func daemonTestSettings(t *testing.T) (*RegistrySettings, DaemonHosts, testenv.KeyPair, string) {
	t.Helper()
	ca := testenv.NewTestCA(t, "private-ca")
	client, err := ca.IssueClient("client")
	if err != nil {
		t.Fatal(err)
	}
	opts := flagmap.Options{
		Insecure:                true,
		InsecureRegistries:      []string{"registry.internal:5000"},
		SkipTLSVerifyRegistries: []string{"selfsigned.example.com"},
		RegistryCertificates: map[string]string{
			"private.example.com":    ca.CertFile,
			"selfsigned.example.com": filepath.Join(t.TempDir(), "never-read.pem"),
		},
		RegistryClientCerts: map[string]string{"private.example.com": client.CertFile + "," + client.KeyFile},
		RegistryMaps: map[string][]string{
			"gcr.io":    {"gcr-mirror.example.com/gcr"},
			"docker.io": {"never-matched.example.com"},
		},
		RegistryMirrors: []string{"mirror.gcr.io", "registry.internal:5000/hub"},
	}
	hosts := DaemonHosts{Pull: []string{DockerHub, "quay.io"}, Push: []string{"cache.example.com"}}
	return mustRegistrySettings(t, &opts), hosts, client, ca.CertFile
}

func TestBuildkitdTOMLGolden(t *testing.T) {
	s, hosts, client, caFile := daemonTestSettings(t)
	want := `[registry."cache.example.com"]
  http = true
  insecure = true

[registry."docker.io"]
  mirrors = ["mirror.gcr.io", "registry.internal:5000/hub"]

[registry."gcr.io"]
  mirrors = ["gcr-mirror.example.com/gcr"]

[registry."private.example.com"]
  http = false
  ca = ["` + caFile + `"]

  [[registry."private.example.com".keypair]]
    key = "` + client.KeyFile + `"
    cert = "` + client.CertFile + `"

[registry."registry.internal:5000"]
  http = true
  insecure = true

[registry."selfsigned.example.com"]
  http = false
  insecure = true
`
	got := s.BuildkitdTOML(hosts)
	if got != want {
		t.Fatalf("buildkitd.toml:\n%s\nwant:\n%s", got, want)
	}

	// The daemon's own loader must read back exactly the settings.
	parsed, err := buildkitdconfig.Load(strings.NewReader(got))
	if err != nil {
		t.Fatalf("buildkitd cannot load the generated TOML: %v", err)
	}
	if !reflect.DeepEqual(parsed.Registries, s.DaemonRegistries(hosts)) {
		t.Fatalf("buildkitd read %+v\nwant %+v", parsed.Registries, s.DaemonRegistries(hosts))
	}
}

func TestDaemonRegistriesExpandGlobalFlagsPerHost(t *testing.T) {
	opts := flagmap.Options{InsecurePull: true, SkipTLSVerify: true, RegistryMirrors: []string{"mirror.example.com/hub"}}
	s := mustRegistrySettings(t, &opts)
	got := s.DaemonRegistries(DaemonHosts{Pull: []string{"quay.io"}, Push: []string{"cache.example.com"}})
	for host, plain := range map[string]bool{"quay.io": true, "mirror.example.com": true, "cache.example.com": false} {
		c, ok := got[host]
		if !ok {
			t.Errorf("no section for %s in %v", host, got)
			continue
		}
		if (c.PlainHTTP != nil && *c.PlainHTTP) != plain {
			t.Errorf("%s: http = %v, want %t", host, c.PlainHTTP, plain)
		}
		if c.Insecure == nil || !*c.Insecure {
			t.Errorf("%s: --skip-tls-verify not applied", host)
		}
	}
	if got := s.BuildkitdTOML(DaemonHosts{}); strings.Contains(got, `"quay.io"`) {
		t.Errorf("a host the build does not reach got a section:\n%s", got)
	}
}

func TestTOMLStringEscapes(t *testing.T) {
	dir := `C:\certs "quoted"` + "\n"
	parsed, err := buildkitdconfig.Load(strings.NewReader("root = " + tomlString(dir) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Root != dir {
		t.Fatalf("round trip of %q gave %q", dir, parsed.Root)
	}
}

func TestAuthTLSConfigsMatchDaemonSettings(t *testing.T) {
	s, hosts, client, caFile := daemonTestSettings(t)
	want := map[string]*authprovider.AuthTLSConfig{
		"cache.example.com":      {Insecure: true},
		"registry.internal:5000": {Insecure: true},
		"selfsigned.example.com": {Insecure: true},
		"private.example.com": {
			RootCAs:  []string{caFile},
			KeyPairs: []authprovider.TLSKeyPair{{Key: client.KeyFile, Certificate: client.CertFile}},
		},
	}
	if got := s.AuthTLSConfigs(hosts); !reflect.DeepEqual(got, want) {
		t.Fatalf("AuthTLSConfigs = %+v\nwant %+v", got, want)
	}
}

func TestUserAgent(t *testing.T) {
	if got := UserAgent("v1.0.0", ""); got != "kiln/v1.0.0" {
		t.Errorf("UserAgent = %q", got)
	}
	if got := UserAgent("v1.0.0", "tekton"); got != "kiln/v1.0.0,tekton" {
		t.Errorf("UserAgent with UPSTREAM_CLIENT_TYPE = %q", got)
	}
}
