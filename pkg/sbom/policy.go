package sbom

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// RegistryPolicy says which registries Vigil may contact. Registry host names are chosen by
// whoever creates a pod, so without a policy a tenant could point Vigil at addresses inside the
// cluster (the cloud metadata service, the API server's Service, other tenants' Services).
//
// Allow and Deny are checked against the registry of each image reference before any request.
// DenyNetworks is checked against the resolved address of every connection that registry
// traffic opens (the registry, its token service, the storage it redirects blobs to), at the
// moment of dialling, so that a name that resolves differently on a second lookup (DNS
// rebinding) cannot reach a denied address.
type RegistryPolicy struct {
	// Allow lists the registries (host or host:port; "*.example.com" for every subdomain) that
	// images may come from; empty allows every registry that Deny does not name.
	Allow []string
	// Deny lists registries that are never contacted, in the same forms as Allow.
	Deny []string
	// DenyNetworks are address ranges no registry connection may reach.
	DenyNetworks []netip.Prefix
	// AllowNetworks are exceptions inside DenyNetworks, for example an in-cluster registry's
	// Service address inside a denied Service range.
	AllowNetworks []netip.Prefix
}

// DefaultDenyNetworks are the ranges denied unless configured otherwise: IPv4 and IPv6
// link-local, where cloud metadata services answer. Loopback is not denied by default (a
// registry on the node's loopback is a legitimate setup); add 127.0.0.0/8 and ::1/128 to deny it.
func DefaultDenyNetworks() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10")}
}

// ParseNetworks reads CIDR ranges such as "10.96.0.0/12" or "fd00::/108"; a bare address is a
// range of one address.
func ParseNetworks(values []string) ([]netip.Prefix, error) {
	prefixes := make([]netip.Prefix, 0, len(values))
	for _, value := range values {
		value = strings.TrimSpace(value)
		if value == "" {
			continue
		}
		if !strings.Contains(value, "/") {
			addr, err := netip.ParseAddr(value)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR range nor an address", value)
			}
			addr = addr.Unmap()
			prefixes = append(prefixes, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		prefix, err := netip.ParsePrefix(value)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range: %w", value, err)
		}
		prefixes = append(prefixes, prefix.Masked())
	}
	return prefixes, nil
}

// RegistryDeniedError says that the policy forbids contacting a registry or an address.
type RegistryDeniedError struct {
	// Registry is the registry host[:port] of the image reference, when the policy names it.
	Registry string
	// Address is the dialled address, when its network is denied.
	Address string
	// Rule is the entry of the policy that denied it.
	Rule string
}

func (e *RegistryDeniedError) Error() string {
	if e.Address != "" {
		return fmt.Sprintf("the registry policy denies connecting to %s (%s)", e.Address, e.Rule)
	}
	return fmt.Sprintf("the registry policy denies registry %s (%s)", e.Registry, e.Rule)
}

// CheckRegistry fails with a *RegistryDeniedError when the policy forbids registry (host[:port]).
func (p RegistryPolicy) CheckRegistry(registry string) error {
	registry = strings.ToLower(registry)
	for _, pattern := range p.Deny {
		if registryMatches(pattern, registry) {
			return &RegistryDeniedError{Registry: registry, Rule: "denied registry " + pattern}
		}
	}
	if len(p.Allow) == 0 {
		return nil
	}
	for _, pattern := range p.Allow {
		if registryMatches(pattern, registry) {
			return nil
		}
	}
	return &RegistryDeniedError{Registry: registry, Rule: "not in the allowed registries"}
}

// registryMatches tells whether registry (host[:port]) is named by pattern: the same host and
// port, the same host when pattern has no port, or a subdomain for "*.domain".
func registryMatches(pattern, registry string) bool {
	pattern = strings.ToLower(strings.TrimSpace(pattern))
	host, port := splitRegistry(registry)
	patternHost, patternPort := splitRegistry(pattern)
	if patternPort != "" && patternPort != port {
		return false
	}
	if suffix, ok := strings.CutPrefix(patternHost, "*."); ok {
		return strings.HasSuffix(host, "."+suffix)
	}
	return patternHost == host
}

// splitRegistry splits host[:port], bracketed IPv6 included.
func splitRegistry(registry string) (host, port string) {
	if h, p, err := net.SplitHostPort(registry); err == nil {
		return strings.Trim(h, "[]"), p
	}
	return strings.Trim(registry, "[]"), ""
}

// CheckAddress fails with a *RegistryDeniedError when addr may not be connected to: an address
// in DenyNetworks and not in AllowNetworks, or an unspecified or multicast address, which no
// registry has (0.0.0.0 and :: reach the dialling host itself).
func (p RegistryPolicy) CheckAddress(addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	if addr.IsUnspecified() || addr.IsMulticast() {
		return &RegistryDeniedError{Address: addr.String(), Rule: "not a unicast address"}
	}
	for _, allowed := range p.AllowNetworks {
		if allowed.Contains(addr) {
			return nil
		}
	}
	for _, denied := range p.DenyNetworks {
		if denied.Contains(addr) {
			return &RegistryDeniedError{Address: addr.String(), Rule: "denied network " + denied.String()}
		}
	}
	return nil
}

// dialContext is the dialler of registry connections: it checks the address it is about to
// connect to, after name resolution, on every attempt.
func (p RegistryPolicy) dialContext() func(ctx context.Context, network, address string) (net.Conn, error) {
	dialer := &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("dialling %q: %w", address, err)
			}
			addr, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("dialling %q: %w", address, err)
			}
			return p.CheckAddress(addr)
		},
	}
	return dialer.DialContext
}

// Args are the scan-job command's flags that carry the policy to a scan Job.
func (p RegistryPolicy) Args() []string {
	var args []string
	for _, registry := range p.Allow {
		args = append(args, "--registry-allow="+registry)
	}
	for _, registry := range p.Deny {
		args = append(args, "--registry-deny="+registry)
	}
	for _, network := range p.DenyNetworks {
		args = append(args, "--registry-deny-network="+network.String())
	}
	for _, network := range p.AllowNetworks {
		args = append(args, "--registry-allow-network="+network.String())
	}
	if len(p.DenyNetworks) == 0 {
		// the scan-job command denies DefaultDenyNetworks unless told otherwise
		args = append(args, "--registry-deny-network=")
	}
	return args
}
