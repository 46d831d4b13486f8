package match

import (
	"context"
	"testing"
	"time"

	"github.com/anchore/grype/grype/vulnerability"
	"github.com/anchore/grype/grype/vulnerability/mock"

	"github.com/vigil-dev/vigil/test/fixtures/sboms"
)

func TestMatchingAnSBOM(t *testing.T) {
	database := Database{SchemaVersion: "v6.1.3", Built: time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)}
	matcher := NewMatcher(mock.VulnerabilityProvider(), database)
	result, err := matcher.ByCVE().Match(context.Background(), []byte(sboms.OneDebianPackage))
	if err != nil {
		t.Fatal(err)
	}
	if result.Packages != 1 || result.Distro != "debian 12" || result.Database != database || len(result.Findings) != 0 {
		t.Errorf("result: %d packages of %q against %+v with %d findings", result.Packages, result.Distro, result.Database, len(result.Findings))
	}
	if _, err := matcher.Match(context.Background(), []byte("not an SBOM")); err == nil {
		t.Error("matched something that is not an SBOM")
	}
}

func TestDescribingAVulnerabilityFromTheDatabase(t *testing.T) {
	const debian = "debian:distro:debian:12"
	record := func(id, namespace string, metadata vulnerability.Metadata) vulnerability.Vulnerability {
		return vulnerability.Vulnerability{Reference: vulnerability.Reference{ID: id, Namespace: namespace, Internal: metadata}}
	}
	matcher := NewMatcher(mock.VulnerabilityProvider(
		record("CVE-2023-0286", "nvd:cpe", vulnerability.Metadata{Severity: "High", Description: "A type confusion in X.400 address processing",
			Cvss: []vulnerability.Cvss{{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:H", Metrics: vulnerability.CvssMetrics{BaseScore: 7.4}}}}),
		record("DSA-5343-1", debian, vulnerability.Metadata{Severity: "Medium", Description: "openssl security update"}),
	), Database{})
	tests := []struct {
		name         string
		primary      Reference
		related      []Reference
		wantSeverity Severity
		wantAliases  int
	}{
		{name: "a CVE of its own record", primary: Reference{ID: "CVE-2023-0286", Namespace: "nvd:cpe"}, wantSeverity: SeverityHigh},
		{name: "a CVE reported for its distribution's advisory: the advisory's record", primary: Reference{ID: "CVE-2023-0286", Namespace: debian},
			related: []Reference{{ID: "DSA-5343-1", Namespace: debian}}, wantSeverity: SeverityMedium, wantAliases: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := matcher.Describe(tc.primary, tc.related)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tc.primary.ID || got.Severity != tc.wantSeverity || len(got.Aliases) != tc.wantAliases {
				t.Errorf("described %+v, want %s of severity %s with %d aliases", got, tc.primary.ID, tc.wantSeverity, tc.wantAliases)
			}
		})
	}
}
