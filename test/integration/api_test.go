package integration

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

const (
	log4jDigest   = "sha256:9f2c4d1e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"
	opensslDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
)

// log4Shell is the Vulnerability that Vigil reports for CVE-2021-44228 in two workloads.
func log4Shell(detected time.Time) vigilv1alpha1.VulnerabilityStatus {
	return vigilv1alpha1.VulnerabilityStatus{
		Details: vigilv1alpha1.VulnerabilityDetails{
			ID:           "CVE-2021-44228",
			Aliases:      []string{"GHSA-jfh8-c2jp-5v3q"},
			Severity:     vigilv1alpha1.SeverityCritical,
			SeverityRank: vigilv1alpha1.SeverityCritical.Rank(),
			Score:        ptr.To(10.0),
			CVSS: []vigilv1alpha1.CVSS{{
				Source: "nvd@nist.gov", Version: "3.1", BaseScore: 10.0,
				Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
			}},
			KnownExploited: true,
			EPSS:           &vigilv1alpha1.EPSS{Score: 0.94358, Percentile: 0.99963, Date: "2026-11-28"},
			Description:    "Apache Log4j2 JNDI features do not protect against attacker controlled LDAP and other JNDI related endpoints.",
			Links:          []string{"https://nvd.nist.gov/vuln/detail/CVE-2021-44228"},
			PackageSummary: "log4j-core 2.14.1",
			FixedInSummary: "2.15.0",
			Packages: []vigilv1alpha1.VulnerablePackage{{
				Name: "log4j-core", Type: "java-archive", Installed: "2.14.1", FixedIn: []string{"2.15.0"},
				FixState: vigilv1alpha1.FixStateFixed, PURL: "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
				Location: "/app/lib/log4j-core-2.14.1.jar",
			}},
		},
		Images:     []vigilv1alpha1.AffectedImage{{Image: "registry.example/shop/api:1.4", Digest: log4jDigest}},
		ImageCount: 1,
		Workloads: []vigilv1alpha1.AffectedWorkload{
			{Namespace: "shop", Kind: "Deployment", Name: "api", Container: "app", Digest: log4jDigest, LastDetected: metav1.NewTime(detected)},
			{Namespace: "jobs", Kind: "CronJob", Name: "report", Container: "run", Digest: log4jDigest, LastDetected: metav1.NewTime(detected)},
		},
		WorkloadCount: 2,
	}
}

// openSSLVulnerability is a High vulnerability of a Debian package in one workload.
func openSSLVulnerability(detected time.Time) vigilv1alpha1.VulnerabilityStatus {
	return vigilv1alpha1.VulnerabilityStatus{
		Details: vigilv1alpha1.VulnerabilityDetails{
			ID:             "CVE-2023-0286",
			Severity:       vigilv1alpha1.SeverityHigh,
			SeverityRank:   vigilv1alpha1.SeverityHigh.Rank(),
			Score:          ptr.To(7.4),
			Links:          []string{"https://security-tracker.debian.org/tracker/CVE-2023-0286"},
			PackageSummary: "libssl3 3.0.7-1",
			FixedInSummary: "3.0.8-1",
			Packages: []vigilv1alpha1.VulnerablePackage{{
				Name: "libssl3", Type: "deb", Installed: "3.0.7-1", FixedIn: []string{"3.0.8-1"}, FixState: vigilv1alpha1.FixStateFixed,
			}},
		},
		Images:        []vigilv1alpha1.AffectedImage{{Image: "registry.example/base/debian:12", Digest: opensslDigest}},
		ImageCount:    1,
		Workloads:     []vigilv1alpha1.AffectedWorkload{{Namespace: "shop", Kind: "StatefulSet", Name: "db", Container: "db", Digest: opensslDigest, LastDetected: metav1.NewTime(detected)}},
		WorkloadCount: 1,
	}
}

// createVulnerability creates the Vulnerability of status the way Vigil does: the object with its
// labels, then its status.
func createVulnerability(ctx context.Context, t *testing.T, status vigilv1alpha1.VulnerabilityStatus) *vigilv1alpha1.Vulnerability {
	t.Helper()
	g := NewWithT(t)
	vulnerability := &vigilv1alpha1.Vulnerability{ObjectMeta: metav1.ObjectMeta{
		Name:   vigilv1alpha1.VulnerabilityName(status.Details.ID),
		Labels: status.Details.Labels(),
	}}
	g.Expect(env.Client.Create(ctx, vulnerability)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), vulnerability) })
	vulnerability.Status = status
	g.Expect(env.Client.Status().Update(ctx, vulnerability)).To(Succeed())
	return vulnerability
}

func TestImageScanLifecycle(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()

	// Vigil records an admitted image with its digest and the namespace that uses it.
	scan := &vigilv1alpha1.ImageScan{
		ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(log4jDigest)},
		Spec: vigilv1alpha1.ImageScanSpec{
			Digest: log4jDigest,
			References: []vigilv1alpha1.ImageReference{{
				Image: "registry.example/shop/api:1.4", Namespace: "shop",
				Workload: &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: "api"},
			}},
		},
	}
	g.Expect(env.Client.Create(ctx, scan)).To(Succeed())
	g.Expect(scan.Name).To(Equal("sha256-" + strings.TrimPrefix(log4jDigest, "sha256:")))

	// The scan finishes: its status records the SBOM, the database and the findings.
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	scan.Status = vigilv1alpha1.ImageScanStatus{
		Phase:    vigilv1alpha1.ImageScanScanned,
		Attempts: 1,
		Conditions: []metav1.Condition{{
			Type: vigilv1alpha1.ConditionScanned, Status: metav1.ConditionTrue, Reason: "Matched",
			Message: "3 vulnerabilities in 212 packages", LastTransitionTime: now,
		}},
		SBOM:           &vigilv1alpha1.SBOMSummary{Distro: "debian 12", Packages: 212, ImageSize: 48_000_000},
		Database:       &vigilv1alpha1.DatabaseVersion{SchemaVersion: "v6.1.3", Built: now},
		ScanTime:       &now,
		MatchTime:      &now,
		SeverityCounts: vigilv1alpha1.SeverityCounts{Critical: 1, High: 2},
		Vulnerabilities: []vigilv1alpha1.ImageVulnerability{
			{
				ID: "CVE-2021-44228", Namespace: "nvd:cpe", Related: []vigilv1alpha1.AdvisoryReference{{ID: "GHSA-jfh8-c2jp-5v3q", Namespace: "github:language:java"}},
				Severity: vigilv1alpha1.SeverityCritical, Package: "log4j-core", Type: "java-archive", Installed: "2.14.1", FixedIn: "2.15.0",
				FixState: vigilv1alpha1.FixStateFixed, Location: "/app/lib/log4j-core-2.14.1.jar",
			},
		},
	}
	g.Expect(env.Client.Status().Update(ctx, scan)).To(Succeed())

	read := &vigilv1alpha1.ImageScan{}
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(scan), read)).To(Succeed())
	g.Expect(read.Spec).To(Equal(scan.Spec))
	g.Expect(read.Status.Phase).To(Equal(vigilv1alpha1.ImageScanScanned))
	g.Expect(read.Status.SBOM).To(Equal(scan.Status.SBOM))
	g.Expect(read.Status.SeverityCounts.Total()).To(Equal(int32(3)))
	g.Expect(meta.IsStatusConditionTrue(read.Status.Conditions, vigilv1alpha1.ConditionScanned)).To(BeTrue())
	g.Expect(read.Status.Vulnerabilities).To(Equal(scan.Status.Vulnerabilities))

	// The phase can be selected on the server.
	list := &vigilv1alpha1.ImageScanList{}
	g.Expect(env.Client.List(ctx, list, client.MatchingFields{"status.phase": "Scanned"})).To(Succeed())
	g.Expect(list.Items).To(HaveLen(1))

	g.Expect(env.Client.Delete(ctx, scan)).To(Succeed())
	g.Expect(apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(scan), read))).To(BeTrue())
}

func TestVulnerabilityLifecycle(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()

	vulnerability := createVulnerability(ctx, t, log4Shell(time.Now()))
	g.Expect(vulnerability.Name).To(Equal("cve-2021-44228"))

	read := &vigilv1alpha1.Vulnerability{}
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(vulnerability), read)).To(Succeed())
	g.Expect(read.Labels).To(HaveKeyWithValue(vigilv1alpha1.SeverityLabel, "critical"))
	g.Expect(read.Labels).To(HaveKeyWithValue(vigilv1alpha1.CVSSLabel, "100"))
	g.Expect(read.Status.Details).To(Equal(vulnerability.Status.Details))
	g.Expect(read.Status.Workloads).To(HaveLen(2))

	// The last Deployment stops: its workload entry goes.
	read.Status.Workloads = read.Status.Workloads[1:]
	read.Status.WorkloadCount = 1
	g.Expect(env.Client.Status().Update(ctx, read)).To(Succeed())
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(vulnerability), read)).To(Succeed())
	g.Expect(read.Status.Workloads).To(ConsistOf(HaveField("Kind", "CronJob")))

	g.Expect(env.Client.Delete(ctx, read)).To(Succeed())
	g.Expect(apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(vulnerability), read))).To(BeTrue())
}

func TestSchemaValidationRejectsBadObjects(t *testing.T) {
	isolate(t)
	ctx := t.Context()
	tooManyReferences := make([]vigilv1alpha1.ImageReference, vigilv1alpha1.MaxImageReferences+1)
	for i := range tooManyReferences {
		tooManyReferences[i] = vigilv1alpha1.ImageReference{Image: fmt.Sprintf("registry.example/app:%d", i)}
	}
	imageScans := []struct {
		name    string
		spec    vigilv1alpha1.ImageScanSpec
		message string
	}{
		{
			name:    "a digest that is not sha256",
			spec:    vigilv1alpha1.ImageScanSpec{Digest: "sha256:xyz", References: []vigilv1alpha1.ImageReference{{Image: "app:1"}}},
			message: `spec.digest: Invalid value: "sha256:xyz": spec.digest in body should match '^sha256:[a-f0-9]{64}$'`,
		},
		{
			name:    "no reference",
			spec:    vigilv1alpha1.ImageScanSpec{Digest: log4jDigest},
			message: "spec.references: Required value",
		},
		{
			name:    "an empty image reference",
			spec:    vigilv1alpha1.ImageScanSpec{References: []vigilv1alpha1.ImageReference{{Image: ""}}},
			message: "spec.references[0].image: Invalid value: \"\": spec.references[0].image in body should be at least 1 chars long",
		},
		{
			name:    "more references than the bound",
			spec:    vigilv1alpha1.ImageScanSpec{References: tooManyReferences},
			message: "spec.references: Too many: 33: must have at most 32 items",
		},
	}
	for _, tc := range imageScans {
		t.Run("ImageScan with "+tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := env.Client.Create(ctx, &vigilv1alpha1.ImageScan{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"},
				Spec:       tc.spec,
			})
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "error: %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.message))
		})
	}

	vulnerabilities := []struct {
		name    string
		mutate  func(*vigilv1alpha1.VulnerabilityStatus)
		message string
	}{
		{
			name:    "an unknown severity",
			mutate:  func(s *vigilv1alpha1.VulnerabilityStatus) { s.Details.Severity = "Severe" },
			message: `status.details.severity: Unsupported value: "Severe": supported values: "Critical", "High", "Medium", "Low", "Negligible", "Unknown"`,
		},
		{
			name:    "a CVSS score above 10",
			mutate:  func(s *vigilv1alpha1.VulnerabilityStatus) { s.Details.Score = ptr.To(11.0) },
			message: "status.details.score: Invalid value: 11: details.score in body should be less than or equal to 10",
		},
		{
			name: "an image without a digest",
			mutate: func(s *vigilv1alpha1.VulnerabilityStatus) {
				s.Images = []vigilv1alpha1.AffectedImage{{Image: "app:1", Digest: "latest"}}
			},
			message: `status.images[0].digest: Invalid value: "latest"`,
		},
		{
			name:    "an empty ID",
			mutate:  func(s *vigilv1alpha1.VulnerabilityStatus) { s.Details.ID = "" },
			message: "status.details.id: Invalid value: \"\": details.id in body should be at least 1 chars long",
		},
	}
	for _, tc := range vulnerabilities {
		t.Run("Vulnerability with "+tc.name, func(t *testing.T) {
			g := NewWithT(t)
			vulnerability := &vigilv1alpha1.Vulnerability{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"}}
			g.Expect(env.Client.Create(ctx, vulnerability)).To(Succeed())
			t.Cleanup(func() { _ = env.Client.Delete(context.Background(), vulnerability) })
			vulnerability.Status = log4Shell(time.Now())
			tc.mutate(&vulnerability.Status)
			err := env.Client.Status().Update(ctx, vulnerability)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "error: %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tc.message))
		})
	}
}

func TestKubectlShowsVulnerabilities(t *testing.T) {
	isolate(t)
	ctx := t.Context()
	detected := time.Date(2026, 11, 29, 10, 2, 11, 0, time.UTC)
	createVulnerability(ctx, t, openSSLVulnerability(detected))
	createVulnerability(ctx, t, log4Shell(detected))

	t.Run("get lists the printer columns in order", func(t *testing.T) {
		g := NewWithT(t)
		out, err := env.Kubectl(ctx, "get", "vulnerabilities", "--sort-by=.status.details.severityRank")
		g.Expect(err).NotTo(HaveOccurred())
		lines := strings.Split(strings.TrimSpace(out), "\n")
		g.Expect(lines).To(HaveLen(3), out)
		g.Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "ID", "SEVERITY", "CVSS", "PACKAGE", "FIXED-IN", "FIXABLE", "WORKLOADS", "AGE"}))
		g.Expect(lines[1]).To(MatchRegexp(`^cve-2021-44228\s+CVE-2021-44228\s+Critical\s+10\s+log4j-core 2.14.1\s+2.15.0\s+true\s+2\s+\d+s$`))
		g.Expect(lines[2]).To(MatchRegexp(`^cve-2023-0286\s+CVE-2023-0286\s+High\s+7.4\s+libssl3 3.0.7-1\s+3.0.8-1\s+true\s+1\s+\d+s$`))
	})

	t.Run("the category lists them too", func(t *testing.T) {
		g := NewWithT(t)
		for _, resource := range []string{"vulnerability", "vigil"} {
			out, err := env.Kubectl(ctx, "get", resource, "-o", "name")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out).To(ContainSubstring("vulnerability.vigil.dev/cve-2021-44228"))
		}
	})

	t.Run("filters by severity label, CVSS label and severity field", func(t *testing.T) {
		g := NewWithT(t)
		for _, filter := range [][]string{
			{"-l", "vigil.dev/severity=critical"},
			{"-l", "vigil.dev/cvss-x10>90"},
			{"--field-selector", "status.details.severity=Critical"},
		} {
			out, err := env.Kubectl(ctx, append([]string{"get", "vulnerabilities", "-o", "name"}, filter...)...)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(strings.Fields(out)).To(Equal([]string{"vulnerability.vigil.dev/cve-2021-44228"}), "filter %v", filter)
		}
	})

	t.Run("describe shows the vulnerability, its images and its workloads", func(t *testing.T) {
		g := NewWithT(t)
		out, err := env.Kubectl(ctx, "describe", "vulnerability", "cve-2021-44228")
		g.Expect(err).NotTo(HaveOccurred())
		for _, field := range []string{
			`Labels:\s+vigil.dev/cvss-x10=100`,
			`vigil.dev/severity=critical`,
			`Details:`,
			`Id:\s+CVE-2021-44228`,
			`Aliases:\s+GHSA-jfh8-c2jp-5v3q`,
			`Severity:\s+Critical`,
			`Score:\s+10`,
			`Vector:\s+CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H`,
			`Known Exploited:\s+true`,
			`Description:\s+Apache Log4j2 JNDI features`,
			`Links:\s+https://nvd.nist.gov/vuln/detail/CVE-2021-44228`,
			`Name:\s+log4j-core`,
			`Type:\s+java-archive`,
			`Installed:\s+2.14.1`,
			`Fixed In:\s+2.15.0`,
			`Images:`,
			`Image:\s+registry.example/shop/api:1.4`,
			`Digest:\s+` + log4jDigest,
			`Workloads:`,
			`Namespace:\s+shop`,
			`Kind:\s+Deployment`,
			`Container:\s+app`,
			`Last Detected:\s+2026-11-29T10:02:11Z`,
			`Kind:\s+CronJob`,
		} {
			g.Expect(out).To(MatchRegexp(field), "describe output:\n%s", out)
		}
		// The three sections come in the order a reader needs them.
		sections := regexp.MustCompile(`(?m)^  (Details|Images|Workloads):\s*$`).FindAllStringSubmatch(out, -1)
		g.Expect(sections).To(HaveLen(3), out)
		g.Expect([]string{sections[0][1], sections[1][1], sections[2][1]}).To(Equal([]string{"Details", "Images", "Workloads"}))
	})
}
