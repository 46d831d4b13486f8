package sbom_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
)

func mustNetworks(t *testing.T, values ...string) []netip.Prefix {
	t.Helper()
	prefixes, err := sbom.ParseNetworks(values)
	if err != nil {
		t.Fatal(err)
	}
	return prefixes
}

func TestRegistryPolicyCheckAddress(t *testing.T) {
	policy := sbom.RegistryPolicy{
		DenyNetworks:  append(sbom.DefaultDenyNetworks(), mustNetworks(t, "10.96.0.0/12")...),
		AllowNetworks: mustNetworks(t, "10.96.0.20"),
	}
	tests := []struct {
		addr   string
		denied bool
	}{
		{"169.254.169.254", true},        // cloud metadata
		{"::ffff:169.254.169.254", true}, // the same, IPv4-mapped
		{"fe80::1", true},                // IPv6 link-local
		{"10.96.0.1", true},              // the API server's Service
		{"10.111.255.254", true},         // end of the Service range
		{"10.96.0.20", false},            // the in-cluster registry, allowed by address
		{"0.0.0.0", true},                // reaches the dialling host itself
		{"::", true},                     // the same in IPv6
		{"224.0.0.1", true},              // multicast
		{"127.0.0.1", false},             // loopback is allowed unless denied
		{"10.95.255.255", false},         // outside the Service range
		{"203.0.113.7", false},           // a public registry
		{"2001:db8::1", false},           // a public IPv6 registry
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			err := policy.CheckAddress(netip.MustParseAddr(tc.addr))
			var denied *sbom.RegistryDeniedError
			if got := errors.As(err, &denied); got != tc.denied {
				t.Errorf("CheckAddress(%s) = %v, want denied %v", tc.addr, err, tc.denied)
			}
		})
	}
}

func TestRegistryPolicyCheckRegistry(t *testing.T) {
	policy := sbom.RegistryPolicy{
		Allow: []string{"ghcr.io", "*.corp.example", "registry.local:5000"},
		Deny:  []string{"evil.corp.example"},
	}
	tests := []struct {
		registry string
		denied   bool
	}{
		{"ghcr.io", false},
		{"GHCR.IO", false},
		{"ghcr.io:443", false},
		{"images.corp.example", false},
		{"a.b.corp.example", false},
		{"corp.example", true},
		{"evil.corp.example", true},
		{"registry.local:5000", false},
		{"registry.local:5001", true},
		{"index.docker.io", true},
		{"ghcr.io.attacker.example", true},
	}
	for _, tc := range tests {
		t.Run(tc.registry, func(t *testing.T) {
			err := policy.CheckRegistry(tc.registry)
			var denied *sbom.RegistryDeniedError
			if got := errors.As(err, &denied); got != tc.denied {
				t.Errorf("CheckRegistry(%s) = %v, want denied %v", tc.registry, err, tc.denied)
			}
		})
	}
}

// counting is a loopback HTTP server that counts the requests it answers.
func counting(t *testing.T, address string, handler http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var requests atomic.Int32
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		handler(w, r)
	}))
	if address != "" {
		listener, err := net.Listen("tcp", address)
		if err != nil {
			t.Skipf("cannot listen on %s: %v", address, err)
		}
		server.Listener = listener
	}
	server.Start()
	t.Cleanup(server.Close)
	return server, &requests
}

// An image reference chosen by a tenant cannot make Vigil send requests to addresses the policy
// denies: not by the registry's address, not by a host name that resolves there (the check is
// on the dialled address), not through the token service a registry names, not through a
// redirect.
func TestRegistryTrafficReachesNoDeniedAddress(t *testing.T) {
	// 127.0.0.2 stands for the registries tenants may use, 127.0.0.1 (and the name localhost)
	// for the cluster's inside. The Go registry client refuses token services at private IP
	// literals itself, but not names that resolve there.
	inside := sbom.RegistryPolicy{DenyNetworks: mustNetworks(t, "127.0.0.1/32", "::1/128")}
	internal, internalRequests := counting(t, "", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"token":"stolen"}`)
	})
	internalHost := strings.TrimPrefix(internal.URL, "http://")
	_, internalPort, _ := net.SplitHostPort(internalHost)
	internalByName := "http://localhost:" + internalPort

	tokenRealm, _ := counting(t, "127.0.0.2:0", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/") {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="x"`, internalByName))
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	redirecting, _ := counting(t, "127.0.0.2:0", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internalByName+"/v2/x/manifests/latest", http.StatusTemporaryRedirect)
	})
	clean := registry.Start(registry.Options{})
	t.Cleanup(clean.Close)
	img, err := images.Clean()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clean.Push(img, "app", "1"); err != nil {
		t.Fatal(err)
	}
	_, cleanPort, _ := net.SplitHostPort(clean.Host)

	tests := []struct {
		name   string
		image  string
		policy sbom.RegistryPolicy
	}{
		{"the registry's address is denied", internalHost + "/x:latest", inside},
		{"a host name that resolves to a denied address", "localhost:" + cleanPort + "/app:1",
			sbom.RegistryPolicy{DenyNetworks: mustNetworks(t, "127.0.0.0/8", "::1/128")}},
		{"the token service is denied", strings.TrimPrefix(tokenRealm.URL, "http://") + "/x:latest", inside},
		{"a redirect to a denied address", strings.TrimPrefix(redirecting.URL, "http://") + "/x:latest", inside},
		{"an unspecified address reaches the host itself", "0.0.0.0:" + cleanPort + "/app:1", sbom.RegistryPolicy{}},
		{"a registry outside the allowed ones", clean.Host + "/app:1", sbom.RegistryPolicy{Allow: []string{"ghcr.io"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := internalRequests.Load()
			options := sbom.Options{Policy: tc.policy, Timeout: 10 * time.Second,
				Registries: sbom.RegistryAccessOf([]string{strings.Split(tc.image, "/")[0]}, nil)}
			_, err := sbom.Resolve(t.Context(), tc.image, options)
			var denied *sbom.RegistryDeniedError
			if !errors.As(err, &denied) {
				t.Fatalf("Resolve(%s) error = %v, want a *RegistryDeniedError", tc.image, err)
			}
			if reason, _ := sbom.Explain(err, "ResolveFailed"); reason != sbom.ReasonRegistryDenied {
				t.Errorf("Explain() reason = %q, want %q", reason, sbom.ReasonRegistryDenied)
			}
			if got := internalRequests.Load() - before; got != 0 {
				t.Errorf("the denied address answered %d requests", got)
			}
		})
	}

	t.Run("the scan is held to the policy too", func(t *testing.T) {
		ref := "localhost:" + cleanPort + "/app:1"
		options := sbom.Options{Policy: sbom.RegistryPolicy{DenyNetworks: mustNetworks(t, "127.0.0.0/8", "::1/128")},
			Registries: sbom.RegistryAccessOf([]string{"localhost:" + cleanPort}, nil)}
		_, err := sbom.Generate(t.Context(), sbom.Source{Scheme: sbom.SchemeRegistry, Location: ref}, options)
		var denied *sbom.RegistryDeniedError
		if !errors.As(err, &denied) {
			t.Fatalf("Generate(%s) error = %v, want a *RegistryDeniedError", ref, err)
		}
	})
	t.Run("an allowed registry is reached", func(t *testing.T) {
		options := sbom.Options{Policy: sbom.RegistryPolicy{DenyNetworks: sbom.DefaultDenyNetworks(), Allow: []string{clean.Host}},
			Registries: sbom.RegistryAccessOf([]string{clean.Host}, nil)}
		if _, err := sbom.Resolve(t.Context(), clean.Host+"/app:1", options); err != nil {
			t.Fatalf("Resolve() error = %v", err)
		}
	})
}

func TestTheRegistryPolicyTravelsToAScanJobAsArguments(t *testing.T) {
	tests := []struct {
		name   string
		policy sbom.RegistryPolicy
		want   []string
	}{
		{"every part", sbom.RegistryPolicy{
			Allow: []string{"registry.example", "*.mirror.example"}, Deny: []string{"evil.example"},
			DenyNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("10.96.0.10/32")},
		}, []string{"--registry-allow=registry.example", "--registry-allow=*.mirror.example", "--registry-deny=evil.example",
			"--registry-deny-network=10.0.0.0/8", "--registry-allow-network=10.96.0.10/32"}},
		// no network denied: say so, or the scan Job would deny its default networks
		{"nothing denied", sbom.RegistryPolicy{}, []string{"--registry-deny-network="}},
	}
	for _, tc := range tests {
		if got := tc.policy.Args(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Args() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
