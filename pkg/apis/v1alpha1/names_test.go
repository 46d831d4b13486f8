package v1alpha1

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

func TestVulnerabilityName(t *testing.T) {
	tests := []struct{ id, want string }{
		{"CVE-2021-44228", "cve-2021-44228"},
		{"GHSA-xvch-5gv4-984h", "ghsa-xvch-5gv4-984h"},
		{"RHSA-2023:1234", "rhsa-2023-1234"},
		{"ALAS2-2023-2001", "alas2-2023-2001"},
		{"DLA-3435-1", "dla-3435-1"},
		{"GO-2022-0969", "go-2022-0969"},
		{"PYSEC-2021/66", "pysec-2021-66"},
		{"_odd_", "odd"},
		{strings.Repeat("A", 300), strings.Repeat("a", 253)},
	}
	for _, tc := range tests {
		got := VulnerabilityName(tc.id)
		if got != tc.want {
			t.Errorf("VulnerabilityName(%q) = %q, want %q", tc.id, got, tc.want)
		}
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("VulnerabilityName(%q) = %q is not a valid name: %v", tc.id, got, errs)
		}
	}
}

func TestImageScanName(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	got := ImageScanName(digest)
	if got != "sha256-"+strings.Repeat("ab", 32) {
		t.Errorf("ImageScanName(%q) = %q", digest, got)
	}
	if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
		t.Errorf("%q is not a valid name: %v", got, errs)
	}
}

func TestLabels(t *testing.T) {
	tests := []struct {
		name    string
		details VulnerabilityDetails
		want    map[string]string
	}{
		{"critical with a score", VulnerabilityDetails{Severity: SeverityCritical, Score: ptr.To(9.8)}, map[string]string{SeverityLabel: "critical", CVSSLabel: "98", FixableLabel: "false"}},
		{"a score that rounds", VulnerabilityDetails{Severity: SeverityMedium, Score: ptr.To(6.55)}, map[string]string{SeverityLabel: "medium", CVSSLabel: "66", FixableLabel: "false"}},
		{"no score", VulnerabilityDetails{Severity: SeverityUnknown}, map[string]string{SeverityLabel: "unknown", FixableLabel: "false"}},
		{"a fixed package", VulnerabilityDetails{Severity: SeverityHigh, Packages: []VulnerablePackage{
			{Name: "libssl3", FixState: FixStateNotFixed}, {Name: "openssl", FixedIn: []string{"3.0.8-1"}, FixState: FixStateFixed},
		}}, map[string]string{SeverityLabel: "high", FixableLabel: "true"}},
		{"no fix known", VulnerabilityDetails{Severity: SeverityLow, Packages: []VulnerablePackage{
			{Name: "zlib", FixState: FixStateWontFix}, {Name: "bash", FixState: FixStateUnknown},
		}}, map[string]string{SeverityLabel: "low", FixableLabel: "false"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.details.Labels()
			if len(got) != len(tc.want) {
				t.Fatalf("Labels() = %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("Labels()[%q] = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestSeverity(t *testing.T) {
	tests := []struct {
		word string
		want Severity
		ok   bool
		rank int32
	}{
		{"critical", SeverityCritical, true, 1},
		{"HIGH", SeverityHigh, true, 2},
		{"Medium", SeverityMedium, true, 3},
		{"low", SeverityLow, true, 4},
		{"negligible", SeverityNegligible, true, 5},
		{"unknown", SeverityUnknown, true, 6},
		{"severe", "", false, 6},
	}
	for _, tc := range tests {
		got, ok := ParseSeverity(tc.word)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseSeverity(%q) = %q, %v; want %q, %v", tc.word, got, ok, tc.want, tc.ok)
		}
		if rank := got.Rank(); rank != tc.rank {
			t.Errorf("%q.Rank() = %d, want %d", got, rank, tc.rank)
		}
	}
	var counts SeverityCounts
	for _, s := range []Severity{SeverityCritical, SeverityCritical, SeverityLow, "bogus"} {
		counts.Add(s)
	}
	if counts != (SeverityCounts{Critical: 2, Low: 1, Unknown: 1}) || counts.Total() != 4 {
		t.Errorf("counts = %+v, total %d", counts, counts.Total())
	}
}

func TestRankOrdersBySeverityThenScore(t *testing.T) {
	ordered := []int32{
		RankOf(SeverityCritical, ptr.To(10.0)),
		RankOf(SeverityCritical, ptr.To(9.8)),
		RankOf(SeverityCritical, nil),
		RankOf(SeverityHigh, ptr.To(8.8)),
		RankOf(SeverityHigh, ptr.To(0.0)),
		RankOf(SeverityMedium, ptr.To(6.5)),
		RankOf(SeverityUnknown, nil),
	}
	for i := 1; i < len(ordered); i++ {
		if ordered[i-1] >= ordered[i] {
			t.Errorf("rank %d (%d) is not below rank %d (%d)", i-1, ordered[i-1], i, ordered[i])
		}
	}
	if got := RankOf(SeverityCritical, ptr.To(10.0)); got != 1900 {
		t.Errorf("RankOf(Critical, 10.0) = %d, want 1900", got)
	}
}
