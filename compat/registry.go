package compat

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/buildkit/session/auth/authprovider"
	resolverconfig "github.com/moby/buildkit/util/resolver/config"

	"github.com/kilnbuild/kiln/flagmap"
)

// DockerHub is Docker Hub's registry name as go-containerregistry normalises
// it, and so the key Kaniko's --registry-map and --registry-mirror use.
const DockerHub = "index.docker.io"

// RegistrySettings are Kaniko's registry flags (plain HTTP, TLS, client
// certificates, mirrors and maps) in the three forms kiln needs: transports
// for its own pushes, buildkitd.toml for the daemon's pulls, and TLS configs
// for BuildKit's session auth. Hosts are registry names as
// go-containerregistry prints them ("gcr.io", "127.0.0.1:5000",
// "index.docker.io"), matched exactly like Kaniko does.
type RegistrySettings struct {
	insecure           bool
	insecurePull       bool
	insecureRegistries []string
	skipTLSVerify      bool
	skipTLSVerifyHosts []string
	caFiles            map[string]string // host -> CA file, only hosts that verify TLS
	clientCerts        map[string]resolverconfig.TLSKeyPair
	maps               map[string][]string // Kaniko registry -> replacements, mirrors last

	// SkipDefaultRegistryFallback and ImageDownloadRetry apply to pulls kiln
	// makes itself: it resolves base images and pins BuildKit to the result,
	// as BuildKit's mirrors always fall back and retry on their own terms.
	SkipDefaultRegistryFallback bool
	ImageDownloadRetry          int

	userAgent string
	roots     map[string]*x509.CertPool
	keyPairs  map[string]tls.Certificate

	mu         sync.Mutex
	transports map[string]http.RoundTripper
}

// NewRegistrySettings validates the registry flags of opts and loads the CA
// files and client key pairs they name. version goes into the User-Agent.
func NewRegistrySettings(opts *flagmap.Options, version string) (*RegistrySettings, error) {
	s := &RegistrySettings{
		insecure:                    opts.Insecure,
		insecurePull:                opts.InsecurePull,
		insecureRegistries:          slices.Clone(opts.InsecureRegistries),
		skipTLSVerify:               opts.SkipTLSVerify,
		skipTLSVerifyHosts:          slices.Clone(opts.SkipTLSVerifyRegistries),
		caFiles:                     map[string]string{},
		clientCerts:                 map[string]resolverconfig.TLSKeyPair{},
		maps:                        mergeMirrors(opts.RegistryMaps, opts.RegistryMirrors),
		SkipDefaultRegistryFallback: opts.SkipDefaultRegistryFallback,
		ImageDownloadRetry:          opts.ImageDownloadRetry,
		userAgent:                   UserAgent(version, opts.Env.UpstreamClientType),
		roots:                       map[string]*x509.CertPool{},
		keyPairs:                    map[string]tls.Certificate{},
		transports:                  map[string]http.RoundTripper{},
	}
	for _, host := range sortedKeys(opts.RegistryCertificates) {
		// Kaniko never reads the CA of a host whose verification is skipped.
		if s.skipsVerification(host) {
			continue
		}
		path := opts.RegistryCertificates[host]
		pool, err := loadCAFile(path)
		if err != nil {
			return nil, fmt.Errorf("--registry-certificate %s=%s: %v (give host=/path/to/ca.pem, a readable PEM certificate)", host, path, err)
		}
		s.caFiles[host], s.roots[host] = path, pool
	}
	for _, host := range sortedKeys(opts.RegistryClientCerts) {
		value := opts.RegistryClientCerts[host]
		files := strings.Split(value, ",")
		if len(files) != 2 {
			return nil, fmt.Errorf("--registry-client-cert %s=%s: expected %s=/path/to/cert.pem,/path/to/key.pem", host, value, host)
		}
		pair, err := tls.LoadX509KeyPair(files[0], files[1])
		if err != nil {
			return nil, fmt.Errorf("--registry-client-cert %s=%s: cannot load the certificate and key: %v (give readable, matching PEM files)", host, value, err)
		}
		s.clientCerts[host] = resolverconfig.TLSKeyPair{Certificate: files[0], Key: files[1]}
		s.keyPairs[host] = pair
	}
	return s, nil
}

// UserAgent is what kiln sends to registries: "kiln/<version>", followed by
// ",<UPSTREAM_CLIENT_TYPE>" when set, as Kaniko does with its own name.
func UserAgent(version, upstreamClient string) string {
	agent := "kiln/" + version
	if upstreamClient != "" {
		agent += "," + upstreamClient
	}
	return agent
}

// mergeMirrors appends each --registry-mirror to Docker Hub's map entry after
// the explicit --registry-map entries, as Kaniko does.
func mergeMirrors(maps map[string][]string, mirrors []string) map[string][]string {
	merged := make(map[string][]string, len(maps)+1)
	for registry, replacements := range maps {
		merged[registry] = slices.Clone(replacements)
	}
	for _, mirror := range mirrors {
		// Tolerate a parser that already folded mirrors into the map.
		if !slices.Contains(merged[DockerHub], mirror) {
			merged[DockerHub] = append(merged[DockerHub], mirror)
		}
	}
	return merged
}

// Mappings are the --registry-map and --registry-mirror replacements for
// host (go-containerregistry's name, "index.docker.io" for Docker Hub), in
// the order Kaniko tries them.
func (s *RegistrySettings) Mappings(host string) []string {
	return slices.Clone(s.maps[host])
}

func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate found in %s", path)
	}
	return pool, nil
}

func (s *RegistrySettings) skipsVerification(host string) bool {
	return s.skipTLSVerify || slices.Contains(s.skipTLSVerifyHosts, host)
}

// plainHTTP says whether host may be reached over plain HTTP: --insecure for
// pushes (and cache), --insecure-pull for pulls, --insecure-registry for both.
func (s *RegistrySettings) plainHTTP(host string, forPull bool) bool {
	if slices.Contains(s.insecureRegistries, host) {
		return true
	}
	if forPull {
		return s.insecurePull
	}
	return s.insecure
}

// NameOptions parse references to host: weak validation as Kaniko, plus
// name.Insecure (HTTPS first, then plain HTTP) where the flags allow it.
func (s *RegistrySettings) NameOptions(host string, forPull bool) []name.Option {
	opts := []name.Option{name.WeakValidation}
	if s.plainHTTP(host, forPull) {
		opts = append(opts, name.Insecure)
	}
	return opts
}

// ParseTag parses a destination or base image like Kaniko (a missing tag
// becomes "latest") with the plain-HTTP setting of its registry applied.
func (s *RegistrySettings) ParseTag(ref string, forPull bool) (name.Tag, error) {
	tag, err := name.NewTag(ref, name.WeakValidation)
	if err != nil {
		return name.Tag{}, err
	}
	return name.NewTag(ref, s.NameOptions(tag.RegistryStr(), forPull)...)
}

// Transport reaches host with Kaniko's TLS rules: verification skipped by
// --skip-tls-verify(-registry), otherwise the system roots plus the
// --registry-certificate CA; the --registry-client-cert pair when given.
// It sets kiln's User-Agent on every request.
func (s *RegistrySettings) Transport(host string) http.RoundTripper {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.transports[host]; ok {
		return t
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	tlsConfig := &tls.Config{}
	if s.skipsVerification(host) {
		tlsConfig.InsecureSkipVerify = true
	} else if roots, ok := s.roots[host]; ok {
		tlsConfig.RootCAs = roots
	}
	if pair, ok := s.keyPairs[host]; ok {
		tlsConfig.Certificates = []tls.Certificate{pair}
	}
	base.TLSClientConfig = tlsConfig
	t := &userAgentTransport{agent: s.userAgent, next: base}
	s.transports[host] = t
	return t
}

// RemoteOptions are go-containerregistry options for kiln's own requests to
// host: credentials from kc, Kaniko's TLS rules and kiln's User-Agent.
func (s *RegistrySettings) RemoteOptions(ctx context.Context, host string, kc authn.Keychain) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithTransport(s.Transport(host)),
	}
}

// userAgentTransport replaces the User-Agent go-containerregistry sets, so
// registries see exactly "kiln/<version>[,<client>]" like Kaniko's header.
type userAgentTransport struct {
	agent string
	next  http.RoundTripper
}

func (t *userAgentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", t.agent)
	return t.next.RoundTrip(req)
}

// DaemonHosts names the registries a build reaches through BuildKit, as
// Kaniko host names. buildkitd.toml has no wildcard section, so the global
// --insecure, --insecure-pull and --skip-tls-verify flags are written out for
// each host listed here.
type DaemonHosts struct {
	Pull []string // base images (FROM, COPY --from, RUN --mount from=)
	Push []string // destinations and the cache repository
}

// DaemonRegistries is the [registry] table of buildkitd.toml, keyed by
// BuildKit's host names ("docker.io" for Docker Hub).
//
// Differences from Kaniko that the daemon's resolver imposes:
//   - A plain-HTTP host gets both `http = true` and `insecure = true`:
//     that is BuildKit's only way to try HTTPS first and then plain HTTP as
//     go-containerregistry does; the HTTPS attempt is then unverified.
//   - Mirrors are tried in order and the original registry last, always;
//     kiln's executor resolves base images itself (Kaniko's order, retries
//     and --skip-default-registry-fallback) and pins BuildKit to the result,
//     so these mirrors only serve pulls it did not pin.
//   - A mirror "host/prefix" serves host/v2/prefix/<repository>, the same
//     repository Kaniko's rewrite "host/prefix/<repository>" names.
func (s *RegistrySettings) DaemonRegistries(hosts DaemonHosts) map[string]resolverconfig.RegistryConfig {
	pull := slices.Clone(hosts.Pull)
	for registry, replacements := range s.maps {
		if _, ok := daemonHostName(registry); !ok {
			continue
		}
		for _, replacement := range replacements {
			mirrorHost, _, _ := strings.Cut(replacement, "/")
			pull = append(pull, mirrorHost)
		}
	}
	all := slices.Concat(pull, hosts.Push, s.insecureRegistries, s.skipTLSVerifyHosts,
		sortedKeys(s.caFiles), sortedKeys(s.clientCerts), sortedKeys(s.maps))

	registries := map[string]resolverconfig.RegistryConfig{}
	for _, host := range all {
		daemonHost, ok := daemonHostName(host)
		if !ok {
			continue
		}
		var c resolverconfig.RegistryConfig
		plain := slices.Contains(s.insecureRegistries, host) ||
			(s.insecurePull && slices.Contains(pull, host)) ||
			(s.insecure && slices.Contains(hosts.Push, host))
		_, hasCA := s.caFiles[host]
		_, hasClientCert := s.clientCerts[host]
		switch {
		case plain:
			c.PlainHTTP = ptr(true)
		case hasCA || hasClientCert || s.skipsVerification(host):
			// BuildKit speaks plain HTTP to loopback hosts by default; TLS
			// settings for a host mean it serves HTTPS, as Kaniko assumes.
			c.PlainHTTP = ptr(false)
		}
		if plain || s.skipsVerification(host) {
			c.Insecure = ptr(true)
		}
		if ca, ok := s.caFiles[host]; ok {
			c.RootCAs = []string{ca}
		}
		if pair, ok := s.clientCerts[host]; ok {
			c.KeyPairs = []resolverconfig.TLSKeyPair{pair}
		}
		c.Mirrors = slices.Clone(s.maps[host])
		if c.PlainHTTP != nil || c.Insecure != nil || c.RootCAs != nil || c.KeyPairs != nil || c.Mirrors != nil {
			registries[daemonHost] = c
		}
	}
	return registries
}

// daemonHostName turns a Kaniko host into BuildKit's. Kaniko compares keys
// with go-containerregistry's names, where Docker Hub is "index.docker.io";
// a key spelled "docker.io" never matched anything in Kaniko, so it is
// dropped here too rather than starting to apply.
func daemonHostName(host string) (string, bool) {
	switch host {
	case DockerHub:
		return "docker.io", true
	case "docker.io":
		return "", false
	}
	return host, true
}

// BuildkitdTOML renders DaemonRegistries as buildkitd.toml sections, sorted
// by host; "" when no registry needs settings.
func (s *RegistrySettings) BuildkitdTOML(hosts DaemonHosts) string {
	registries := s.DaemonRegistries(hosts)
	var b strings.Builder
	for _, host := range sortedKeys(registries) {
		c := registries[host]
		section := "registry." + tomlString(host)
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		b.WriteString("[" + section + "]\n")
		if c.Mirrors != nil {
			b.WriteString("  mirrors = " + tomlStrings(c.Mirrors) + "\n")
		}
		if c.PlainHTTP != nil {
			fmt.Fprintf(&b, "  http = %t\n", *c.PlainHTTP)
		}
		if c.Insecure != nil {
			fmt.Fprintf(&b, "  insecure = %t\n", *c.Insecure)
		}
		if c.RootCAs != nil {
			b.WriteString("  ca = " + tomlStrings(c.RootCAs) + "\n")
		}
		for _, pair := range c.KeyPairs {
			b.WriteString("\n  [[" + section + ".keypair]]\n")
			b.WriteString("    key = " + tomlString(pair.Key) + "\n")
			b.WriteString("    cert = " + tomlString(pair.Certificate) + "\n")
		}
	}
	return b.String()
}

// AuthTLSConfigs are the TLS settings BuildKit's session auth provider uses
// when it fetches registry tokens, keyed like DaemonRegistries.
func (s *RegistrySettings) AuthTLSConfigs(hosts DaemonHosts) map[string]*authprovider.AuthTLSConfig {
	configs := map[string]*authprovider.AuthTLSConfig{}
	for host, c := range s.DaemonRegistries(hosts) {
		insecure := c.Insecure != nil && *c.Insecure
		if !insecure && c.RootCAs == nil && c.KeyPairs == nil {
			continue
		}
		config := &authprovider.AuthTLSConfig{RootCAs: c.RootCAs, Insecure: insecure}
		for _, pair := range c.KeyPairs {
			config.KeyPairs = append(config.KeyPairs, authprovider.TLSKeyPair{Key: pair.Key, Certificate: pair.Certificate})
		}
		configs[host] = config
	}
	return configs
}

func ptr[T any](v T) *T { return &v }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func tomlStrings(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = tomlString(v)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// SessionAuthConfig answers BuildKit's session auth (the daemon's pulls,
// pushes and cache requests) from kc, so every request of a build uses the
// credentials kiln's own requests use. host is BuildKit's host name.
func SessionAuthConfig(kc authn.Keychain) authprovider.AuthConfigProvider {
	return func(ctx context.Context, host string, _ []string, _ authprovider.ExpireCachedAuthCheck) (types.AuthConfig, error) {
		if host == authprovider.DockerHubRegistryHost || host == "docker.io" {
			host = DockerHub
		}
		registry, err := name.NewRegistry(host, name.WeakValidation)
		if err != nil {
			return types.AuthConfig{}, err
		}
		auth, err := authn.Resolve(ctx, kc, registry)
		if err != nil {
			return types.AuthConfig{}, err
		}
		cfg, err := authn.Authorization(ctx, auth)
		if err != nil {
			return types.AuthConfig{}, err
		}
		return types.AuthConfig{
			Username:      cfg.Username,
			Password:      cfg.Password,
			Auth:          cfg.Auth,
			IdentityToken: cfg.IdentityToken,
			RegistryToken: cfg.RegistryToken,
		}, nil
	}
}
