package compat

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/smithy-go"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/sirupsen/logrus"
	"golang.org/x/oauth2"
	googleauth "golang.org/x/oauth2/google"

	"github.com/kilnbuild/kiln/compat/buildcontext"
)

// The in-process credential helpers of the maintained Kaniko fork, in its
// order after config.json: --credential-helpers selects among these names.
const (
	HelperEnv    = "env"
	HelperGoogle = "google"
	HelperECR    = "ecr"
	HelperACR    = "acr"
	HelperGitLab = "gitlab"
)

// AllCredentialHelpers is the default selection, in resolution order.
var AllCredentialHelpers = []string{HelperEnv, HelperGoogle, HelperECR, HelperACR, HelperGitLab}

// SelectedHelpers turns --credential-helpers occurrences (each may hold a
// comma-separated list) into the helpers to use, in the order given, as the
// fork resolves them. nil means the flag was not given: every helper, in
// AllCredentialHelpers' order. An empty value turns all off. Unknown names
// are returned in unknown, to be warned about like the fork does.
func SelectedHelpers(flagValues []string) (selected, unknown []string) {
	if flagValues == nil {
		return slices.Clone(AllCredentialHelpers), nil
	}
	for _, v := range flagValues {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			switch {
			case name == "", slices.Contains(selected, name):
			case slices.Contains(AllCredentialHelpers, name):
				selected = append(selected, name)
			default:
				unknown = append(unknown, name)
			}
		}
	}
	return selected, unknown
}

// HelperError is a credential helper's failure; it names the helper and
// the registry, never a credential.
type HelperError struct {
	Helper, Registry string
	Err              error
	Fix              string
}

func (e *HelperError) Error() string {
	return fmt.Sprintf("credential helper %s for %s: %v; %s", e.Helper, e.Registry, e.Err, e.Fix)
}

func (e *HelperError) Unwrap() error { return e.Err }

func helperError(helper, host string, err error, fix string) error {
	return &HelperError{Helper: helper, Registry: host, Err: err, Fix: fix}
}

// hostname is a registry name without its port.
func hostname(registry string) string {
	if u, err := url.Parse("https://" + registry); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return registry
}

// envKeychain is the fork's `env` helper: KANIKO_<HOST>_USER and
// KANIKO_<HOST>_PASSWORD, the host upper-cased with '.' and '-' as '_',
// tried from the full name down to its last label. Beyond the fork, a
// registry with a port also matches with ':' as '_' and without the port.
type envKeychain struct{ env credentialEnv }

func (k *envKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	if user, password, ok := k.env.envHelperCredentials(target.RegistryStr()); ok {
		return &authn.Basic{Username: user, Password: password}, nil
	}
	return authn.Anonymous, nil
}

// envHelperVariable is the KANIKO_<suffix>_USER variable that answers for
// registry, or "".
func (e credentialEnv) envHelperVariable(registry string) string {
	for _, host := range []string{registry, strings.ReplaceAll(registry, ":", "_"), hostname(registry)} {
		labels := strings.Split(strings.ToUpper(strings.ReplaceAll(host, "-", "_")), ".")
		for i := range labels {
			prefix := "KANIKO_" + strings.Join(labels[i:], "_")
			if e.getenv(prefix+"_USER") != "" && e.getenv(prefix+"_PASSWORD") != "" {
				return prefix + "_USER"
			}
		}
	}
	return ""
}

func (e credentialEnv) envHelperCredentials(registry string) (string, string, bool) {
	user := e.envHelperVariable(registry)
	if user == "" {
		return "", "", false
	}
	prefix := strings.TrimSuffix(user, "_USER")
	return e.getenv(user), e.getenv(prefix + "_PASSWORD"), true
}

// isGoogleRegistry matches Container Registry and Artifact Registry hosts.
func isGoogleRegistry(registry string) bool {
	host := hostname(registry)
	return host == "gcr.io" || strings.HasSuffix(host, ".gcr.io") ||
		strings.HasSuffix(host, ".pkg.dev") || strings.HasSuffix(host, ".google.com")
}

// googleKeychain answers for Google registries with an access token from
// Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's
// well-known file, the metadata server of GKE workload identity).
type googleKeychain struct {
	env    credentialEnv
	once   sync.Once
	tokens oauth2.TokenSource // nil when no credentials were found
}

const googleScope = "https://www.googleapis.com/auth/cloud-platform"

func (k *googleKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	host := target.RegistryStr()
	if !isGoogleRegistry(host) {
		return authn.Anonymous, nil
	}
	k.once.Do(func() {
		creds, err := googleauth.FindDefaultCredentials(context.Background(), googleScope)
		if err != nil {
			logrus.Debugf("credential helper google: no Application Default Credentials (%v); %s is used anonymously", err, host)
			return
		}
		k.tokens = oauth2.ReuseTokenSource(nil, creds.TokenSource)
	})
	if k.tokens == nil {
		return authn.Anonymous, nil
	}
	token, err := k.tokens.Token()
	if err != nil {
		return nil, helperError(HelperGoogle, host, tokenError(err),
			"check "+k.env.googleCredentialSource()+" (service account key, workload identity binding)")
	}
	return &authn.Basic{Username: "oauth2accesstoken", Password: token.AccessToken}, nil
}

// tokenError keeps an OAuth failure's status and error code but drops the
// response body.
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		msg := "the token endpoint answered " + re.Response.Status
		if re.ErrorCode != "" {
			msg += " (" + re.ErrorCode + ")"
		}
		return errors.New(msg)
	}
	return err
}

// ecrHostPattern matches private ECR registries: account, FIPS, region.
var ecrHostPattern = regexp.MustCompile(`^(\d{12})\.dkr[.-]ecr(-fips)?\.([a-z0-9][a-z0-9-]*)\.(amazonaws\.com(\.cn)?|amazonaws\.eu|on\.aws|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$`)

// ecrKeychain answers for ECR with GetAuthorizationToken, credentials from
// the AWS default chain (variables, profiles, IRSA web identity, instance
// roles); AWS_ENDPOINT_URL_ECR points it elsewhere.
type ecrKeychain struct {
	mu     sync.Mutex
	tokens map[string]authn.AuthConfig // by registry host
}

func (k *ecrKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	host := target.RegistryStr()
	m := ecrHostPattern.FindStringSubmatch(hostname(host))
	if m == nil {
		return authn.Anonymous, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if cfg, ok := k.tokens[host]; ok {
		return authn.FromConfig(cfg), nil
	}
	account, region := m[1], m[3]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
	if err != nil {
		return nil, helperError(HelperECR, host, err, "fix the AWS configuration (AWS_PROFILE, AWS_CONFIG_FILE)")
	}
	const fix = "give the Job AWS credentials allowed to call ecr:GetAuthorizationToken (IRSA, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
	out, err := ecr.NewFromConfig(awsCfg).GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{RegistryIds: []string{account}})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		err = fmt.Errorf("the ECR API refused GetAuthorizationToken (%s: %s)", apiErr.ErrorCode(), apiErr.ErrorMessage())
	}
	if err != nil {
		return nil, helperError(HelperECR, host, err, fix)
	}
	if len(out.AuthorizationData) == 0 || aws.ToString(out.AuthorizationData[0].AuthorizationToken) == "" {
		return nil, helperError(HelperECR, host, errors.New("the ECR API returned no authorization token"), fix)
	}
	decoded, err := base64.StdEncoding.DecodeString(aws.ToString(out.AuthorizationData[0].AuthorizationToken))
	user, password, ok := strings.Cut(string(decoded), ":")
	if err != nil || !ok {
		return nil, helperError(HelperECR, host, errors.New("the ECR API returned a malformed authorization token"), fix)
	}
	cfg := authn.AuthConfig{Username: user, Password: password}
	if k.tokens == nil {
		k.tokens = map[string]authn.AuthConfig{}
	}
	k.tokens[host] = cfg
	return authn.FromConfig(cfg), nil
}

// isACRRegistry matches Azure Container Registry hosts in every cloud.
func isACRRegistry(registry string) bool {
	host := hostname(registry)
	for _, suffix := range []string{".azurecr.io", ".azurecr.cn", ".azurecr.de", ".azurecr.us"} {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	return false
}

// acrUser is the user name ACR expects with a refresh token as password.
const acrUser = "00000000-0000-0000-0000-000000000000"

// acrKeychain is the acr-env helper in process: a Microsoft Entra token from
// a service principal (AZURE_CLIENT_SECRET) or workload identity
// (AZURE_FEDERATED_TOKEN_FILE, AZURE_FEDERATED_TOKEN), exchanged at the
// registry's /oauth2/exchange for an ACR refresh token. AZURE_AUTHORITY_HOST
// selects the authority.
type acrKeychain struct {
	env       credentialEnv
	transport func(host string) http.RoundTripper

	mu     sync.Mutex
	tokens map[string]string // refresh tokens by registry host
}

// acrCredentialSource names the Azure identity the environment configures,
// or "" when there is none.
func (e credentialEnv) acrCredentialSource() string {
	if e.getenv("AZURE_TENANT_ID") == "" || e.getenv("AZURE_CLIENT_ID") == "" {
		return ""
	}
	switch {
	case e.getenv("AZURE_CLIENT_SECRET") != "":
		return "service principal AZURE_CLIENT_ID with AZURE_CLIENT_SECRET"
	case e.getenv("AZURE_FEDERATED_TOKEN_FILE") != "":
		return "workload identity AZURE_CLIENT_ID with AZURE_FEDERATED_TOKEN_FILE"
	case e.getenv("AZURE_FEDERATED_TOKEN") != "":
		return "workload identity AZURE_CLIENT_ID with AZURE_FEDERATED_TOKEN"
	}
	return ""
}

func (k *acrKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	host := target.RegistryStr()
	if !isACRRegistry(host) || k.env.acrCredentialSource() == "" {
		return authn.Anonymous, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if refresh, ok := k.tokens[host]; ok {
		return &authn.Basic{Username: acrUser, Password: refresh}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const fix = "check AZURE_TENANT_ID, AZURE_CLIENT_ID and the secret or federated token, and that the identity may pull or push"
	cred, err := k.entraCredential()
	if err != nil {
		return nil, helperError(HelperACR, host, err, fix)
	}
	token, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	if err != nil {
		return nil, helperError(HelperACR, host, entraError(err), fix)
	}
	refresh, err := k.exchange(ctx, host, token.Token)
	if err != nil {
		return nil, helperError(HelperACR, host, err, fix)
	}
	if k.tokens == nil {
		k.tokens = map[string]string{}
	}
	k.tokens[host] = refresh
	return &authn.Basic{Username: acrUser, Password: refresh}, nil
}

func (k *acrKeychain) entraCredential() (azcore.TokenCredential, error) {
	tenant, client := k.env.getenv("AZURE_TENANT_ID"), k.env.getenv("AZURE_CLIENT_ID")
	opts := azcore.ClientOptions{Cloud: cloud.AzurePublic}
	if k.env.entraClient != nil {
		opts.Transport = k.env.entraClient
	}
	if authority := k.env.getenv("AZURE_AUTHORITY_HOST"); authority != "" {
		opts.Cloud.ActiveDirectoryAuthorityHost = authority
	}
	// Authorities other than the public clouds' (Azure Stack, sovereign
	// endpoints given by AZURE_AUTHORITY_HOST) are not in Microsoft's list.
	disableDiscovery := k.env.getenv("AZURE_AUTHORITY_HOST") != ""
	if secret := k.env.getenv("AZURE_CLIENT_SECRET"); secret != "" {
		return azidentity.NewClientSecretCredential(tenant, client, secret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions: opts, DisableInstanceDiscovery: disableDiscovery,
		})
	}
	assertion := func(context.Context) (string, error) {
		if f := k.env.getenv("AZURE_FEDERATED_TOKEN_FILE"); f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				return "", fmt.Errorf("reading AZURE_FEDERATED_TOKEN_FILE: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		}
		return k.env.getenv("AZURE_FEDERATED_TOKEN"), nil
	}
	return azidentity.NewClientAssertionCredential(tenant, client, assertion, &azidentity.ClientAssertionCredentialOptions{
		ClientOptions: opts, DisableInstanceDiscovery: disableDiscovery,
	})
}

// entraError keeps the authority's status and error code, not its body.
func entraError(err error) error {
	var authErr *azidentity.AuthenticationFailedError
	if errors.As(err, &authErr) && authErr.RawResponse != nil {
		return fmt.Errorf("Microsoft Entra ID refused the credentials (%s)", authErr.RawResponse.Status)
	}
	return err
}

// exchange trades an Entra access token for an ACR refresh token.
func (k *acrKeychain) exchange(ctx context.Context, host, accessToken string) (string, error) {
	form := url.Values{
		"grant_type":   {"access_token"},
		"service":      {host},
		"tenant":       {k.env.getenv("AZURE_TENANT_ID")},
		"access_token": {accessToken},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+host+"/oauth2/exchange", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	client := &http.Client{}
	if k.transport != nil {
		client.Transport = k.transport(host)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("reaching the registry's token exchange: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the registry's token exchange answered %s", resp.Status)
	}
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil || body.RefreshToken == "" {
		return "", errors.New("the registry's token exchange returned no refresh token")
	}
	return body.RefreshToken, nil
}

// helperCredentialSource says, without fetching anything, what helper would
// answer for registry with. answers is false when the helper leaves the
// registry to the next source.
func (e credentialEnv) helperCredentialSource(helper, registry string) (source string, ok, answers bool) {
	switch helper {
	case HelperEnv:
		if v := e.envHelperVariable(registry); v != "" {
			return fmt.Sprintf("credential helper env (%s and %s_PASSWORD)", v, strings.TrimSuffix(v, "_USER")), true, true
		}
	case HelperGoogle:
		if isGoogleRegistry(registry) {
			return "credential helper google: " + e.googleCredentialSource(), true, true
		}
	case HelperECR:
		if ecrHostPattern.MatchString(hostname(registry)) {
			return "credential helper ecr: ECR token from " + e.awsCredentialSource(), true, true
		}
	case HelperACR:
		if isACRRegistry(registry) {
			if s := e.acrCredentialSource(); s != "" {
				return "credential helper acr: ACR refresh token for Microsoft Entra " + s, true, true
			}
		}
	}
	return "", false, false
}

// googleCredentialSource names where Application Default Credentials would
// come from.
func (e credentialEnv) googleCredentialSource() string {
	if f := e.getenv("GOOGLE_APPLICATION_CREDENTIALS"); f != "" {
		return "Application Default Credentials from GOOGLE_APPLICATION_CREDENTIALS (" + f + ")"
	}
	return "Application Default Credentials (gcloud's application_default_credentials.json, else the metadata server of GKE workload identity)"
}

// awsCredentialSource names the first source of the AWS default chain the
// environment configures.
func (e credentialEnv) awsCredentialSource() string {
	switch {
	case e.getenv("AWS_ACCESS_KEY_ID") != "":
		return "AWS_ACCESS_KEY_ID"
	case e.getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		return "web identity (IRSA) AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE"
	case e.getenv("AWS_PROFILE") != "":
		return "AWS_PROFILE " + e.getenv("AWS_PROFILE")
	case e.getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "" || e.getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "":
		return "the container credentials endpoint (EKS Pod Identity)"
	}
	return "the AWS default chain (shared config files, else the instance role)"
}

// ContextCredentialSource says which credentials a cloud context would be
// read with, naming variables and files only; "" for other contexts.
func ContextCredentialSource(src ContextSource) string {
	return processEnv.contextCredentialSource(src)
}

func (e credentialEnv) contextCredentialSource(src ContextSource) string {
	switch src.Scheme {
	case "s3":
		s := e.awsCredentialSource()
		if endpoint := e.getenv("S3_ENDPOINT"); endpoint != "" {
			s += ", endpoint S3_ENDPOINT=" + endpoint
			if e.getenv("S3_FORCE_PATH_STYLE") == "true" {
				s += " (path style)"
			}
		}
		return s
	case "gs":
		s := e.googleCredentialSource() + ", anonymous when there are none"
		if emulator := e.getenv("STORAGE_EMULATOR_HOST"); emulator != "" {
			s += ", endpoint STORAGE_EMULATOR_HOST=" + emulator
		}
		return s
	case "azure":
		loc, err := buildcontext.ParseAzureBlobURL(src.Value)
		if err != nil {
			return ""
		}
		if e.getenv("AZURE_STORAGE_ACCESS_KEY") != "" {
			return "shared key of storage account " + loc.Account + " from AZURE_STORAGE_ACCESS_KEY"
		}
		return "anonymous (AZURE_STORAGE_ACCESS_KEY is not set; only a public container can be read)"
	}
	return ""
}
