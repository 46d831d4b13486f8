package sbom

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
)

// Credential is a registry's credential: a user name and password, or a token.
type Credential struct {
	// Registry is the registry host[:port] the credential is for.
	Registry string
	Username string
	Password string
	// Token is an identity token, used instead of a user name and password.
	Token string
}

// String never shows the secret.
func (c Credential) String() string {
	return fmt.Sprintf("credential for %s", c.Registry)
}

// dockerConfig is a docker config JSON (a kubernetes.io/dockerconfigjson Secret) or, with only the
// auths map, a legacy .dockercfg (a kubernetes.io/dockercfg Secret).
type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// CredentialsFromDockerConfig reads the registry credentials of a docker config JSON, in the
// format of a kubernetes.io/dockerconfigjson or a legacy kubernetes.io/dockercfg Secret.
func CredentialsFromDockerConfig(data []byte) ([]Credential, error) {
	var config dockerConfig
	if err := json.Unmarshal(data, &config); err != nil {
		return nil, fmt.Errorf("reading the docker config: %w", err)
	}
	auths := config.Auths
	if auths == nil {
		if err := json.Unmarshal(data, &auths); err != nil {
			return nil, fmt.Errorf("reading the docker config: %w", err)
		}
	}
	credentials := make([]Credential, 0, len(auths))
	for server, auth := range auths {
		credential := Credential{
			Registry: registryHost(server), Username: auth.Username, Password: auth.Password, Token: auth.IdentityToken,
		}
		if auth.Auth != "" {
			decoded, err := base64.StdEncoding.DecodeString(auth.Auth)
			if err != nil {
				return nil, fmt.Errorf("reading the credential for %s: the auth field is not base64", server)
			}
			user, password, ok := strings.Cut(string(decoded), ":")
			if !ok {
				return nil, fmt.Errorf("reading the credential for %s: the auth field is not user:password", server)
			}
			credential.Username, credential.Password = user, password
		}
		if credential.Username == "" && credential.Token == "" {
			return nil, fmt.Errorf("reading the credential for %s: it has neither a user name nor a token", server)
		}
		credentials = append(credentials, credential)
	}
	if len(credentials) == 0 {
		return nil, errors.New("the docker config has no credentials")
	}
	return credentials, nil
}

// registryHost is the host[:port] of a docker config server key, which may be a URL.
func registryHost(server string) string {
	host := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	host, _, _ = strings.Cut(host, "/")
	if host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io" {
		return name.DefaultRegistry
	}
	return host
}

// keychain resolves a registry to the first of credentials that is for it, or anonymous.
type keychain []Credential

func (k keychain) Resolve(resource authn.Resource) (authn.Authenticator, error) {
	for _, credential := range k {
		if registryHost(credential.Registry) == resource.RegistryStr() {
			return authn.FromConfig(authn.AuthConfig{
				Username: credential.Username, Password: credential.Password, IdentityToken: credential.Token,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

// transportFor is the HTTP transport to ref's registry: it skips certificate verification only
// for a registry configured to, and dials only addresses that the registry policy allows.
func transportFor(ref name.Reference, options Options) http.RoundTripper {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = options.Policy.dialContext()
	if options.Registries[ref.Context().RegistryStr()].SkipTLSVerify {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // configured per registry
	}
	return transport
}

// CredentialsFromSecret reads the registry credentials of a Kubernetes pull secret: a
// kubernetes.io/dockerconfigjson or a legacy kubernetes.io/dockercfg Secret.
func CredentialsFromSecret(secret *corev1.Secret) ([]Credential, error) {
	var key string
	switch secret.Type {
	case corev1.SecretTypeDockerConfigJson:
		key = corev1.DockerConfigJsonKey
	case corev1.SecretTypeDockercfg:
		key = corev1.DockerConfigKey
	default:
		return nil, fmt.Errorf("secret %s/%s is of type %q, not a pull secret", secret.Namespace, secret.Name, secret.Type)
	}
	data, ok := secret.Data[key]
	if !ok {
		return nil, fmt.Errorf("secret %s/%s has no %s", secret.Namespace, secret.Name, key)
	}
	credentials, err := CredentialsFromDockerConfig(data)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return credentials, nil
}
