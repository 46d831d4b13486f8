package sbom

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// fakeHelper is a credential helper that records the registries it is asked about and answers
// for one host.
type fakeHelper struct {
	name  string
	host  string
	calls *[]string
}

func (h fakeHelper) Get(server string) (string, string, error) {
	*h.calls = append(*h.calls, h.name+" "+server)
	if server != h.host {
		return "", "", errors.New("not my registry")
	}
	return h.name + "-user", h.name + "-secret", nil
}

func TestKeychainOrder(t *testing.T) {
	const (
		gcr = "europe-docker.pkg.dev"
		ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
		acr = "shop.azurecr.io"
	)
	tests := []struct {
		name        string
		registry    string
		credentials []Credential
		noCloud     bool
		wantUser    string // empty: anonymous
		wantCalls   []string
	}{
		{name: "Artifact Registry with the node's or workload's Google identity", registry: gcr, wantUser: "google-user", wantCalls: []string{"google " + gcr}},
		{name: "ECR with IRSA or the node's instance role", registry: ecr, wantUser: "amazon-user", wantCalls: []string{"amazon " + ecr}},
		{name: "ACR with Azure Workload Identity", registry: acr, wantUser: "azure-user", wantCalls: []string{"azure " + acr}},
		{
			name: "a pull secret wins over the cloud identity", registry: ecr,
			credentials: []Credential{{Registry: ecr, Username: "secret-user", Password: "p"}}, wantUser: "secret-user",
		},
		{name: "a registry of no cloud asks no cloud helper", registry: "registry.example.com"},
		{name: "a host that only looks like ACR gets no Azure token", registry: "shop.azurecr.io.attacker.example"},
		{name: "a host that only looks like ECR gets no AWS token", registry: "123456789012.dkr.ecr.eu-west-1.amazonaws.com.attacker.example"},
		{name: "cloud credentials turned off", registry: ecr, noCloud: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls []string
			saved := cloudKeychain
			defer func() { cloudKeychain = saved }()
			cloudKeychain = newCloudKeychain(
				authn.NewKeychainFromHelper(fakeHelper{"google", gcr, &calls}),
				authn.NewKeychainFromHelper(fakeHelper{"amazon", ecr, &calls}),
				authn.NewKeychainFromHelper(fakeHelper{"azure", acr, &calls}),
			)
			registry, err := name.NewRegistry(tc.registry)
			if err != nil {
				t.Fatal(err)
			}
			authenticator, err := keychainFor(Options{Credentials: tc.credentials, NoCloudCredentials: tc.noCloud}).Resolve(registry)
			if err != nil {
				t.Fatal(err)
			}
			config, err := authenticator.Authorization()
			if err != nil {
				t.Fatal(err)
			}
			if config.Username != tc.wantUser {
				t.Errorf("user %q, want %q", config.Username, tc.wantUser)
			}
			if !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("helpers asked %q, want %q", calls, tc.wantCalls)
			}
		})
	}
}
