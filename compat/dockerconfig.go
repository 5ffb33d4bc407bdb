package compat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sirupsen/logrus"
)

// credentialEnv is the process environment seen by the keychain; tests swap it.
type credentialEnv struct {
	getenv   func(string) string
	homeDir  func() (string, error)
	lookPath func(string) (string, error)
	// entraClient reaches Microsoft Entra ID; nil is the default client.
	entraClient *http.Client
}

var processEnv = credentialEnv{getenv: os.Getenv, homeDir: os.UserHomeDir, lookPath: exec.LookPath}

// CredentialOptions select and configure kiln's credential sources.
type CredentialOptions struct {
	// DockerConfigDir holds config.json (see Keychain).
	DockerConfigDir string
	// Helpers is --credential-helpers as given; nil means every helper.
	Helpers []string
	// Transport reaches a registry (ACR's token exchange); nil means
	// http.DefaultTransport.
	Transport func(host string) http.RoundTripper
}

// Keychain resolves registry credentials like Kaniko: config.json (through
// docker/cli, so credsStore and credHelpers run docker-credential-* from
// PATH, and DOCKER_AUTH_CONFIG is honoured), then GitLab CI's
// CI_REGISTRY_USER/CI_REGISTRY_PASSWORD for $CI_REGISTRY, else anonymous.
//
// The config file is <dockerConfigDir>/config.json. go-containerregistry's
// keychain (which Kaniko uses) loads $DOCKER_CONFIG whenever it is set, even
// when $HOME/.docker/config.json exists; kiln falls back to the $HOME file
// only when the DOCKER_CONFIG directory has none (Kaniko's slim image), then
// to $REGISTRY_AUTH_FILE and Podman's auth.json.
func Keychain(dockerConfigDir string) authn.Keychain {
	return NewKeychain(CredentialOptions{DockerConfigDir: dockerConfigDir})
}

// NewKeychain is Keychain with the in-process helpers of the maintained
// fork after config.json, in its order: env (KANIKO_<HOST>_USER), google,
// ecr, acr, gitlab, each only for its own registries.
func NewKeychain(o CredentialOptions) authn.Keychain {
	_, unknown := SelectedHelpers(o.Helpers)
	for _, name := range unknown {
		logrus.Warnf("--credential-helpers: unknown helper %q skipped; use %s", name, strings.Join(AllCredentialHelpers, ", "))
	}
	return processEnv.keychain(o)
}

func (e credentialEnv) keychain(o CredentialOptions) authn.Keychain {
	chain := []authn.Keychain{&configKeychain{env: e, dir: o.DockerConfigDir}}
	helpers, _ := SelectedHelpers(o.Helpers)
	for _, helper := range helpers {
		switch helper {
		case HelperEnv:
			chain = append(chain, &envKeychain{env: e})
		case HelperGoogle:
			chain = append(chain, &googleKeychain{env: e})
		case HelperECR:
			chain = append(chain, &ecrKeychain{})
		case HelperACR:
			chain = append(chain, &acrKeychain{env: e, transport: o.Transport})
		case HelperGitLab:
			chain = append(chain, &gitlabKeychain{env: e})
		}
	}
	return authn.NewMultiKeychain(chain...)
}

// credentialFile finds the file holding credentials, or "" when none exists.
func (e credentialEnv) credentialFile(dockerConfigDir string) string {
	candidates := []string{filepath.Join(dockerConfigDir, config.ConfigFileName)}
	home, _ := e.homeDir()
	if home != "" {
		candidates = append(candidates, filepath.Join(home, ".docker", config.ConfigFileName))
	}
	if f := e.getenv("REGISTRY_AUTH_FILE"); f != "" {
		candidates = append(candidates, f)
	}
	if d := e.getenv("XDG_RUNTIME_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, "containers", "auth.json"))
	}
	configHome := e.getenv("XDG_CONFIG_HOME")
	if configHome == "" && home != "" {
		configHome = filepath.Join(home, ".config")
	}
	if configHome != "" {
		candidates = append(candidates, filepath.Join(configHome, "containers", "auth.json"))
	}
	for _, c := range candidates {
		if fileExists(c) {
			return c
		}
	}
	return ""
}

func loadCredentialFile(path string) (*configfile.ConfigFile, error) {
	if filepath.Base(path) == config.ConfigFileName {
		cf, err := config.Load(filepath.Dir(path))
		if err != nil {
			return nil, fmt.Errorf("%s: %v; fix the JSON or mount a valid docker config", path, err)
		}
		return cf, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v; fix the JSON or mount a valid auth file", path, err)
	}
	return cf, nil
}

type configKeychain struct {
	env credentialEnv
	dir string

	// The file is read once: kiln's embedded engine takes it off the
	// filesystem while RUN steps run, and a build's credentials do not
	// change while it runs.
	once   sync.Once
	loaded *configfile.ConfigFile
	err    error
}

// config is the credential file's content, read on first use; nil means
// anonymous.
func (k *configKeychain) config() (*configfile.ConfigFile, error) {
	k.once.Do(func() {
		if path := k.env.credentialFile(k.dir); path != "" {
			k.loaded, k.err = loadCredentialFile(path)
		} else if k.env.getenv("DOCKER_AUTH_CONFIG") != "" {
			k.loaded = configfile.New("")
		}
	})
	return k.loaded, k.err
}

func (k *configKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	cf, err := k.config()
	if err != nil {
		return nil, err
	}
	if cf == nil {
		return authn.Anonymous, nil
	}
	var empty types.AuthConfig
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		cfg, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("reading credentials for %s: %v", target.RegistryStr(), err)
		}
		cfg.ServerAddress = "" // set by GetAuthConfig; ignore it when testing for "none"
		if cfg != empty {
			return authn.FromConfig(authn.AuthConfig{
				Username:      cfg.Username,
				Password:      cfg.Password,
				Auth:          cfg.Auth,
				IdentityToken: cfg.IdentityToken,
				RegistryToken: cfg.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

// gitlabKeychain mirrors the GitLab helper Kaniko links: CI job credentials
// for the project's own registry, without writing any file.
type gitlabKeychain struct{ env credentialEnv }

func (k *gitlabKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	if !k.env.gitlabRegistryMatches(target.RegistryStr()) {
		return authn.Anonymous, nil
	}
	user, password := k.env.getenv("CI_REGISTRY_USER"), k.env.getenv("CI_REGISTRY_PASSWORD")
	if user == "" || password == "" {
		return authn.Anonymous, nil
	}
	return &authn.Basic{Username: user, Password: password}, nil
}

func (e credentialEnv) gitlabRegistryMatches(host string) bool {
	ciRegistry := e.getenv("CI_REGISTRY")
	return ciRegistry != "" && credentials.ConvertToHostname(ciRegistry) == host
}

// CredentialSource says where a credential for registryHost would come from,
// without reading any secret, running any helper or printing a value. ok is
// false when the push or pull would be anonymous (or the helper is missing).
func CredentialSource(o CredentialOptions, registryHost string) (string, bool) {
	return processEnv.credentialSource(o, registryHost)
}

func (e credentialEnv) credentialSource(o CredentialOptions, registryHost string) (string, bool) {
	dockerConfigDir := o.DockerConfigDir
	host := registryHost
	if reg, err := name.NewRegistry(registryHost); err == nil {
		host = reg.RegistryStr()
	}
	key := host
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	if envAuth := e.getenv("DOCKER_AUTH_CONFIG"); envAuth != "" && authConfigHasHost(envAuth, host) {
		return fmt.Sprintf("DOCKER_AUTH_CONFIG entry for %s", host), true
	}
	path := e.credentialFile(dockerConfigDir)
	if path != "" {
		cf, err := loadCredentialFile(path)
		if err != nil {
			return err.Error(), false
		}
		if helper := cf.CredentialHelpers[key]; helper != "" {
			return e.helperSource(helper, fmt.Sprintf("credHelpers in %s", path))
		}
		for k := range cf.AuthConfigs {
			// The same match docker/cli's file store makes.
			if k == key || (!strings.Contains(key, "://") && credentials.ConvertToHostname(k) == key) {
				if cf.CredentialsStore != "" {
					return e.helperSource(cf.CredentialsStore, fmt.Sprintf("credsStore in %s", path))
				}
				return fmt.Sprintf("auths entry %q in %s", k, path), true
			}
		}
		if cf.CredentialsStore != "" {
			return e.helperSource(cf.CredentialsStore, fmt.Sprintf("credsStore in %s", path))
		}
	}
	helpers, _ := SelectedHelpers(o.Helpers)
	for _, helper := range helpers {
		if source, ok, answers := e.helperCredentialSource(helper, host); answers {
			return source, ok
		}
	}
	if slices.Contains(helpers, HelperGitLab) && e.gitlabRegistryMatches(host) {
		if e.getenv("CI_REGISTRY_USER") != "" && e.getenv("CI_REGISTRY_PASSWORD") != "" {
			return "GitLab CI job credentials (CI_REGISTRY_USER for $CI_REGISTRY)", true
		}
		return "CI_REGISTRY matches but CI_REGISTRY_USER or CI_REGISTRY_PASSWORD is empty", false
	}
	looked := filepath.Join(dockerConfigDir, config.ConfigFileName)
	if path != "" {
		looked = path
	}
	return fmt.Sprintf("no credentials for %s in %s; the registry will be used anonymously (write an auths entry or mount a docker config there)", host, looked), false
}

func (e credentialEnv) helperSource(helper, where string) (string, bool) {
	bin := "docker-credential-" + helper
	if _, err := e.lookPath(bin); err != nil {
		return fmt.Sprintf("credential helper %s (%s) is not on PATH; add it to the image or write an auths entry", bin, where), false
	}
	return fmt.Sprintf("credential helper %s (%s)", bin, where), true
}

// authConfigHasHost reports whether a DOCKER_AUTH_CONFIG value names host.
func authConfigHasHost(value, host string) bool {
	var parsed struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if json.Unmarshal([]byte(value), &parsed) != nil {
		return false
	}
	for k := range parsed.Auths {
		h := credentials.ConvertToHostname(k)
		if h == host || (host == name.DefaultRegistry && strings.Contains(k, "index.docker.io")) {
			return true
		}
	}
	return false
}
