package match

import (
	"slices"
	"testing"

	"github.com/anchore/grype/grype/presenter/models"
)

func TestDescribingAVulnerabilityFromItsRecords(t *testing.T) {
	cvss := func(source, vector string, score float64) models.Cvss {
		return models.Cvss{Source: source, Version: "3.1", Vector: vector, Metrics: models.CvssMetrics{BaseScore: score}}
	}
	primary := models.VulnerabilityMetadata{
		ID: "GHSA-jfh8-c2jp-5v3q", DataSource: "https://github.com/advisories/GHSA-jfh8-c2jp-5v3q", Severity: "critical",
		URLs:        []string{"https://github.com/advisories/GHSA-jfh8-c2jp-5v3q", "https://logging.apache.org/security.html"},
		Description: "Remote code injection in Log4j",
		Cvss:        []models.Cvss{cvss("ghsa", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10), {Version: "3.1"}},
		EPSS:        []models.EPSS{{EPSS: 0.5, Percentile: 0.9, Date: "2026-11-01"}},
	}
	related := []models.VulnerabilityMetadata{{
		ID: "CVE-2021-44228", Description: "Apache Log4j2 JNDI features used in configuration, log messages and parameters do not protect against attacker controlled LDAP",
		Cvss: []models.Cvss{
			cvss("nvd", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10),
			cvss("nvd", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
		},
		KnownExploited: []models.KnownExploited{{CVE: "CVE-2021-44228"}},
		EPSS:           []models.EPSS{{EPSS: 0.97, Percentile: 0.99, Date: "2026-11-02"}, {EPSS: 0.2, Percentile: 0.5}},
	}}
	got := describe(primary, related)
	if got.ID != primary.ID || got.Severity != SeverityCritical {
		t.Errorf("ID %s severity %s", got.ID, got.Severity)
	}
	if !slices.Equal(got.Aliases, []string{"CVE-2021-44228"}) {
		t.Errorf("aliases %v", got.Aliases)
	}
	if !slices.Equal(got.Links, []string{primary.DataSource, "https://logging.apache.org/security.html"}) {
		t.Errorf("links %v, want the data source once and the other URL", got.Links)
	}
	if got.Description != related[0].Description {
		t.Errorf("description %q, want the fullest", got.Description)
	}
	if len(got.CVSS) != 2 || got.CVSS[0].BaseScore != 10 || got.CVSS[1].BaseScore != 9.8 {
		t.Errorf("CVSS %+v, want one 10 (the same rating from two sources) and one 9.8, and no empty rating", got.CVSS)
	}
	if !got.KnownExploited {
		t.Error("a known exploited related record does not make the vulnerability known exploited")
	}
	if got.EPSS == nil || got.EPSS.Score != 0.97 || got.EPSS.Date != "2026-11-02" {
		t.Errorf("EPSS %+v, want the highest", got.EPSS)
	}
	if plain := describe(models.VulnerabilityMetadata{ID: "CVE-1", Severity: "bogus"}, nil); plain.KnownExploited || plain.EPSS != nil ||
		plain.Severity != SeverityUnknown || len(plain.Links) != 0 || len(plain.CVSS) != 0 {
		t.Errorf("a bare record is described as %+v", plain)
	}
}

func TestWhichRecordDescribesAFinding(t *testing.T) {
	tests := []struct {
		name    string
		primary Reference
		related []Reference
		want    string
	}{
		{name: "a CVE with its distribution's own advisory: the advisory", primary: Reference{ID: "CVE-2023-1", Namespace: "debian"},
			related: []Reference{{ID: "DSA-5000-1", Namespace: "debian"}}, want: "DSA-5000-1"},
		{name: "a related record of another namespace", primary: Reference{ID: "CVE-2023-1", Namespace: "debian"},
			related: []Reference{{ID: "GHSA-x", Namespace: "github"}}, want: "CVE-2023-1"},
		{name: "a related CVE", primary: Reference{ID: "CVE-2023-1", Namespace: "nvd"},
			related: []Reference{{ID: "cve-2023-2", Namespace: "nvd"}}, want: "CVE-2023-1"},
		{name: "the same record", primary: Reference{ID: "CVE-2023-1", Namespace: "nvd"},
			related: []Reference{{ID: "CVE-2023-1", Namespace: "nvd"}}, want: "CVE-2023-1"},
		{name: "a primary that is no CVE", primary: Reference{ID: "GHSA-y", Namespace: "github"},
			related: []Reference{{ID: "GHSA-z", Namespace: "github"}}, want: "GHSA-y"},
		{name: "two related records", primary: Reference{ID: "CVE-2023-1", Namespace: "debian"},
			related: []Reference{{ID: "DSA-1", Namespace: "debian"}, {ID: "DLA-2", Namespace: "debian"}}, want: "CVE-2023-1"},
	}
	for _, tc := range tests {
		if got := recordOf(tc.primary, tc.related); got.ID != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got.ID, tc.want)
		}
	}
}

func TestOnATieTheVulnerabilitysOwnDescriptionWins(t *testing.T) {
	primary := models.VulnerabilityMetadata{ID: "DSA-5343-1", Description: "openssl security update"}
	related := []models.VulnerabilityMetadata{{ID: "CVE-2023-0286", Description: "X.400 type confusion!!!"}}
	if len(primary.Description) != len(related[0].Description) {
		t.Fatal("the descriptions must be of one length")
	}
	if got := describe(primary, related).Description; got != primary.Description {
		t.Errorf("description %q, want the record's own %q", got, primary.Description)
	}
}

func TestOnATieTheFirstEPSSRecordWins(t *testing.T) {
	primary := models.VulnerabilityMetadata{ID: "CVE-2023-0286", EPSS: []models.EPSS{
		{EPSS: 0.5, Percentile: 0.9, Date: "2026-11-01"}, {EPSS: 0.5, Percentile: 0.8, Date: "2026-10-01"},
	}}
	if got := describe(primary, nil).EPSS; got == nil || got.Date != "2026-11-01" {
		t.Errorf("EPSS %+v, want the first of two equal scores", got)
	}
}
