package testenv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Local fakes of the cloud endpoints kiln talks to, each speaking the
// service's real protocol and checking the caller's credentials the way the
// service does (SigV4 signatures, signed JWT assertions, client secrets).

// Proxy is an HTTP proxy (CONNECT for HTTPS, absolute URLs for HTTP) that
// sends every request for a routed host name to a local address, so a
// process given HTTPS_PROXY reaches "123456789012.dkr.ecr…" or
// "account.blob.core.windows.net" without any DNS entry.
type Proxy struct {
	URL string // http://127.0.0.1:PORT, for HTTPS_PROXY and HTTP_PROXY

	mu     sync.Mutex
	routes map[string]string // host name (no port) -> 127.0.0.1:PORT
}

// StartProxy starts a proxy closed when the test ends.
func StartProxy(t testing.TB) *Proxy {
	t.Helper()
	p := &Proxy{routes: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Route sends requests for hostname (any port) to addr.
func (p *Proxy) Route(hostname, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[hostname] = addr
}

func (p *Proxy) target(hostPort string) (string, bool) {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		host = hostPort
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	addr, ok := p.routes[host]
	return addr, ok
}

func (p *Proxy) serve(w http.ResponseWriter, req *http.Request) {
	hostPort := req.Host
	if req.Method != http.MethodConnect {
		hostPort = req.URL.Host
	}
	addr, ok := p.target(hostPort)
	if !ok {
		http.Error(w, "no route for "+hostPort, http.StatusBadGateway)
		return
	}
	if req.Method != http.MethodConnect {
		rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Host = addr
			r.Out.Host = req.Host
		}}
		rp.ServeHTTP(w, req)
		return
	}
	upstream, err := net.Dial("tcp", addr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		upstream.Close()
		http.Error(w, "no hijacking", http.StatusInternalServerError)
		return
	}
	client, buf, err := hj.Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	go func() {
		io.Copy(upstream, buf)
		upstream.Close()
	}()
	go func() {
		io.Copy(client, upstream)
		client.Close()
	}()
}

// Env is HTTPS_PROXY and HTTP_PROXY pointing at the proxy (loopback
// addresses are never proxied, so local fakes stay reachable directly).
func (p *Proxy) Env() []string {
	return []string{"HTTPS_PROXY=" + p.URL, "HTTP_PROXY=" + p.URL, "NO_PROXY="}
}

// Transport returns an http.Transport that reaches routed host names directly
// (for in-process clients, whose proxy settings are read once per process)
// and trusts ca.
func (p *Proxy) Transport(ca *CA) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = func(ctx context.Context, network, hostPort string) (net.Conn, error) {
		if addr, ok := p.target(hostPort); ok {
			hostPort = addr
		}
		return (&net.Dialer{}).DialContext(ctx, network, hostPort)
	}
	if ca != nil {
		t.TLSClientConfig.RootCAs = ca.Pool
	}
	return t
}

// AWSCredentials are an access key pair the fakes accept.
type AWSCredentials struct{ AccessKeyID, SecretAccessKey string }

// Env is the pair as the AWS SDK's variables.
func (c AWSCredentials) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey}
}

// RequireSigV4 wraps next with AWS Signature Version 4 verification: the
// request's signature must be the one creds would compute for it.
func RequireSigV4(next http.Handler, creds AWSCredentials, service string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if code, ok := verifySigV4(req, creds, service); !ok {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "<Error><Code>%s</Code><Message>request signature rejected</Message></Error>", code)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// verifySigV4 re-signs the request with creds and compares signatures; the
// code says why it failed, as AWS names it.
func verifySigV4(req *http.Request, creds AWSCredentials, service string) (string, bool) {
	auth := req.Header.Get("Authorization")
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") || len(scope) != 5 {
		return "AccessDenied", false
	}
	if scope[0] != creds.AccessKeyID {
		return "InvalidAccessKeyId", false
	}
	signedAt, err := time.Parse("20060102T150405Z", req.Header.Get("X-Amz-Date"))
	if err != nil {
		return "AccessDenied", false
	}
	payloadHash := req.Header.Get("X-Amz-Content-Sha256")
	if payloadHash == "" || payloadHash == "UNSIGNED-PAYLOAD" && service != "s3" {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(strings.NewReader(string(body)))
		sum := sha256.Sum256(body)
		payloadHash = fmt.Sprintf("%x", sum)
	}
	check, _ := http.NewRequest(req.Method, "http://"+req.Host+req.URL.RequestURI(), nil)
	check.ContentLength = req.ContentLength
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		if h == "host" {
			continue
		}
		check.Header[http.CanonicalHeaderKey(h)] = req.Header.Values(h)
	}
	check.Host = req.Host
	err = v4.NewSigner().SignHTTP(req.Context(), aws.Credentials{
		AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: req.Header.Get("X-Amz-Security-Token"),
	}, check, payloadHash, scope[3], scope[2], signedAt)
	if err != nil {
		return "AccessDenied", false
	}
	want := check.Header.Get("Authorization")
	if want[strings.LastIndex(want, "Signature=")+len("Signature="):] != fields["Signature"] {
		return "SignatureDoesNotMatch", false
	}
	return "", true
}

// FakeECR is the ECR API's GetAuthorizationToken, for AWS_ENDPOINT_URL_ECR.
type FakeECR struct {
	URL      string
	Password string // the registry password the token carries (user "AWS")
	Calls    func() int
}

// StartFakeECR answers GetAuthorizationToken for callers signing with creds.
func StartFakeECR(t testing.TB, creds AWSCredentials, password string) *FakeECR {
	t.Helper()
	var mu sync.Mutex
	calls := 0
	api := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !strings.HasSuffix(req.Header.Get("X-Amz-Target"), ".GetAuthorizationToken") {
			http.Error(w, "unknown operation", http.StatusBadRequest)
			return
		}
		mu.Lock()
		calls++
		mu.Unlock()
		var input struct {
			RegistryIDs []string `json:"registryIds"`
		}
		json.NewDecoder(req.Body).Decode(&input)
		region := strings.Split(req.Header.Get("Authorization"), "/")[2]
		var data []map[string]any
		for _, id := range input.RegistryIDs {
			data = append(data, map[string]any{
				"authorizationToken": base64.StdEncoding.EncodeToString([]byte("AWS:" + password)),
				"expiresAt":          float64(time.Now().Add(12 * time.Hour).Unix()),
				"proxyEndpoint":      "https://" + id + ".dkr.ecr." + region + ".amazonaws.com",
			})
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		json.NewEncoder(w).Encode(map[string]any{"authorizationData": data})
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if code, ok := verifySigV4(req, creds, "ecr"); !ok {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"__type": "UnrecognizedClientException", "message": "The security token included in the request is invalid (" + code + ")."})
			return
		}
		api.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return &FakeECR{URL: srv.URL, Password: password, Calls: func() int { mu.Lock(); defer mu.Unlock(); return calls }}
}

// FakeGoogleTokenEndpoint is OAuth 2.0's token endpoint for service
// accounts: it grants AccessToken for a JWT assertion signed by the key of
// the service account JSON it wrote.
type FakeGoogleTokenEndpoint struct {
	URL         string
	AccessToken string
	key         *rsa.PrivateKey
}

// StartFakeGoogleTokenEndpoint starts the endpoint, closed when the test ends.
func StartFakeGoogleTokenEndpoint(t testing.TB, accessToken string) *FakeGoogleTokenEndpoint {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &FakeGoogleTokenEndpoint{AccessToken: accessToken, key: key}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL + "/token"
	return f
}

func (f *FakeGoogleTokenEndpoint) serve(w http.ResponseWriter, req *http.Request) {
	if err := req.ParseForm(); err != nil || req.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, "unsupported_grant_type")
		return
	}
	if !f.signedByServiceAccount(req.Form.Get("assertion")) {
		oauthError(w, "invalid_grant")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": f.AccessToken, "expires_in": 3600, "token_type": "Bearer"})
}

// signedByServiceAccount checks a JWT's RS256 signature against the
// service account's key.
func (f *FakeGoogleTokenEndpoint) signedByServiceAccount(jwt string) bool {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	return err == nil && rsa.VerifyPKCS1v15(&f.key.PublicKey, crypto.SHA256, digest[:], sig) == nil
}

// Accepts is how a Google registry checks a credential: the access token
// this endpoint issued, or a JWT the service account signed itself (what
// docker-credential-gcr sends).
func (f *FakeGoogleTokenEndpoint) Accepts(secret string) bool {
	return secret == f.AccessToken || f.signedByServiceAccount(secret)
}

func oauthError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": "rejected by the kiln test endpoint"})
}

// ServiceAccountJSON writes a service account key file whose token_uri is
// this endpoint; signedByOtherKey writes one the endpoint rejects.
func (f *FakeGoogleTokenEndpoint) ServiceAccountJSON(t testing.TB, signedByOtherKey bool) string {
	t.Helper()
	key := f.key
	if signedByOtherKey {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "kiln-test",
		"private_key_id": "kiln-test-key",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "builder@kiln-test.iam.gserviceaccount.com",
		"client_id":      "1234567890",
		"token_uri":      f.URL,
	})
	path := filepath.Join(ReadableTempDir(t), "service-account.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// FakeEntraAuthority is a Microsoft Entra ID authority (for
// AZURE_AUTHORITY_HOST) over TLS: OpenID discovery and a token endpoint that
// grants AccessToken for the client credentials it knows.
type FakeEntraAuthority struct {
	URL          string // https://127.0.0.1:PORT/
	CA           *CA
	TenantID     string
	ClientID     string
	ClientSecret string
	AccessToken  string
}

// StartFakeEntraAuthority starts the authority, closed when the test ends.
func StartFakeEntraAuthority(t testing.TB, clientSecret, accessToken string) *FakeEntraAuthority {
	t.Helper()
	f := &FakeEntraAuthority{TenantID: "11111111-2222-3333-4444-555555555555", ClientID: "66666666-7777-8888-9999-000000000000",
		ClientSecret: clientSecret, AccessToken: accessToken}
	srv, ca := StartTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		base := "https://" + req.Host + "/" + f.TenantID
		switch {
		case strings.HasSuffix(req.URL.Path, "/.well-known/openid-configuration"):
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{
				"token_endpoint":         base + "/oauth2/v2.0/token",
				"authorization_endpoint": base + "/oauth2/v2.0/authorize",
				"issuer":                 base + "/v2.0",
			})
		case strings.HasSuffix(req.URL.Path, "/oauth2/v2.0/token"), strings.HasSuffix(req.URL.Path, "/oauth2/token"):
			req.ParseForm()
			if req.Form.Get("grant_type") != "client_credentials" || req.Form.Get("client_id") != f.ClientID ||
				req.Form.Get("client_secret") != f.ClientSecret {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
				return
			}
			w.Header().Set("Content-Type", "application/json")
			expiresOn := time.Now().Add(time.Hour).Unix()
			json.NewEncoder(w).Encode(map[string]any{"access_token": f.AccessToken, "expires_in": 3600, "ext_expires_in": 3600,
				"expires_on": fmt.Sprint(expiresOn), "not_before": fmt.Sprint(expiresOn - 3600), "resource": req.Form.Get("resource"), "token_type": "Bearer"})
		default:
			http.NotFound(w, req)
		}
	}))
	f.URL, f.CA = srv.URL+"/", ca
	return f
}

// Env is the service principal's variables for azidentity.
func (f *FakeEntraAuthority) Env() []string {
	return []string{"AZURE_AUTHORITY_HOST=" + f.URL, "AZURE_TENANT_ID=" + f.TenantID,
		"AZURE_CLIENT_ID=" + f.ClientID, "AZURE_CLIENT_SECRET=" + f.ClientSecret}
}

// EnvironmentFile writes a go-autorest environment file naming this
// authority, for AZURE_ENVIRONMENT=AZURESTACKCLOUD and
// AZURE_ENVIRONMENT_FILEPATH (how the docker-credential-acr-env binary is
// pointed at an authority).
func (f *FakeEntraAuthority) EnvironmentFile(t testing.TB) string {
	t.Helper()
	data, _ := json.Marshal(map[string]string{
		"name": "AzureStackCloud", "activeDirectoryEndpoint": f.URL, "resourceManagerEndpoint": "https://management.azure.com/",
		"tokenAudience": "https://management.azure.com/", "containerRegistryDNSSuffix": "azurecr.io",
	})
	path := filepath.Join(ReadableTempDir(t), "azure-environment.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ACRExchange is a registry's /oauth2/exchange: it trades the authority's
// access token for refreshToken, as Azure Container Registry does.
func ACRExchange(accessToken, refreshToken string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		req.ParseForm()
		if req.Method != http.MethodPost || req.Form.Get("grant_type") != "access_token" || req.Form.Get("access_token") != accessToken {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid access token"}]}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"refresh_token": refreshToken})
	})
}

// CABundle writes the system roots followed by the given CAs into one PEM
// file, for SSL_CERT_FILE.
func CABundle(t testing.TB, cas ...*CA) string {
	t.Helper()
	var bundle []byte
	for _, system := range []string{"/etc/ssl/certs/ca-certificates.crt"} {
		if b, err := os.ReadFile(system); err == nil {
			bundle = append(bundle, b...)
		}
	}
	for _, ca := range cas {
		b, err := os.ReadFile(ca.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	path := filepath.Join(ReadableTempDir(t), "ca-bundle.pem")
	if err := os.WriteFile(path, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// FakeAzureBlob is Azure Blob Storage's GET Blob over TLS for one storage
// account, checking Shared Key signatures (AZURE_STORAGE_ACCESS_KEY).
type FakeAzureBlob struct {
	Account  string
	Hostname string // <account>.blob.core.windows.net
	Addr     string // 127.0.0.1:PORT
	Key      string // base64 account key
	CA       *CA

	mu    sync.Mutex
	blobs map[string]map[string][]byte // container -> blob -> content
}

// StartFakeAzureBlob starts the account's blob endpoint, closed when the test ends.
func StartFakeAzureBlob(t testing.TB, account string) *FakeAzureBlob {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	f := &FakeAzureBlob{Account: account, Hostname: account + ".blob.core.windows.net",
		Key: base64.StdEncoding.EncodeToString(key), blobs: map[string]map[string][]byte{}}
	srv, ca := StartTLSServer(t, http.HandlerFunc(f.serve), f.Hostname)
	f.Addr, f.CA = srv.Listener.Addr().String(), ca
	return f
}

// Put stores content as container/blob, creating the container.
func (f *FakeAzureBlob) Put(container, blob string, content []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blobs[container] == nil {
		f.blobs[container] = map[string][]byte{}
	}
	f.blobs[container][blob] = content
}

// URL is the blob's URL as a Kaniko Job names it.
func (f *FakeAzureBlob) URL(container, blob string) string {
	return "https://" + f.Hostname + "/" + container + "/" + blob
}

func (f *FakeAzureBlob) serve(w http.ResponseWriter, req *http.Request) {
	fail := func(status int, code string) {
		w.Header().Set("x-ms-error-code", code)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code><Message>kiln test</Message></Error>", code)
	}
	if req.Method != http.MethodGet {
		fail(http.StatusMethodNotAllowed, "UnsupportedHttpVerb")
		return
	}
	if !f.signedWithKey(req) {
		fail(http.StatusForbidden, "AuthenticationFailed")
		return
	}
	container, blob, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
	f.mu.Lock()
	blobs, containerOK := f.blobs[container]
	content, blobOK := blobs[blob]
	f.mu.Unlock()
	switch {
	case !containerOK:
		fail(http.StatusNotFound, "ContainerNotFound")
		return
	case !blobOK:
		fail(http.StatusNotFound, "BlobNotFound")
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(content)))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("x-ms-blob-type", "BlockBlob")
	w.Header().Set("ETag", `"0x1"`)
	w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
	w.Write(content)
}

// signedWithKey checks the Shared Key signature over the request's
// string-to-sign, as the Blob service defines it.
func (f *FakeAzureBlob) signedWithKey(req *http.Request) bool {
	scheme, value, _ := strings.Cut(req.Header.Get("Authorization"), " ")
	account, sig, _ := strings.Cut(value, ":")
	if scheme != "SharedKey" || account != f.Account {
		return false
	}
	header := func(name string) string { return req.Header.Get(name) }
	length := header("Content-Length")
	if length == "0" {
		length = ""
	}
	lines := []string{req.Method, header("Content-Encoding"), header("Content-Language"), length, header("Content-MD5"),
		header("Content-Type"), header("Date"), header("If-Modified-Since"), header("If-Match"), header("If-None-Match"),
		header("If-Unmodified-Since"), header("Range")}
	var msHeaders []string
	for name := range req.Header {
		if lower := strings.ToLower(name); strings.HasPrefix(lower, "x-ms-") {
			msHeaders = append(msHeaders, lower)
		}
	}
	sort.Strings(msHeaders)
	var canonical strings.Builder
	for _, name := range msHeaders {
		canonical.WriteString(name + ":" + strings.TrimSpace(req.Header.Get(name)) + "\n")
	}
	resource := "/" + f.Account + req.URL.EscapedPath()
	query := req.URL.Query()
	var params []string
	for name := range query {
		params = append(params, name)
	}
	sort.Strings(params)
	for _, name := range params {
		values := query[name]
		sort.Strings(values)
		resource += "\n" + strings.ToLower(name) + ":" + strings.Join(values, ",")
	}
	toSign := strings.Join(lines, "\n") + "\n" + canonical.String() + resource
	key, _ := base64.StdEncoding.DecodeString(f.Key)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(toSign))
	return hmac.Equal([]byte(base64.StdEncoding.EncodeToString(mac.Sum(nil))), []byte(sig))
}

// FakeS3 is gofakes3 (an in-memory S3) behind SigV4 verification.
type FakeS3 struct {
	URL     string // for S3_ENDPOINT, path-style
	backend *s3mem.Backend
}

// StartFakeS3 starts the store, closed when the test ends.
func StartFakeS3(t testing.TB, creds AWSCredentials) *FakeS3 {
	t.Helper()
	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	srv := httptest.NewServer(RequireSigV4(faker.Server(), creds, "s3"))
	t.Cleanup(srv.Close)
	return &FakeS3{URL: srv.URL, backend: backend}
}

// Put stores content as bucket/key, creating the bucket.
func (f *FakeS3) Put(t testing.TB, bucket, key string, content []byte) {
	t.Helper()
	if ok, _ := f.backend.BucketExists(bucket); !ok {
		if err := f.backend.CreateBucket(bucket); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.backend.PutObject(bucket, key, nil, bytes.NewReader(content), int64(len(content)), nil); err != nil {
		t.Fatal(err)
	}
}

// StartFakeGCS starts fake-gcs-server's JSON API on 127.0.0.1 (for
// STORAGE_EMULATOR_HOST), requiring the bearer token accessToken as Cloud
// Storage requires an OAuth token. It returns the host:port and the server
// to create buckets and objects in.
func StartFakeGCS(t testing.TB, accessToken string) (string, *fakestorage.Server) {
	t.Helper()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true, Writer: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	handler := fake.HTTPHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "Bearer "+accessToken {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":401,"message":"Invalid Credentials"}}`)
			return
		}
		handler.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(fake.Stop)
	return strings.TrimPrefix(srv.URL, "http://"), fake
}
