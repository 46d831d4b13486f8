package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// filled is a string of n characters, unique by prefix.
func filled(prefix string, n int) string {
	return prefix + strings.Repeat("x", n-len(prefix))
}

// TestLargestObjectsFitInEtcd stores a Vulnerability and an ImageScan with every list at its bound
// and every string at its maximum length: the bounds keep any object Vigil writes storable.
func TestLargestObjectsFitInEtcd(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	digest := "sha256:" + strings.Repeat("e", 64)

	details := vigilv1alpha1.VulnerabilityDetails{
		ID:             filled("CVE-", 128),
		Severity:       vigilv1alpha1.SeverityCritical,
		SeverityRank:   1,
		Score:          ptr.To(9.9),
		KnownExploited: true,
		EPSS:           &vigilv1alpha1.EPSS{Score: 0.5, Percentile: 0.5, Date: filled("2026", 32)},
		Description:    filled("d", 2048),
		PackageSummary: filled("p", 300),
		FixedInSummary: filled("f", 128),
	}
	for i := range 32 {
		details.Aliases = append(details.Aliases, filled(fmt.Sprintf("GHSA-%d", i), 128))
	}
	for i := range 16 {
		details.Links = append(details.Links, filled(fmt.Sprintf("https://%d.example/", i), 1024))
	}
	for i := range 8 {
		details.CVSS = append(details.CVSS, vigilv1alpha1.CVSS{Source: filled(fmt.Sprint(i), 128), Version: filled("3", 16), Vector: filled("CVSS", 256), BaseScore: 9.9})
	}
	for i := range vigilv1alpha1.MaxVulnerabilityPackages {
		pkg := vigilv1alpha1.VulnerablePackage{
			Name: filled(fmt.Sprint(i), 256), Type: filled("t", 64), Installed: filled("1", 128),
			FixState: vigilv1alpha1.FixStateFixed, PURL: filled("pkg:", 1024), Location: filled("/", 1024),
		}
		for j := range 8 {
			pkg.FixedIn = append(pkg.FixedIn, filled(fmt.Sprint(j), 128))
		}
		details.Packages = append(details.Packages, pkg)
	}
	status := vigilv1alpha1.VulnerabilityStatus{Details: details, ImageCount: 1 << 20, WorkloadCount: 1 << 20}
	for i := range vigilv1alpha1.MaxVulnerabilityImages {
		status.Images = append(status.Images, vigilv1alpha1.AffectedImage{Image: filled(fmt.Sprint(i), 512), Digest: digest})
	}
	for i := range vigilv1alpha1.MaxVulnerabilityWorkloads {
		status.Workloads = append(status.Workloads, vigilv1alpha1.AffectedWorkload{
			Namespace: filled(fmt.Sprint(i), 63), Kind: filled("K", 63), Name: filled("n", 253), Container: filled("c", 253),
			Digest: digest, LastDetected: metav1.NewTime(time.Now()),
		})
	}
	vulnerability := createVulnerability(ctx, t, status)
	g.Expect(vulnerability.Status.Workloads).To(HaveLen(vigilv1alpha1.MaxVulnerabilityWorkloads))

	scan := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest)}}
	scan.Spec.Digest = digest
	for i := range vigilv1alpha1.MaxImageReferences {
		scan.Spec.References = append(scan.Spec.References, vigilv1alpha1.ImageReference{
			Image: filled(fmt.Sprint(i), 512), Namespace: filled("n", 63),
			Workload: &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: filled("w", 253)},
		})
	}
	g.Expect(env.Client.Create(ctx, scan)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), scan) })
	for i := range vigilv1alpha1.MaxImageScanVulnerabilities {
		v := vigilv1alpha1.ImageVulnerability{
			ID: filled(fmt.Sprint(i), 64), Namespace: filled("n", 64), Severity: vigilv1alpha1.SeverityHigh, Package: filled("p", 128),
			Type: filled("t", 32), Installed: filled("1", 64), FixedIn: filled("2", 64), FixState: vigilv1alpha1.FixStateWontFix,
			Location: filled("l", 128),
		}
		for j := range vigilv1alpha1.MaxRelatedAdvisories {
			v.Related = append(v.Related, vigilv1alpha1.AdvisoryReference{ID: filled(fmt.Sprint(j), 64), Namespace: filled("n", 64)})
		}
		scan.Status.Vulnerabilities = append(scan.Status.Vulnerabilities, v)
	}
	scan.Status.Phase = vigilv1alpha1.ImageScanScanned
	g.Expect(env.Client.Status().Update(ctx, scan)).To(Succeed())
}
