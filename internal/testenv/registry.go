package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// Registry is a real distribution-API registry (go-containerregistry's
// pkg/registry, in memory) served over net/http on 127.0.0.1.
type Registry struct {
	Host   string // "127.0.0.1:PORT"
	Scheme string // "http" or "https"

	// TLS: the CA that signed the server certificate (valid for 127.0.0.1,
	// ::1 and localhost). Empty for plain HTTP.
	CAFile string
	CA     *CA
	// mTLS: a client certificate the server accepts. Empty unless required.
	ClientCert KeyPair
	clientTLS  []tls.Certificate

	Username, Password string            // empty unless basic auth is required
	tokenCheck         func(string) bool // WithTokenAuth: the secret a helper returned
	issued             map[string]bool   // access tokens the realm issued

	store  http.Handler // the bare registry, reached without auth, faults or logging
	routes map[string]http.Handler
	server *http.Server
	tmpDir string // removed on Close when the registry created it

	mu       sync.Mutex
	faults   []*faultState
	requests []*Request
	closed   chan struct{} // closed when the registry stops serving
	stopOnce sync.Once
}

// Request is one request the registry received, in arrival order; Status is
// 0 until it is answered.
type Request struct {
	Method   string
	Path     string
	Status   int
	User     string // basic-auth user sent, if any
	Injected bool   // answered by an injected fault
}

// Fault makes the registry misbehave on the first Count matching requests
// before serving normally again: answer Status (e.g. 500, 503, 429), or,
// with an Effect, fail the way a network or a crashing registry does.
type Fault struct {
	Count  int
	Status int         // the answer when Effect is Answer
	Effect FaultEffect // what the registry does instead of serving
	Method string      // "" matches every method
	Path   string      // regular expression matched against the URL path; "" matches all
}

// FaultEffect is how a faulty request fails.
type FaultEffect int

const (
	// Answer replies with the fault's Status and a registry error body.
	Answer FaultEffect = iota
	// Reset reads part of the request body (up to resetAfter bytes), sends
	// part of the answer to a GET, then resets the TCP connection: a proxy
	// or registry dropping a blob upload or download midway.
	Reset
	// Stall never answers: the request hangs until the client gives up or
	// the registry is closed.
	Stall
	// Die stops the registry for good, as a crash does: the listener is
	// closed and every connection dropped, this request's included. The
	// store stays readable through Tags and Manifest.
	Die
)

// resetAfter is how much of a request body a Reset fault reads first.
const resetAfter = 16 << 10

type faultState struct {
	Fault
	path      *regexp.Regexp
	remaining int
}

type registryConfig struct {
	addr         string
	tls          bool
	mtls         bool
	clientCA     *CA
	user, pass   string
	tokenCheck   func(string) bool
	faults       []Fault
	certDir      string
	errorLogging io.Writer
	hostnames    []string
	routes       map[string]http.Handler
}

// RegistryOption configures NewRegistry / StartRegistry.
type RegistryOption func(*registryConfig)

// WithTLS serves HTTPS with a certificate from a freshly generated CA.
func WithTLS() RegistryOption { return func(c *registryConfig) { c.tls = true } }

// WithMTLS serves HTTPS and requires a client certificate; one signed by the
// accepted CA is written and exposed as Registry.ClientCert.
func WithMTLS() RegistryOption { return func(c *registryConfig) { c.tls, c.mtls = true, true } }

// WithClientCA serves HTTPS and requires client certificates signed by ca.
func WithClientCA(ca *CA) RegistryOption {
	return func(c *registryConfig) { c.tls, c.mtls, c.clientCA = true, true, ca }
}

// WithBasicAuth requires HTTP basic auth on every request; others get 401
// with `WWW-Authenticate: Basic realm=...`.
func WithBasicAuth(user, password string) RegistryOption {
	return func(c *registryConfig) { c.user, c.pass = user, password }
}

// WithTokenAuth makes the registry demand token as a cloud registry does:
// a Bearer challenge whose realm (/token) issues access tokens for token
// given as a basic-auth password (any user), an OAuth password grant or a
// refresh-token grant; basic auth with token is also accepted directly, as
// ECR does.
func WithTokenAuth(token string) RegistryOption {
	return WithTokenCheck(func(secret string) bool { return subtle.ConstantTimeCompare([]byte(secret), []byte(token)) == 1 })
}

// WithTokenCheck is WithTokenAuth with a check of the presented secret (a
// signed JWT, for example).
func WithTokenCheck(check func(secret string) bool) RegistryOption {
	return func(c *registryConfig) { c.tokenCheck = check }
}

// WithFault injects a fault from the first request on. Prefer
// Registry.InjectFault after seeding base images.
func WithFault(f Fault) RegistryOption {
	return func(c *registryConfig) { c.faults = append(c.faults, f) }
}

// WithAddr listens on addr instead of 127.0.0.1 with a random port.
func WithAddr(addr string) RegistryOption { return func(c *registryConfig) { c.addr = addr } }

// WithCertDir writes the CA and certificates into dir instead of a temp dir.
func WithCertDir(dir string) RegistryOption { return func(c *registryConfig) { c.certDir = dir } }

// WithHostnames adds names to the server certificate, for a registry
// reached under a cloud registry's name (through a Proxy).
func WithHostnames(names ...string) RegistryOption {
	return func(c *registryConfig) { c.hostnames = append(c.hostnames, names...) }
}

// WithRoute serves path with h, before authentication (a token endpoint).
func WithRoute(path string, h http.Handler) RegistryOption {
	return func(c *registryConfig) {
		if c.routes == nil {
			c.routes = map[string]http.Handler{}
		}
		c.routes[path] = h
	}
}

// WithErrorLog sends the HTTP server's own errors (TLS handshake failures) to w.
func WithErrorLog(w io.Writer) RegistryOption { return func(c *registryConfig) { c.errorLogging = w } }

// StartRegistry starts a registry closed when the test ends.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	reg, err := NewRegistry(append([]RegistryOption{WithCertDir(ReadableTempDir(t))}, opts...)...)
	if err != nil {
		t.Fatalf("testenv: starting registry: %v", err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// NewRegistry starts a registry; the caller must Close it.
func NewRegistry(opts ...RegistryOption) (*Registry, error) {
	cfg := registryConfig{addr: "127.0.0.1:0", errorLogging: io.Discard}
	for _, o := range opts {
		o(&cfg)
	}
	reg := &Registry{
		Scheme:     "http",
		Username:   cfg.user,
		Password:   cfg.pass,
		tokenCheck: cfg.tokenCheck,
		issued:     map[string]bool{},
		store:      registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		routes:     cfg.routes,
		closed:     make(chan struct{}),
	}
	for _, f := range cfg.faults {
		if err := reg.InjectFault(f); err != nil {
			return nil, err
		}
	}
	listener, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	reg.Host = listener.Addr().String()
	reg.server = &http.Server{
		Handler:           http.HandlerFunc(reg.serveHTTP),
		ErrorLog:          log.New(cfg.errorLogging, "testregistry: ", 0),
		ReadHeaderTimeout: 30 * time.Second,
	}
	if cfg.tls {
		tlsConfig, err := reg.setUpTLS(&cfg)
		if err != nil {
			listener.Close()
			reg.removeTmpDir()
			return nil, err
		}
		reg.Scheme = "https"
		listener = tls.NewListener(listener, tlsConfig)
	}
	go reg.server.Serve(listener)
	return reg, nil
}

func (r *Registry) setUpTLS(cfg *registryConfig) (*tls.Config, error) {
	dir := cfg.certDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "kiln-registry-"); err != nil {
			return nil, err
		}
		r.tmpDir = dir
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
	}
	ca, err := NewCA(dir, "registry-ca")
	if err != nil {
		return nil, err
	}
	serverPair, err := ca.IssueServer("registry", append([]string{"127.0.0.1", "::1", "localhost"}, cfg.hostnames...)...)
	if err != nil {
		return nil, err
	}
	serverCert, err := serverPair.TLSCertificate()
	if err != nil {
		return nil, err
	}
	r.CA, r.CAFile = ca, ca.CertFile
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}
	if cfg.mtls {
		clientCA := cfg.clientCA
		if clientCA == nil {
			if clientCA, err = NewCA(dir, "client-ca"); err != nil {
				return nil, err
			}
			if r.ClientCert, err = clientCA.IssueClient("client"); err != nil {
				return nil, err
			}
			clientCert, err := r.ClientCert.TLSCertificate()
			if err != nil {
				return nil, err
			}
			r.clientTLS = []tls.Certificate{clientCert}
		}
		tlsConfig.ClientAuth = tls.RequireAndVerifyClientCert
		tlsConfig.ClientCAs = clientCA.Pool
	}
	return tlsConfig, nil
}

// Close stops serving and drops open connections.
func (r *Registry) Close() error {
	err := r.stop()
	r.removeTmpDir()
	return err
}

// stop closes the listener and every connection; stalled requests end.
func (r *Registry) stop() error {
	r.stopOnce.Do(func() { close(r.closed) })
	return r.server.Close()
}

func (r *Registry) removeTmpDir() {
	if r.tmpDir != "" {
		os.RemoveAll(r.tmpDir)
	}
}

// Ref returns host/path, e.g. Ref("app:v1") = "127.0.0.1:PORT/app:v1".
func (r *Registry) Ref(path string) string { return r.Host + "/" + path }

// InjectFault adds a fault, counted from the next request on.
func (r *Registry) InjectFault(f Fault) error {
	answers := f.Effect == Answer
	if f.Count <= 0 || answers != (f.Status >= 400 && f.Status <= 599) || (!answers && f.Status != 0) || f.Effect > Die {
		return fmt.Errorf("fault needs Count > 0 and either a 4xx/5xx Status or another Effect, got %+v", f)
	}
	state := &faultState{Fault: f, remaining: f.Count}
	if f.Path != "" {
		re, err := regexp.Compile(f.Path)
		if err != nil {
			return fmt.Errorf("fault path pattern %q: %w", f.Path, err)
		}
		state.path = re
	}
	r.mu.Lock()
	r.faults = append(r.faults, state)
	r.mu.Unlock()
	return nil
}

// Requests returns every request answered so far.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	requests := make([]Request, len(r.requests))
	for i, req := range r.requests {
		requests[i] = *req
	}
	return requests
}

// Count counts the requests received with method whose path holds part.
func (r *Registry) Count(method, part string) int {
	n := 0
	for _, req := range r.Requests() {
		if req.Method == method && strings.Contains(req.Path, part) {
			n++
		}
	}
	return n
}

// Writes returns the requests that could change content: PUT, POST, PATCH
// and DELETE, whatever their outcome. Empty means nothing was pushed.
func (r *Registry) Writes() []Request {
	var writes []Request
	for _, req := range r.Requests() {
		switch req.Method {
		case http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete:
			writes = append(writes, req)
		}
	}
	return writes
}

// ResetRequests forgets the requests logged so far.
func (r *Registry) ResetRequests() {
	r.mu.Lock()
	r.requests = nil
	r.mu.Unlock()
}

// Tags lists the tags of repo (nil when the repository does not exist),
// read directly from the store: no auth, no faults, not logged.
func (r *Registry) Tags(repo string) []string {
	var body struct {
		Tags []string `json:"tags"`
	}
	if !r.getJSON("/v2/"+repo+"/tags/list", &body) {
		return nil
	}
	sort.Strings(body.Tags)
	return body.Tags
}

// Repositories lists every repository held, sorted.
func (r *Registry) Repositories() []string {
	var body struct {
		Repositories []string `json:"repositories"`
	}
	if !r.getJSON("/v2/_catalog?n=100000", &body) {
		return nil
	}
	sort.Strings(body.Repositories)
	return body.Repositories
}

func (r *Registry) getJSON(path string, into any) bool {
	rec := httptest.NewRecorder()
	r.store.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), into) == nil
}

// Transport returns a client transport trusting the registry's CA and
// presenting its client certificate when mTLS is on.
func (r *Registry) Transport() *http.Transport {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if r.CA != nil {
		transport.TLSClientConfig = &tls.Config{
			RootCAs:      r.CA.Pool,
			Certificates: r.clientTLS,
			MinVersion:   tls.VersionTLS12,
		}
	}
	return transport
}

// RemoteOptions are go-containerregistry remote options that reach this
// registry as a well-configured client: CA trusted, client cert, credentials.
func (r *Registry) RemoteOptions() []remote.Option {
	auth := authn.Anonymous
	if r.Username != "" {
		auth = &authn.Basic{Username: r.Username, Password: r.Password}
	}
	if r.tokenCheck != nil {
		auth = authn.FromConfig(authn.AuthConfig{RegistryToken: r.adminToken()})
	}
	return []remote.Option{remote.WithTransport(r.Transport()), remote.WithAuth(auth)}
}

// adminToken issues an access token for the test's own requests.
func (r *Registry) adminToken() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.issued["test-admin"] = true
	return "test-admin"
}

// Pull fetches an image through the network path (logged, subject to faults).
func (r *Registry) Pull(t testing.TB, path string) v1.Image {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(path))
	if err != nil {
		t.Fatalf("testenv: reference %q: %v", path, err)
	}
	img, err := remote.Image(ref, r.RemoteOptions()...)
	if err != nil {
		t.Fatalf("testenv: pulling %s: %v", ref, err)
	}
	return img
}

// Manifest reads the image path (repo:tag) from the store, bypassing faults
// and the request log, and checks that it is whole: the manifest and every
// blob it names are held with their digests. tagged is false when the tag
// does not exist; err says what is missing or corrupt.
func (r *Registry) Manifest(path string) (img v1.Image, tagged bool, err error) {
	ref, err := name.ParseReference(r.Ref(path), name.Insecure)
	if err != nil {
		return nil, false, err
	}
	img, err = remote.Image(ref, remote.WithTransport(storeTransport{r.store}))
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	return img, true, validate.Image(img)
}

// storeTransport reaches the store directly, so seeding base images neither
// needs credentials nor shows up in Requests() nor consumes faults.
type storeTransport struct{ store http.Handler }

func (s storeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil {
		req.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	s.store.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

func (r *Registry) serveHTTP(w http.ResponseWriter, req *http.Request) {
	user, _, _ := req.BasicAuth()
	recorder := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	// Logged on arrival (a stalled request shows), its status when answered.
	entry := &Request{Method: req.Method, Path: req.URL.Path, User: user}
	r.mu.Lock()
	r.requests = append(r.requests, entry)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		entry.Status = recorder.status
		r.mu.Unlock()
	}()
	if fault, ok := r.takeFault(req, entry); ok {
		r.inject(fault, recorder, w, req)
		return
	}
	if h, ok := r.routes[req.URL.Path]; ok {
		h.ServeHTTP(recorder, req)
		return
	}
	if r.tokenCheck != nil && req.URL.Path == "/token" {
		r.issueToken(recorder, req)
		return
	}
	if !r.authorized(req) {
		challenge := `Basic realm="kiln test registry"`
		if r.tokenCheck != nil {
			challenge = fmt.Sprintf(`Bearer realm="%s://%s/token",service="%s"`, r.Scheme, req.Host, req.Host)
		}
		recorder.Header().Set("WWW-Authenticate", challenge)
		writeRegistryError(recorder, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	r.completeRange(req)
	r.store.ServeHTTP(recorder, req)
}

// openRange is an open-ended byte range, "bytes=N-": how containerd resumes
// a blob download after a broken connection.
var openRange = regexp.MustCompile(`^bytes=(\d+)-$`)

// completeRange turns an open-ended Range into the closed form the store
// understands (it answers 416 otherwise, where registries such as
// distribution serve the rest of the blob).
func (r *Registry) completeRange(req *http.Request) {
	m := openRange.FindStringSubmatch(req.Header.Get("Range"))
	if req.Method != http.MethodGet || m == nil {
		return
	}
	head := httptest.NewRecorder()
	r.store.ServeHTTP(head, httptest.NewRequest(http.MethodHead, req.URL.Path, nil))
	size, err := strconv.ParseInt(head.Header().Get("Content-Length"), 10, 64)
	if head.Code != http.StatusOK || err != nil || size == 0 {
		return
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%s-%d", m[1], size-1))
}

// takeFault finds the fault req meets and marks entry injected.
func (r *Registry) takeFault(req *http.Request, entry *Request) (Fault, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.faults {
		if f.remaining == 0 || (f.Method != "" && f.Method != req.Method) ||
			(f.path != nil && !f.path.MatchString(req.URL.Path)) {
			continue
		}
		f.remaining--
		entry.Injected = true
		return f.Fault, true
	}
	return Fault{}, false
}

// inject fails req as f says. Effects other than Answer log status 0: no
// response was sent.
func (r *Registry) inject(f Fault, recorder *statusRecorder, w http.ResponseWriter, req *http.Request) {
	switch f.Effect {
	case Answer:
		writeRegistryError(recorder, f.Status, "UNAVAILABLE", "injected fault")
		return
	case Reset:
		io.CopyN(io.Discard, req.Body, resetAfter)
		var partial bytes.Buffer
		if req.Method == http.MethodGet {
			r.completeRange(req)
			answer := httptest.NewRecorder()
			r.store.ServeHTTP(answer, req)
			resp := answer.Result()
			body := answer.Body.Bytes()
			resp.Body = io.NopCloser(bytes.NewReader(body[:len(body)/2]))
			resp.Write(&partial) // the head promises the whole body
		}
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Write(partial.Bytes())
			if tcp, ok := conn.(*net.TCPConn); ok {
				tcp.SetLinger(0) // close with RST, not FIN
			}
			conn.Close()
		}
	case Stall:
		select {
		case <-req.Context().Done():
		case <-r.closed:
		}
	case Die:
		r.stop()
	}
	recorder.status = 0
}

func (r *Registry) authorized(req *http.Request) bool {
	if r.tokenCheck != nil {
		if bearer, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.issued[bearer]
		}
		_, pass, ok := req.BasicAuth()
		return ok && r.tokenCheck(pass)
	}
	if r.Username == "" {
		return true
	}
	user, pass, ok := req.BasicAuth()
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(r.Username)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(r.Password)) == 1
	return ok && userOK && passOK
}

// issueToken is the Bearer realm: an access token for the helper's secret,
// sent as a basic-auth password (GET) or an OAuth password or refresh-token
// grant (POST), the forms registry clients use.
func (r *Registry) issueToken(w http.ResponseWriter, req *http.Request) {
	_, secret, _ := req.BasicAuth()
	if req.Method == http.MethodPost {
		req.ParseForm()
		switch req.Form.Get("grant_type") {
		case "password":
			secret = req.Form.Get("password")
		case "refresh_token":
			secret = req.Form.Get("refresh_token")
		}
	}
	if secret == "" || !r.tokenCheck(secret) {
		writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid credentials")
		return
	}
	issued := make([]byte, 16)
	rand.Read(issued)
	token := hex.EncodeToString(issued)
	r.mu.Lock()
	r.issued[token] = true
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": token, "access_token": token, "expires_in": 300})
}

func writeRegistryError(w http.ResponseWriter, status int, code, message string) {
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": message}},
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}
