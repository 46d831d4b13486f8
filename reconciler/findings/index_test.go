package findings

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/match"
)

var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
	now     = metav1.NewTime(time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC))
)

func log4j(version string) vigilv1alpha1.ImageVulnerability {
	return vigilv1alpha1.ImageVulnerability{
		ID: "CVE-2021-44228", Namespace: "nvd:cpe", Related: []vigilv1alpha1.AdvisoryReference{{ID: "GHSA-jfh8-c2jp-5v3q", Namespace: "github:language:java"}},
		Severity: vigilv1alpha1.SeverityCritical, Package: "log4j-core", Installed: version, Type: "java-archive", FixedIn: "2.15.0",
		FixState: vigilv1alpha1.FixStateFixed,
	}
}

// database is a Describer of the log4j vulnerability, as the vulnerability database records it.
type database struct {
	asked []match.Reference
}

func (d *database) Describe(primary match.Reference, related []match.Reference) (match.Details, error) {
	d.asked = append(append(d.asked, primary), related...)
	if primary.ID != "CVE-2021-44228" {
		return match.Details{}, errors.New("not in the database")
	}
	return match.Details{
		ID: "CVE-2021-44228", Aliases: []string{"GHSA-jfh8-c2jp-5v3q"}, Severity: match.SeverityCritical,
		CVSS:        []match.CVSS{{Source: "nvd@nist.gov", Version: "3.1", BaseScore: 10}},
		Description: "Apache Log4j2 JNDI features do not protect against attacker controlled LDAP", KnownExploited: true,
		Links: []string{"https://nvd.nist.gov/vuln/detail/CVE-2021-44228"},
	}, nil
}

func TestIndexFollowsRunningContainers(t *testing.T) {
	x := NewIndex()
	db := &database{}
	api := Workload{Namespace: "shop", Kind: "Deployment", Name: "api"}
	report := Workload{Namespace: "jobs", Kind: "CronJob", Name: "report"}
	pod1 := types.NamespacedName{Namespace: "shop", Name: "api-1"}
	pod2 := types.NamespacedName{Namespace: "jobs", Name: "report-1"}

	// Findings before pods: nothing runs yet.
	if got := x.SetImage(digestA, "registry.example/shop/api:1.4", []vigilv1alpha1.ImageVulnerability{log4j("2.14.1")}); len(got) != 0 {
		t.Errorf("SetImage affected %v with nothing running", got)
	}
	if x.Desired("cve-2021-44228", now, db) != nil {
		t.Fatal("a vulnerability is desired with nothing running")
	}

	// A vulnerable container starts.
	if got := x.SetPod(pod1, []RunningContainer{{Digest: digestA, Workload: api, Container: "app"}}); !slices.Equal(got, []string{"cve-2021-44228"}) {
		t.Errorf("SetPod affected %v", got)
	}
	status := x.Desired("cve-2021-44228", now, db)
	if status == nil || status.WorkloadCount != 1 || status.Details.ID != "CVE-2021-44228" || *status.Details.Score != 10 ||
		status.Details.PackageSummary != "log4j-core 2.14.1" || status.Details.FixedInSummary != "2.15.0" || status.ImageCount != 1 {
		t.Fatalf("Desired = %+v", status)
	}
	// The details are the database's, read by the finding's record and related advisory.
	if !status.Details.KnownExploited || !strings.HasPrefix(status.Details.Description, "Apache Log4j2") ||
		!slices.Equal(status.Details.Aliases, []string{"GHSA-jfh8-c2jp-5v3q"}) || len(status.Details.Links) != 1 {
		t.Errorf("details = %+v", status.Details)
	}
	if want := []match.Reference{{ID: "CVE-2021-44228", Namespace: "nvd:cpe"}, {ID: "GHSA-jfh8-c2jp-5v3q", Namespace: "github:language:java"}}; !slices.Equal(db.asked[:2], want) {
		t.Errorf("the database was asked for %v, want %v", db.asked, want)
	}

	// A second image with another version of the package, in another workload.
	x.SetImage(digestB, "registry.example/jobs/report:2", []vigilv1alpha1.ImageVulnerability{log4j("2.13.0")})
	x.SetPod(pod2, []RunningContainer{{Digest: digestB, Workload: report, Container: "run"}})
	status = x.Desired("cve-2021-44228", now, db)
	if status.WorkloadCount != 2 || status.ImageCount != 2 || len(status.Details.Packages) != 2 ||
		status.Details.PackageSummary != "log4j-core 2.13.0 (+1)" {
		t.Fatalf("Desired with two workloads = %+v", status)
	}
	if status.Workloads[0].Kind != "CronJob" || status.Workloads[1].Kind != "Deployment" {
		t.Errorf("workloads are not sorted: %+v", status.Workloads)
	}

	// The first stops; then the second.
	x.RemovePod(pod1)
	if status = x.Desired("cve-2021-44228", now, db); status.WorkloadCount != 1 || status.Workloads[0].Name != "report" {
		t.Errorf("after the first stopped: %+v", status)
	}
	if got := x.RemovePod(pod2); !slices.Equal(got, []string{"cve-2021-44228"}) {
		t.Errorf("RemovePod affected %v", got)
	}
	if x.Desired("cve-2021-44228", now, db) != nil || len(x.Names()) != 0 {
		t.Error("the vulnerability is desired with nothing running")
	}

	// New findings of a running image: a withdrawn advisory affects the name it had.
	x.SetPod(pod1, []RunningContainer{{Digest: digestA, Workload: api, Container: "app"}})
	if got := x.SetImage(digestA, "registry.example/shop/api:1.4", nil); !slices.Equal(got, []string{"cve-2021-44228"}) {
		t.Errorf("withdrawing affected %v", got)
	}
	if x.Desired("cve-2021-44228", now, db) != nil {
		t.Error("a withdrawn vulnerability is desired")
	}

	// An ImageScan deleted (collected) takes its findings with it.
	x.SetImage(digestA, "registry.example/shop/api:1.4", []vigilv1alpha1.ImageVulnerability{log4j("2.14.1")})
	if got := x.RemoveImage(digestA); !slices.Equal(got, []string{"cve-2021-44228"}) {
		t.Errorf("RemoveImage affected %v", got)
	}
	if x.Desired("cve-2021-44228", now, db) != nil {
		t.Error("the findings of a removed image are desired")
	}
}

func TestDetailsWithoutTheDatabaseComeFromTheFindings(t *testing.T) {
	finding := log4j("2.14.1")
	finding.ID, finding.Severity = "CVE-2099-0001", vigilv1alpha1.SeverityHigh
	d := details([]vigilv1alpha1.ImageVulnerability{finding}, &database{})
	if d.ID != "CVE-2099-0001" || d.Severity != vigilv1alpha1.SeverityHigh || d.SeverityRank != 2 ||
		!slices.Equal(d.Aliases, []string{"GHSA-jfh8-c2jp-5v3q"}) || d.Score != nil || len(d.Packages) != 1 {
		t.Errorf("details = %+v", d)
	}
}

func TestRefreshLastDetected(t *testing.T) {
	earlier := metav1.NewTime(now.Add(-10 * time.Minute))
	old := metav1.NewTime(now.Add(-2 * time.Hour))
	workload := vigilv1alpha1.AffectedWorkload{Namespace: "shop", Kind: "Deployment", Name: "api", Container: "app", Digest: digestA}
	tests := []struct {
		name     string
		previous metav1.Time
		want     metav1.Time
	}{
		{"detected within the refresh interval keeps its time (no write)", earlier, earlier},
		{"detected longer ago is renewed", old, now},
		{"detected exactly the refresh interval ago is renewed", metav1.NewTime(now.Add(-time.Hour)), now},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			current := workload
			current.LastDetected = tc.previous
			desired := &vigilv1alpha1.VulnerabilityStatus{Workloads: []vigilv1alpha1.AffectedWorkload{workload}}
			desired.Workloads[0].LastDetected = now
			refreshLastDetected(desired, []vigilv1alpha1.AffectedWorkload{current}, now.Time, time.Hour)
			if !desired.Workloads[0].LastDetected.Equal(&tc.want) {
				t.Errorf("LastDetected = %s, want %s", desired.Workloads[0].LastDetected, tc.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"trimmed", 4, "trim"},
		{"héllo", 2, "h"}, // never cuts a rune in two
	}
	for _, tc := range tests {
		if got := vigilv1alpha1.Truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
