package findings

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/match"
)

// describedAs is a Describer that answers details for every vulnerability.
type describedAs match.Details

func (d describedAs) Describe(match.Reference, []match.Reference) (match.Details, error) {
	return match.Details(d), nil
}

func TestAVulnerabilitysDetailsAreBounded(t *testing.T) {
	many := func(prefix string, n int) []string {
		var list []string
		for i := range n {
			list = append(list, fmt.Sprintf("%s-%02d", prefix, i))
		}
		return list
	}
	var cvss []match.CVSS
	for i := range 10 {
		cvss = append(cvss, match.CVSS{Source: "nvd", Version: "3.1", BaseScore: float64(i)})
	}
	described := describedAs{ID: "CVE-2021-44228", Severity: match.SeverityCritical, Aliases: many("GHSA", 40),
		Links: many("https://example.com/", 20), CVSS: cvss, EPSS: &match.EPSS{Score: 0.97, Percentile: 0.99, Date: "2026-11-01"}}
	var findings []vigilv1alpha1.ImageVulnerability
	for i := range vigilv1alpha1.MaxVulnerabilityPackages + 3 {
		f := log4j(fmt.Sprintf("2.%03d", i))
		findings = append(findings, f, f) // every package twice: from two images
	}
	d := details(findings, described)
	for _, check := range []struct {
		what      string
		got, want int
	}{
		{"aliases", len(d.Aliases), 32}, {"links", len(d.Links), 16}, {"CVSS ratings", len(d.CVSS), 8},
		{"packages", len(d.Packages), vigilv1alpha1.MaxVulnerabilityPackages},
	} {
		if check.got != check.want {
			t.Errorf("%d %s listed, want %d", check.got, check.what, check.want)
		}
	}
	if want := fmt.Sprintf("log4j-core 2.000 (+%d)", vigilv1alpha1.MaxVulnerabilityPackages+2); d.PackageSummary != want {
		t.Errorf("package summary %q, want %q: every distinct package counted once", d.PackageSummary, want)
	}
	if d.Score == nil || *d.Score != 9 || d.Rank != vigilv1alpha1.RankOf(vigilv1alpha1.SeverityCritical, d.Score) {
		t.Errorf("score %v rank %d, want the highest rating, 9", d.Score, d.Rank)
	}
	if d.EPSS == nil || d.EPSS.Score != 0.97 || d.EPSS.Date != "2026-11-01" {
		t.Errorf("EPSS %+v", d.EPSS)
	}
}

func TestTheFirstPackageSummarisesAVulnerability(t *testing.T) {
	finding := func(name, version, fixedIn string) vigilv1alpha1.ImageVulnerability {
		f := log4j(version)
		f.Package, f.FixedIn = name, fixedIn
		return f
	}
	tests := []struct {
		name        string
		findings    []vigilv1alpha1.ImageVulnerability
		wantSummary string
		wantFixedIn string
		wantOrder   []string
	}{
		{name: "one package", findings: []vigilv1alpha1.ImageVulnerability{finding("log4j-core", "2.14.1", "2.15.0")},
			wantSummary: "log4j-core 2.14.1", wantFixedIn: "2.15.0", wantOrder: []string{"log4j-core 2.14.1"}},
		{name: "the same package twice counts once", findings: []vigilv1alpha1.ImageVulnerability{finding("log4j-core", "2.14.1", ""), finding("log4j-core", "2.14.1", "")},
			wantSummary: "log4j-core 2.14.1", wantOrder: []string{"log4j-core 2.14.1"}},
		{name: "packages by name, then version", findings: []vigilv1alpha1.ImageVulnerability{
			finding("log4j-core", "2.14.1", ""), finding("log4j-api", "2.9.0", "2.15.0"), finding("log4j-api", "2.10.0", "")},
			wantSummary: "log4j-api 2.10.0 (+2)", wantOrder: []string{"log4j-api 2.10.0", "log4j-api 2.9.0", "log4j-core 2.14.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := details(tc.findings, nil)
			var order []string
			for _, p := range d.Packages {
				order = append(order, p.Name+" "+p.Installed)
			}
			if d.PackageSummary != tc.wantSummary || d.FixedInSummary != tc.wantFixedIn || !slices.Equal(order, tc.wantOrder) {
				t.Errorf("summary %q fixed in %q packages %v; want %q, %q, %v", d.PackageSummary, d.FixedInSummary, order, tc.wantSummary, tc.wantFixedIn, tc.wantOrder)
			}
		})
	}
}

func TestADatabaseSeverityVigilDoesNotKnowFallsBackToTheFindings(t *testing.T) {
	d := details([]vigilv1alpha1.ImageVulnerability{log4j("2.14.1")}, describedAs{ID: "CVE-2021-44228", Severity: "Severe"})
	if d.Severity != vigilv1alpha1.SeverityCritical || d.SeverityRank != vigilv1alpha1.SeverityCritical.Rank() {
		t.Errorf("severity %q rank %d, want the finding's Critical", d.Severity, d.SeverityRank)
	}
	if d.Score != nil || d.EPSS != nil {
		t.Errorf("score %v EPSS %v from a record without them", d.Score, d.EPSS)
	}
}

func TestAVulnerabilityListsABoundedNumberOfImagesAndWorkloads(t *testing.T) {
	x := NewIndex()
	name := vigilv1alpha1.VulnerabilityName("CVE-2021-44228")
	images := vigilv1alpha1.MaxVulnerabilityImages + 2
	for i := range images {
		digest := "sha256:" + strings.Repeat("0", 60) + fmt.Sprintf("%04d", i)
		x.SetImage(digest, "registry.example/app:"+fmt.Sprint(i), []vigilv1alpha1.ImageVulnerability{log4j("2.14.1")})
		// Five workloads per image: more than the workload bound in all.
		for w := range 5 {
			pod := types.NamespacedName{Namespace: "shop", Name: fmt.Sprintf("app-%d-%d", i, w)}
			x.SetPod(pod, []RunningContainer{{Digest: digest, Container: "app",
				Workload: Workload{Namespace: "shop", Kind: "Deployment", Name: fmt.Sprintf("app-%d-%d", i, w)}}})
		}
	}
	status := x.Desired(name, now, nil)
	if status == nil {
		t.Fatal("no status for a vulnerability that runs")
	}
	if status.ImageCount != int32(images) || len(status.Images) != vigilv1alpha1.MaxVulnerabilityImages {
		t.Errorf("%d images counted, %d listed; want %d and %d", status.ImageCount, len(status.Images), images, vigilv1alpha1.MaxVulnerabilityImages)
	}
	if status.WorkloadCount != int32(5*images) || len(status.Workloads) != vigilv1alpha1.MaxVulnerabilityWorkloads {
		t.Errorf("%d workloads counted, %d listed; want %d and %d", status.WorkloadCount, len(status.Workloads), 5*images, vigilv1alpha1.MaxVulnerabilityWorkloads)
	}
	if !slices.IsSortedFunc(status.Workloads, compareWorkloads) {
		t.Error("the workloads are not in order")
	}
}
