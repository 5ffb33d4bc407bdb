package testenv

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pushPull pushes through the network path with opts and pulls the image back.
func pushPull(t *testing.T, reg *Registry, path string, opts ...remote.Option) error {
	t.Helper()
	ref, err := name.ParseReference(reg.Ref(path))
	if err != nil {
		t.Fatal(err)
	}
	img := randomImage(t)
	if err := remote.Write(ref, img, opts...); err != nil {
		return err
	}
	pulled, err := remote.Image(ref, opts...)
	if err != nil {
		return err
	}
	if got, want := mustDigest(t, pulled), mustDigest(t, img); got != want {
		t.Fatalf("pulled digest %s, pushed %s", got, want)
	}
	return nil
}

func statusOf(err error) int {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode
	}
	return 0
}

func TestPlainHTTPRegistry(t *testing.T) {
	reg := StartRegistry(t)
	if reg.Scheme != "http" || reg.CAFile != "" || !strings.HasPrefix(reg.Host, "127.0.0.1:") {
		t.Fatalf("unexpected plain registry %+v", reg)
	}
	if err := pushPull(t, reg, "team/app:v1", reg.RemoteOptions()...); err != nil {
		t.Fatalf("push/pull: %v", err)
	}
	if got := reg.Tags("team/app"); !reflect.DeepEqual(got, []string{"v1"}) {
		t.Fatalf("Tags = %v, want [v1]", got)
	}
	if got := reg.Repositories(); !reflect.DeepEqual(got, []string{"team/app"}) {
		t.Fatalf("Repositories = %v", got)
	}
	if reg.Tags("missing/repo") != nil {
		t.Fatalf("Tags of a missing repo should be nil")
	}
	if len(reg.Writes()) == 0 {
		t.Fatalf("a push logged no writes: %v", reg.Requests())
	}

	reg.ResetRequests()
	reg.Pull(t, "team/app:v1")
	if w := reg.Writes(); len(w) != 0 {
		t.Fatalf("a pull logged writes: %v", w)
	}
	if len(reg.Requests()) == 0 {
		t.Fatalf("a pull logged no requests")
	}
}

func TestTLSRegistryVerifiesWithItsCA(t *testing.T) {
	reg := StartRegistry(t, WithTLS())
	if reg.Scheme != "https" {
		t.Fatalf("Scheme = %q", reg.Scheme)
	}
	pem, err := os.ReadFile(reg.CAFile)
	if err != nil || !strings.Contains(string(pem), "BEGIN CERTIFICATE") {
		t.Fatalf("CA file %q unreadable or not PEM: %v", reg.CAFile, err)
	}
	if err := pushPull(t, reg, "tls/app:v1", reg.RemoteOptions()...); err != nil {
		t.Fatalf("push with the CA trusted: %v", err)
	}
	err = pushPull(t, reg, "tls/app:v2", remote.WithTransport(http.DefaultTransport.(*http.Transport).Clone()))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("push without the CA should fail certificate verification, got %v", err)
	}
	if got := reg.Tags("tls/app"); !reflect.DeepEqual(got, []string{"v1"}) {
		t.Fatalf("Tags = %v, want only v1", got)
	}
}

func TestBasicAuthRegistry(t *testing.T) {
	reg := StartRegistry(t, WithBasicAuth("alice", "s3cret"))
	if err := pushPull(t, reg, "auth/app:v1", reg.RemoteOptions()...); err != nil {
		t.Fatalf("push with the right password: %v", err)
	}
	wrong := []remote.Option{remote.WithAuth(&authn.Basic{Username: "alice", Password: "nope"})}
	if err := pushPull(t, reg, "auth/app:v2", wrong...); statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("wrong password: want 401, got %v", err)
	}

	resp, err := http.Get("http://" + reg.Host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
		t.Fatalf("anonymous /v2/: status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if got := reg.Tags("auth/app"); !reflect.DeepEqual(got, []string{"v1"}) {
		t.Fatalf("Tags = %v, want only v1", got)
	}
}

func TestMTLSRegistryRequiresClientCert(t *testing.T) {
	reg := StartRegistry(t, WithMTLS())
	if reg.ClientCert.CertFile == "" || reg.ClientCert.KeyFile == "" {
		t.Fatalf("no client certificate written: %+v", reg.ClientCert)
	}
	if err := pushPull(t, reg, "mtls/app:v1", reg.RemoteOptions()...); err != nil {
		t.Fatalf("push with a client cert: %v", err)
	}
	noCert := reg.Transport()
	noCert.TLSClientConfig.Certificates = nil
	if err := pushPull(t, reg, "mtls/app:v2", remote.WithTransport(noCert)); err == nil {
		t.Fatalf("push without a client certificate succeeded")
	}

	other := NewTestCA(t, "other-ca")
	stranger, err := other.IssueClient("stranger")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := stranger.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	foreign := reg.Transport()
	foreign.TLSClientConfig.Certificates = []tls.Certificate{cert}
	if err := pushPull(t, reg, "mtls/app:v3", remote.WithTransport(foreign)); err == nil {
		t.Fatalf("push with a certificate from an unknown CA succeeded")
	}
	if got := reg.Tags("mtls/app"); !reflect.DeepEqual(got, []string{"v1"}) {
		t.Fatalf("Tags = %v, want only v1", got)
	}
}

func TestClientCAOption(t *testing.T) {
	clientCA := NewTestCA(t, "my-client-ca")
	pair, err := clientCA.IssueClient("builder")
	if err != nil {
		t.Fatal(err)
	}
	reg := StartRegistry(t, WithClientCA(clientCA))
	if reg.ClientCert.CertFile != "" {
		t.Fatalf("with a caller's CA the registry should not issue its own client cert")
	}
	cert, err := pair.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	tr := reg.Transport()
	tr.TLSClientConfig.Certificates = append(tr.TLSClientConfig.Certificates, cert)
	if err := pushPull(t, reg, "mtls/app:v1", remote.WithTransport(tr)); err != nil {
		t.Fatalf("push with a cert from the configured client CA: %v", err)
	}
}

func TestFaultInjection(t *testing.T) {
	reg := StartRegistry(t)
	PushBase(t, reg, "fault/app:v1", randomImage(t))
	if len(reg.Requests()) != 0 {
		t.Fatalf("seeding should bypass the request log, got %v", reg.Requests())
	}

	if err := reg.InjectFault(Fault{Count: 2, Status: http.StatusServiceUnavailable, Method: http.MethodGet, Path: `/manifests/`}); err != nil {
		t.Fatal(err)
	}
	url := "http://" + reg.Host + "/v2/fault/app/manifests/v1"
	for i, want := range []int{503, 503, 200, 200} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("request %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	// The fault's method filter leaves other methods alone.
	if err := reg.InjectFault(Fault{Count: 1, Status: http.StatusTooManyRequests, Method: http.MethodHead}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET hit a HEAD-only fault: %d", resp.StatusCode)
	}
	resp, err = http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("HEAD: status %d, want 429", resp.StatusCode)
	}

	injected := 0
	for _, r := range reg.Requests() {
		if r.Injected {
			injected++
		}
	}
	if injected != 3 {
		t.Fatalf("logged %d injected faults, want 3: %v", injected, reg.Requests())
	}
	if err := reg.InjectFault(Fault{Count: 1, Status: 200}); err == nil {
		t.Fatalf("a fault with a success status was accepted")
	}
}

func TestFaultInjectionThenClientRetrySucceeds(t *testing.T) {
	reg := StartRegistry(t, WithFault(Fault{Count: 1, Status: http.StatusInternalServerError, Method: http.MethodPut, Path: `/manifests/`}))
	// go-containerregistry retries 5xx, so one failure is absorbed.
	if err := pushPull(t, reg, "retry/app:v1", reg.RemoteOptions()...); err != nil {
		t.Fatalf("push after one injected 500: %v", err)
	}
	var manifestPuts []int
	for _, w := range reg.Writes() {
		if w.Method == http.MethodPut && strings.Contains(w.Path, "/manifests/") {
			manifestPuts = append(manifestPuts, w.Status)
		}
	}
	if len(manifestPuts) != 2 || manifestPuts[0] != 500 || manifestPuts[1] != 201 {
		t.Fatalf("manifest PUT statuses %v, want [500 201]", manifestPuts)
	}
}

func TestDockerConfigAuthenticatesThroughKeychain(t *testing.T) {
	reg := StartRegistry(t, WithBasicAuth("bob", "pa:ss"))
	t.Setenv("DOCKER_CONFIG", DockerConfig(t, map[string]string{reg.Host: "bob:pa:ss"}))
	if err := pushPull(t, reg, "kc/app:v1", remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		t.Fatalf("push with credentials from config.json: %v", err)
	}
	if err := WriteDockerConfig(t.TempDir(), map[string]string{"h": "nocolon"}); err == nil {
		t.Fatalf("credentials without ':' were accepted")
	}
}

// TestNetworkFaults: a reset fails the request with a connection error, a
// stall holds it until the client's deadline, a death takes the registry
// down for every later request; the store stays readable throughout.
func TestNetworkFaults(t *testing.T) {
	reg := StartRegistry(t)
	PushBase(t, reg, "net/app:v1", randomImage(t))
	url := "http://" + reg.Host + "/v2/net/app/manifests/v1"

	if err := reg.InjectFault(Fault{Count: 1, Effect: Reset, Method: http.MethodPut}); err != nil {
		t.Fatal(err)
	}
	body := strings.NewReader(strings.Repeat("x", 4*resetAfter))
	req, _ := http.NewRequest(http.MethodPut, "http://"+reg.Host+"/v2/net/app/blobs/uploads/x", body)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a reset request got a response: %d", resp.StatusCode)
	}

	if err := reg.InjectFault(Fault{Count: 1, Effect: Reset, Method: http.MethodGet}); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(url); err == nil {
		got, readErr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if readErr == nil {
			t.Fatalf("a download reset midway read whole: %d bytes", len(got))
		}
	}

	if err := reg.InjectFault(Fault{Count: 1, Effect: Stall, Method: http.MethodGet}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := client.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("a stalled request got a response: %d", resp.StatusCode)
	} else if !os.IsTimeout(err) {
		t.Fatalf("stalled request: %v, want a timeout", err)
	}
	resp, err := client.Get(url)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the stall: %v %v, want 200", resp, err)
	}
	resp.Body.Close()

	if err := reg.InjectFault(Fault{Count: 1, Effect: Die, Method: http.MethodHead}); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Head(url); err == nil {
		resp.Body.Close()
		t.Fatalf("the dying request got a response: %d", resp.StatusCode)
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("a dead registry answered: %d", resp.StatusCode)
	}
	if _, tagged, err := reg.Manifest("net/app:v1"); !tagged || err != nil {
		t.Fatalf("the store of a dead registry: tagged %v, %v", tagged, err)
	}

	var effects []int
	for _, r := range reg.Requests() {
		if r.Injected {
			effects = append(effects, r.Status)
		}
	}
	if !reflect.DeepEqual(effects, []int{0, 0, 0, 0}) {
		t.Errorf("injected requests logged with statuses %v, want four with none sent", effects)
	}
	for _, bad := range []Fault{{Count: 1, Effect: Reset, Status: 500}, {Count: 1, Effect: Die + 1}} {
		if err := reg.InjectFault(bad); err == nil {
			t.Errorf("fault %+v was accepted", bad)
		}
	}
}

// TestManifestFindsAPartialImage: a tag whose manifest names a missing blob
// is reported, so tests can tell a whole image from a partial one.
func TestManifestFindsAPartialImage(t *testing.T) {
	reg := StartRegistry(t)
	img := randomImage(t)
	if _, tagged, err := reg.Manifest("partial/app:v1"); tagged || err != nil {
		t.Fatalf("an absent tag: tagged %v, %v", tagged, err)
	}
	PushBase(t, reg, "partial/app:v1", img)
	if _, tagged, err := reg.Manifest("partial/app:v1"); !tagged || err != nil {
		t.Fatalf("a whole image: tagged %v, %v", tagged, err)
	}
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	req, _ := http.NewRequest(http.MethodDelete, "http://"+reg.Host+"/v2/partial/app/blobs/"+digest.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("deleting a blob: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, tagged, err := reg.Manifest("partial/app:v1"); !tagged || err == nil {
		t.Fatalf("a tag missing a layer blob: tagged %v, err %v; want an error", tagged, err)
	}
}

// TestOpenEndedRangeServesTheRest: "Range: bytes=N-", how a download is
// resumed after a reset, gets the blob's remaining bytes.
func TestOpenEndedRangeServesTheRest(t *testing.T) {
	reg := StartRegistry(t)
	img := randomImage(t)
	PushBase(t, reg, "range/app:v1", img)
	config, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg.Host+"/v2/range/app/blobs/"+mustConfigName(t, img), nil)
	req.Header.Set("Range", "bytes=10-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || string(got) != string(config[10:]) {
		t.Fatalf("bytes=10-: status %d, %d bytes; want 206 and the last %d bytes", resp.StatusCode, len(got), len(config)-10)
	}
}

func mustConfigName(t *testing.T, img v1.Image) string {
	t.Helper()
	name, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return name.String()
}
