package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// cloudRegistry is a TLS registry reached under a cloud registry's name
// through a proxy, demanding the token a credential helper returns.
type cloudRegistry struct {
	reg   *testenv.Registry
	host  string // name:port as images are written
	token string
}

func startCloudRegistry(t *testing.T, proxy *testenv.Proxy, hostname, token string, opts ...testenv.RegistryOption) cloudRegistry {
	t.Helper()
	reg := testenv.StartRegistry(t, append([]testenv.RegistryOption{testenv.WithTLS(), testenv.WithHostnames(hostname), testenv.WithTokenAuth(token)}, opts...)...)
	if err := reg.Seed("base/busybox", testenv.BusyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	proxy.Route(hostname, reg.Host)
	_, port, _ := net.SplitHostPort(reg.Host)
	return cloudRegistry{reg: reg, host: hostname + ":" + port, token: token}
}

// isolatedCloudEnv keeps the executor from this machine's cloud settings.
func isolatedCloudEnv(state string) []string {
	return []string{"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=" + filepath.Join(state, "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(state, "none"), "CLOUDSDK_CONFIG=" + filepath.Join(state, "gcloud"),
		"DOCKER_CONFIG=" + filepath.Join(state, "docker")}
}

// assertNoSecretAnywhere checks the run's output and the pushed image
// (config, history and every layer) for each secret.
func assertNoSecretAnywhere(t *testing.T, r result, img v1.Image, secrets ...string) {
	t.Helper()
	var blobs [][]byte
	if img != nil {
		config, err := img.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		rc := mutate.Extract(img)
		files, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, config, files)
	}
	for _, s := range secrets {
		if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
			t.Errorf("the executor's output contains the secret %q", s)
		}
		for _, b := range blobs {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("the pushed image contains the secret %q", s)
			}
		}
	}
}

// TestCloudRegistryCredentialHelpers: each in-process helper gets a token
// from its local fake (ECR's API, Google's token endpoint, Entra ID and the
// registry's exchange, KANIKO_<HOST>_* variables), and the build pulls its
// base image (through BuildKit's session) and pushes with it.
func TestCloudRegistryCredentialHelpers(t *testing.T) {
	t.Parallel()
	proxy := testenv.StartProxy(t)

	awsCreds := testenv.AWSCredentials{AccessKeyID: "AKIDE2EKILN", SecretAccessKey: "e2e-aws-secret-key"}
	ecrAPI := testenv.StartFakeECR(t, awsCreds, "ecr-e2e-registry-token")
	ecr := startCloudRegistry(t, proxy, "123456789012.dkr.ecr.eu-west-1.amazonaws.com", ecrAPI.Password)

	google := testenv.StartFakeGoogleTokenEndpoint(t, "ya29.e2e-google-access-token")
	gar := startCloudRegistry(t, proxy, "europe-docker.pkg.dev", google.AccessToken)
	serviceAccount := google.ServiceAccountJSON(t, false)

	entra := testenv.StartFakeEntraAuthority(t, "e2e-entra-client-secret", "e2e-entra-access-token")
	acr := startCloudRegistry(t, proxy, "kilne2e.azurecr.io", "e2e-acr-refresh-token",
		testenv.WithRoute("/oauth2/exchange", testenv.ACRExchange(entra.AccessToken, "e2e-acr-refresh-token")))

	envReg := startCloudRegistry(t, proxy, "registry.corp.example", "e2e-env-helper-password")

	bundle := testenv.CABundle(t, entra.CA)
	cases := []struct {
		name    string
		reg     cloudRegistry
		env     []string
		secrets []string
		cache   bool // also export the layer cache to the registry
	}{
		{"ecr", ecr, append(awsCreds.Env(), "AWS_ENDPOINT_URL_ECR="+ecrAPI.URL), []string{awsCreds.SecretAccessKey}, true},
		{"google", gar, []string{"GOOGLE_APPLICATION_CREDENTIALS=" + serviceAccount}, nil, false},
		{"acr", acr, append(entra.Env(), "SSL_CERT_FILE="+bundle), []string{entra.ClientSecret, entra.AccessToken}, true},
		{"env", envReg, []string{"KANIKO_CORP_EXAMPLE_USER=builder", "KANIKO_CORP_EXAMPLE_PASSWORD=" + envReg.token}, nil, false},
	}
	forEachMode(t, func(t *testing.T, m mode) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				marker := "cloud-" + tc.name + "-" + m.name
				dest := tc.reg.host + "/apps/" + tc.name + ":" + m.name
				state := m.stateDir(t)
				args := []string{"--context", baseDockerfile(t, tc.reg.host+"/base/busybox", marker),
					"--destination", dest, "--registry-certificate", tc.reg.host + "=" + tc.reg.reg.CAFile}
				cacheRepo := "cache/" + tc.name + "-" + m.name
				if tc.cache {
					args = append(args, "--cache=true", "--cache-repo", tc.reg.host+"/"+cacheRepo)
				}
				env := append(append(append(isolatedCloudEnv(state), proxy.Env()...), tc.env...), "HOME="+state)
				r := m.run(t, state, args, env...)
				r.mustSucceed(t)

				img := tc.reg.reg.Pull(t, "apps/"+tc.name+":"+m.name)
				if got := rootFile(t, img, "marker"); got != marker+"\n" {
					t.Errorf("/marker = %q, want %q", got, marker+"\n")
				}
				pulledBlob := false
				for _, req := range tc.reg.reg.Requests() {
					if req.Method == "GET" && strings.Contains(req.Path, "/base/busybox/blobs/") && req.Status == 200 {
						pulledBlob = true
					}
				}
				if !pulledBlob {
					t.Error("the base image's blobs were never pulled with the helper's token")
				}
				if tc.cache && len(tc.reg.reg.Tags(cacheRepo)) == 0 {
					t.Errorf("no cache was exported to %s with the helper's token", cacheRepo)
				}
				assertNoSecretAnywhere(t, r, img, append(tc.secrets, tc.reg.token)...)
			})
		}
	})
}

// TestCloudRegistryHelperFailures: a helper whose credentials are refused
// fails the build before anything is pushed, in one line naming the helper
// and the registry, with no secret in the output.
func TestCloudRegistryHelperFailures(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	proxy := testenv.StartProxy(t)
	awsCreds := testenv.AWSCredentials{AccessKeyID: "AKIDE2EKILN", SecretAccessKey: "e2e-aws-secret-key"}
	ecrAPI := testenv.StartFakeECR(t, awsCreds, "ecr-e2e-registry-token")
	ecr := startCloudRegistry(t, proxy, "123456789012.dkr.ecr.eu-west-1.amazonaws.com", ecrAPI.Password)
	entra := testenv.StartFakeEntraAuthority(t, "e2e-entra-client-secret", "e2e-entra-access-token")
	acr := startCloudRegistry(t, proxy, "kilne2e.azurecr.io", "e2e-acr-refresh-token",
		testenv.WithRoute("/oauth2/exchange", testenv.ACRExchange(entra.AccessToken, "e2e-acr-refresh-token")))
	bundle := testenv.CABundle(t, entra.CA)

	m := mode{name: "root"}
	for _, tc := range []struct {
		name, helper string
		reg          cloudRegistry
		env          []string
		secret       string
	}{
		{"ecr wrong secret key", "ecr", ecr, []string{"AWS_ACCESS_KEY_ID=" + awsCreds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=wrong-e2e-secret", "AWS_ENDPOINT_URL_ECR=" + ecrAPI.URL}, "wrong-e2e-secret"},
		{"acr wrong client secret", "acr", acr, []string{"AZURE_AUTHORITY_HOST=" + entra.URL, "AZURE_TENANT_ID=" + entra.TenantID, "AZURE_CLIENT_ID=" + entra.ClientID, "AZURE_CLIENT_SECRET=wrong-e2e-client-secret", "SSL_CERT_FILE=" + bundle}, "wrong-e2e-client-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := m.stateDir(t)
			args := []string{"--context", baseDockerfile(t, tc.reg.host+"/base/busybox", "never"),
				"--destination", tc.reg.host + "/apps/failed:1", "--registry-certificate", tc.reg.host + "=" + tc.reg.reg.CAFile}
			r := m.run(t, state, args, append(append(append(isolatedCloudEnv(state), proxy.Env()...), tc.env...), "HOME="+state)...)
			r.assertOneLineFailure(t, "credential helper "+tc.helper+" for "+tc.reg.host)
			if writes := tc.reg.reg.Writes(); len(writes) != 0 {
				t.Errorf("the failed build wrote to the registry: %v", writes)
			}
			assertNoSecretAnywhere(t, r, nil, tc.secret, tc.reg.token)
		})
	}
}

// TestCloudContexts: s3:// from gofakes3, gs:// from fake-gcs-server and an
// Azure blob from a fake behind a test CA each build and push; a missing
// object, refused credentials or a missing bucket fail in one line, exit 1,
// with nothing pushed and no secret printed.
func TestCloudContexts(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	reg := testenv.StartRegistry(t)
	testenv.SeedMirror(t, reg)
	context := func(marker string) []byte {
		return gzipTar(t, filesOf(map[string]string{"Dockerfile": "FROM busybox\nCOPY marker /marker\n", "marker": marker + "\n"}, ""))
	}

	awsCreds := testenv.AWSCredentials{AccessKeyID: "AKIDS3E2E", SecretAccessKey: "e2e-s3-secret-key"}
	s3 := testenv.StartFakeS3(t, awsCreds)
	s3.Put(t, "jobs", "context.tar.gz", context("from-s3"))
	s3Env := append(awsCreds.Env(), "S3_ENDPOINT="+s3.URL, "S3_FORCE_PATH_STYLE=true", "AWS_REGION=eu-west-1")

	google := testenv.StartFakeGoogleTokenEndpoint(t, "ya29.e2e-gcs-token")
	gcsHost, gcs := testenv.StartFakeGCS(t, google.AccessToken)
	gcs.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "jobs", Name: "app/ctx.tar"}, Content: context("from-gcs")})
	gcsEnv := []string{"STORAGE_EMULATOR_HOST=" + gcsHost, "GOOGLE_APPLICATION_CREDENTIALS=" + google.ServiceAccountJSON(t, false)}

	azure := testenv.StartFakeAzureBlob(t, "kilnjobs")
	azure.Put("contexts", "context.tar.gz", context("from-azure"))
	proxy := testenv.StartProxy(t)
	proxy.Route(azure.Hostname, azure.Addr)
	azureEnv := append(proxy.Env(), "AZURE_STORAGE_ACCESS_KEY="+azure.Key, "SSL_CERT_FILE="+testenv.CABundle(t, azure.CA))

	m := mode{name: "root"}
	build := func(t *testing.T, contextURL, dest string, env []string) result {
		state := m.stateDir(t)
		args := []string{"--context", contextURL, "--registry-mirror", reg.Host, "--insecure-registry", reg.Host,
			"--destination", reg.Ref(dest)}
		return m.run(t, state, args, append(append(isolatedCloudEnv(state), env...), "HOME="+state)...)
	}
	for _, tc := range []struct {
		name, url, marker string
		env, secrets      []string
	}{
		{"s3", "s3://jobs/", "from-s3", s3Env, []string{awsCreds.SecretAccessKey}},
		{"gs", "gs://jobs/app/ctx.tar", "from-gcs", gcsEnv, []string{google.AccessToken}},
		{"azure", azure.URL("contexts", ""), "from-azure", azureEnv, []string{azure.Key}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := build(t, tc.url, "ctx/"+tc.name+":1", tc.env)
			r.mustSucceed(t)
			img := reg.Pull(t, "ctx/"+tc.name+":1")
			if got := rootFile(t, img, "marker"); got != tc.marker+"\n" {
				t.Errorf("/marker = %q, want %q", got, tc.marker+"\n")
			}
			assertNoSecretAnywhere(t, r, img, tc.secrets...)
		})
	}

	wrongS3 := append(slicesWithout(s3Env, "AWS_SECRET_ACCESS_KEY="), "AWS_SECRET_ACCESS_KEY=wrong-e2e-s3-secret")
	for _, tc := range []struct {
		name, url, want string
		env             []string
		secret          string
	}{
		{"s3 missing object", "s3://jobs/nope.tar.gz", "object nope.tar.gz does not exist in bucket jobs", s3Env, awsCreds.SecretAccessKey},
		{"s3 wrong credentials", "s3://jobs/", "access to s3://jobs/context.tar.gz denied", wrongS3, "wrong-e2e-s3-secret"},
		{"s3 missing bucket", "s3://nobucket/ctx.tar.gz", "bucket nobucket does not exist", s3Env, awsCreds.SecretAccessKey},
		{"gs missing object", "gs://jobs/nope.tar.gz", "object nope.tar.gz does not exist in bucket jobs", gcsEnv, google.AccessToken},
		{"gs wrong credentials", "gs://jobs/app/ctx.tar", "the token endpoint answered 400", append(gcsEnv, "GOOGLE_APPLICATION_CREDENTIALS="+google.ServiceAccountJSON(t, true)), google.AccessToken},
		{"gs missing bucket", "gs://nobucket", "bucket nobucket does not exist", gcsEnv, google.AccessToken},
		{"azure missing blob", azure.URL("contexts", "nope.tar.gz"), "blob nope.tar.gz does not exist in container contexts", azureEnv, azure.Key},
		{"azure wrong key", azure.URL("contexts", ""), "set AZURE_STORAGE_ACCESS_KEY", append(slicesWithout(azureEnv, "AZURE_STORAGE_ACCESS_KEY="), "AZURE_STORAGE_ACCESS_KEY=d3JvbmdlMmVrZXl3cm9uZ2UyZWtleQ=="), "d3JvbmdlMmVrZXl3cm9uZ2UyZWtleQ=="},
		{"azure missing container", azure.URL("nocontainer", "ctx.tar.gz"), "container nocontainer does not exist", azureEnv, azure.Key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := "ctx/failed-" + strings.ReplaceAll(tc.name, " ", "-")
			r := build(t, tc.url, dest+":1", tc.env)
			r.assertOneLineFailure(t, tc.want)
			if tags := reg.Tags(dest); len(tags) != 0 {
				t.Errorf("a failed build pushed %v", tags)
			}
			assertNoSecretAnywhere(t, r, nil, tc.secret)
		})
	}
}

// slicesWithout drops the entries starting with prefix.
func slicesWithout(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// TestCredentialHelperBinaries: config.json's credHelpers run the helper
// binaries make build puts next to the executor (as kiln's image has them
// in /kaniko), with the in-process helpers off (--credential-helpers=).
func TestCredentialHelperBinaries(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	bin := filepath.Dir(testenv.Binaries(t).Executor)
	proxy := testenv.StartProxy(t)
	awsCreds := testenv.AWSCredentials{AccessKeyID: "AKIDBINKILN", SecretAccessKey: "bin-aws-secret-key"}
	ecrAPI := testenv.StartFakeECR(t, awsCreds, "bin-ecr-token")
	google := testenv.StartFakeGoogleTokenEndpoint(t, "ya29.bin-google-token")
	entra := testenv.StartFakeEntraAuthority(t, "bin-entra-secret", "bin-entra-token")
	clouds := []struct {
		helper string
		reg    cloudRegistry
	}{
		{"ecr-login", startCloudRegistry(t, proxy, "123456789012.dkr.ecr.us-east-1.amazonaws.com", ecrAPI.Password)},
		{"gcr", startCloudRegistry(t, proxy, "gcr.io", google.AccessToken, testenv.WithTokenCheck(google.Accepts))},
		{"acr-env", startCloudRegistry(t, proxy, "kilnbin.azurecr.io", "bin-acr-refresh-token",
			testenv.WithRoute("/oauth2/exchange", testenv.ACRExchange(entra.AccessToken, "bin-acr-refresh-token")))},
	}
	credHelpers := map[string]string{}
	cas := []*testenv.CA{entra.CA}
	for _, c := range clouds {
		credHelpers[c.reg.host] = c.helper
		cas = append(cas, c.reg.reg.CA)
	}
	dockerDir := testenv.ReadableTempDir(t)
	config, _ := json.Marshal(map[string]any{"credHelpers": credHelpers})
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), config, 0o644); err != nil {
		t.Fatal(err)
	}
	// As kiln's image configures docker-credential-gcr: tokens from the environment.
	gcrConfig := filepath.Join(testenv.ReadableTempDir(t), "docker_credential_gcr_config.json")
	if err := os.WriteFile(gcrConfig, []byte(`{"TokenSources":["env"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(proxy.Env(), append(awsCreds.Env(),
		"PATH="+bin+":"+os.Getenv("PATH"), "DOCKER_CONFIG="+dockerDir,
		"AWS_ENDPOINT_URL_ECR="+ecrAPI.URL, "AWS_ECR_DISABLE_CACHE=true",
		"GOOGLE_APPLICATION_CREDENTIALS="+google.ServiceAccountJSON(t, false),
		"DOCKER_CREDENTIAL_GCR_CONFIG="+gcrConfig,
		"AZURE_ENVIRONMENT=AZURESTACKCLOUD", "AZURE_ENVIRONMENT_FILEPATH="+entra.EnvironmentFile(t),
		"AZURE_TENANT_ID="+entra.TenantID, "AZURE_CLIENT_ID="+entra.ClientID, "AZURE_CLIENT_SECRET="+entra.ClientSecret,
		"SSL_CERT_FILE="+testenv.CABundle(t, cas...))...)
	m := mode{name: "root"}
	for _, c := range clouds {
		t.Run(c.helper, func(t *testing.T) {
			state := m.stateDir(t)
			marker := "binary-" + c.helper
			args := []string{"--context", baseDockerfile(t, c.reg.host+"/base/busybox", marker), "--credential-helpers=",
				"--destination", c.reg.host + "/apps/bin:1", "--registry-certificate", c.reg.host + "=" + c.reg.reg.CAFile}
			r := m.run(t, state, args, append(append(isolatedCloudEnv(state), env...), "HOME="+state)...)
			r.mustSucceed(t)
			if got := rootFile(t, c.reg.reg.Pull(t, "apps/bin:1"), "marker"); got != marker+"\n" {
				t.Errorf("/marker = %q, want %q", got, marker+"\n")
			}
			assertNoSecretAnywhere(t, r, nil, awsCreds.SecretAccessKey, entra.ClientSecret, c.reg.token)
		})
	}
}
