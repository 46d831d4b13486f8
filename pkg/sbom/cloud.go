package sbom

import (
	"io"
	"regexp"

	ecr "github.com/awslabs/amazon-ecr-credential-helper/ecr-login"
	"github.com/chrismellard/docker-credential-acr-env/pkg/credhelper"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/google"
)

// The registry hosts of each cloud, anchored at both ends. The helpers check hosts themselves,
// but not all strictly (the ACR helper's pattern is unanchored: it would exchange an Azure token
// with "x.azurecr.io.attacker.example"), and a credential must never reach a host that only
// looks like a cloud registry.
var (
	googleHosts = regexp.MustCompile(`^(gcr\.io|[a-z0-9-]+\.gcr\.io|[a-z0-9-]+-docker\.pkg\.dev)$`)
	amazonHosts = regexp.MustCompile(`^([0-9]{12}\.dkr[.-]ecr(-fips)?\.[a-z0-9-]+\.(amazonaws\.com(\.cn)?|sc2s\.sgov\.gov|c2s\.ic\.gov)|public\.ecr\.aws)$`)
	azureHosts  = regexp.MustCompile(`^[a-z0-9-]+\.azurecr\.(io|cn|de|us)$`)
)

// cloudKeychain is the ambient identity of the cloud that Vigil runs in, for the cloud's own
// registries, in the order of go-containerregistry's k8schain: GCR and Artifact Registry
// (Google's application default credentials: the node's service account or GKE Workload
// Identity), ECR (the AWS SDK's default chain: IRSA, EKS Pod Identity, the node's instance
// role) and ACR (Azure Workload Identity or a service principal in AZURE_* variables). Each
// answers only for its own cloud's registry hosts and is anonymous elsewhere.
var cloudKeychain = newCloudKeychain(
	google.Keychain,
	authn.NewKeychainFromHelper(ecr.NewECRHelper(ecr.WithLogger(io.Discard))),
	authn.NewKeychainFromHelper(credhelper.NewACRCredentialsHelper()),
)

// newCloudKeychain chains the keychains of Google's, Amazon's and Azure's registries, each
// limited to its cloud's registry hosts.
func newCloudKeychain(google, amazon, azure authn.Keychain) authn.Keychain {
	return authn.NewMultiKeychain(
		hostKeychain{hosts: googleHosts, keychain: google},
		hostKeychain{hosts: amazonHosts, keychain: amazon},
		hostKeychain{hosts: azureHosts, keychain: azure},
	)
}

// hostKeychain consults keychain only for registries whose host hosts matches.
type hostKeychain struct {
	hosts    *regexp.Regexp
	keychain authn.Keychain
}

func (k hostKeychain) Resolve(resource authn.Resource) (authn.Authenticator, error) {
	if !k.hosts.MatchString(resource.RegistryStr()) {
		return authn.Anonymous, nil
	}
	return k.keychain.Resolve(resource)
}

// keychainFor is the keychain of options: the pull secrets' credentials first, then, unless
// options.NoCloudCredentials, the cloud's ambient identity; anonymous when none answers.
func keychainFor(options Options) authn.Keychain {
	if options.NoCloudCredentials {
		return keychain(options.Credentials)
	}
	return authn.NewMultiKeychain(keychain(options.Credentials), cloudKeychain)
}
