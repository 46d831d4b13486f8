package view

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// vulnerability is one of the stories' Vulnerabilities, from public advisory facts.
type vulnerability struct {
	id, alias, pkg, installed, fixed string
	severity                         vigilv1alpha1.Severity
	score                            float64
	workloads                        []string // namespace/kind/name/container
	image                            string
}

var catalogue = []vulnerability{
	{"CVE-2022-22965", "GHSA-36p3-wjmg-h94x", "spring-beans", "5.3.17", "5.3.18", vigilv1alpha1.SeverityCritical, 9.8,
		[]string{"shop/Deployment/orders/app", "shop/Deployment/billing/app"}, "registry.example/shop/orders:2.6"},
	{"CVE-2022-42889", "GHSA-599f-7c49-w659", "commons-text", "1.9", "1.10.0", vigilv1alpha1.SeverityCritical, 9.8,
		[]string{"shop/Deployment/billing/app"}, "registry.example/shop/billing:1.2"},
	{"CVE-2019-10744", "GHSA-jf85-cpcp-j695", "lodash", "4.17.11", "4.17.12", vigilv1alpha1.SeverityCritical, 9.1,
		[]string{"web/Deployment/storefront/node"}, "registry.example/web/storefront:7"},
	{"CVE-2023-44487", "GHSA-qppj-fm5r-hxr3", "golang.org/x/net", "v0.15.0", "v0.17.0", vigilv1alpha1.SeverityHigh, 7.5,
		[]string{"infra/DaemonSet/log-shipper/shipper"}, "registry.example/infra/log-shipper:3.1"},
	{"CVE-2023-4911", "", "libc6", "2.36-9+deb12u1", "2.36-9+deb12u3", vigilv1alpha1.SeverityHigh, 7.8,
		[]string{"shop/StatefulSet/db/postgres"}, "registry.example/shop/db:15"},
	{"CVE-2022-25883", "GHSA-c2qf-rxjj-qqgw", "semver", "7.3.7", "7.5.2", vigilv1alpha1.SeverityMedium, 5.3,
		[]string{"web/Deployment/storefront/node"}, "registry.example/web/storefront:7"},
}

// createCatalogue creates the catalogue's Vulnerabilities, as the findings reconciler would,
// and deletes them when the test ends.
func createCatalogue(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	detected := metav1.NewTime(time.Now().Add(-3 * time.Minute).Truncate(time.Second))
	for _, c := range catalogue {
		details := vigilv1alpha1.VulnerabilityDetails{
			ID: c.id, Severity: c.severity, SeverityRank: c.severity.Rank(), Score: ptr.To(c.score),
			CVSS:           []vigilv1alpha1.CVSS{{Source: "nvd@nist.gov", Version: "3.1", BaseScore: c.score, Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}},
			Description:    "Advisory " + c.id + " in " + c.pkg + ".",
			Links:          []string{"https://nvd.nist.gov/vuln/detail/" + c.id},
			PackageSummary: c.pkg + " " + c.installed, FixedInSummary: c.fixed,
			Packages: []vigilv1alpha1.VulnerablePackage{{Name: c.pkg, Installed: c.installed, FixedIn: []string{c.fixed}, FixState: vigilv1alpha1.FixStateFixed}},
		}
		details.Rank = vigilv1alpha1.RankOf(c.severity, details.Score)
		if c.alias != "" {
			details.Aliases = []string{c.alias}
		}
		v := &vigilv1alpha1.Vulnerability{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.VulnerabilityName(c.id), Labels: details.Labels()}}
		g.Expect(env.Client.Create(ctx, v)).To(Succeed())
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), v) })
		v.Status.Details = details
		v.Status.Images = []vigilv1alpha1.AffectedImage{{Image: c.image, Digest: "sha256:" + strings.Repeat("7", 64)}}
		v.Status.ImageCount = 1
		for _, w := range c.workloads {
			parts := strings.Split(w, "/")
			v.Status.Workloads = append(v.Status.Workloads, vigilv1alpha1.AffectedWorkload{
				Namespace: parts[0], Kind: parts[1], Name: parts[2], Container: parts[3], Digest: "sha256:" + strings.Repeat("7", 64), LastDetected: detected,
			})
		}
		v.Status.WorkloadCount = int32(len(v.Status.Workloads))
		g.Expect(env.Client.Status().Update(ctx, v)).To(Succeed())
	}
}

// typeInto empties the field of id and types text into it, as a user does.
func typeInto(ctx context.Context, id, text string) error {
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("`+id+`").value = ""`)); err != nil {
		return err
	}
	return chromedp.Do(ctx, chromedp.SendKeys("#"+id, text))
}

// traverseHistory goes delta entries back (negative) or forward in the tab's history, as the
// browser's buttons do. It does not wait for a load: the dashboard's own entries are one
// document, which follows them without loading a page.
func traverseHistory(ctx context.Context, delta int) error {
	return chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		history, err := cdp.Call(ctx, t, page.GetNavigationHistory, cdp.Empty{})
		if err != nil {
			return err
		}
		index := int(history.CurrentIndex) + delta
		if index < 0 || index >= len(history.Entries) {
			return fmt.Errorf("no history entry %d from entry %d of %d", delta, history.CurrentIndex, len(history.Entries))
		}
		_, err = cdp.Call(ctx, t, page.NavigateToHistoryEntry, page.NavigateToHistoryEntryParams{EntryID: history.Entries[index].ID})
		return err
	}))
}

// showsRows waits until the list shows exactly want, in order; the page follows the server
// within milliseconds, but a busy CI machine can hold the browser for seconds.
func showsRows(g Gomega, ctx context.Context, want ...string) {
	g.Eventually(func() ([]string, error) { return rows(ctx) }, 20*time.Second, 50*time.Millisecond).WithOffset(1).Should(Equal(want))
}

func TestAUserFindsSearchesAndFiltersVulnerabilitiesInTheBrowser(t *testing.T) {
	env.Isolate(t)
	g := NewWithT(t)
	createCatalogue(t)
	ctx := newTab(t)

	// The list opens sorted by severity, then by CVSS score.
	g.Expect(chromedp.Do(ctx, chromedp.Navigate(dashboardURL+"/"), chromedp.WaitVisible("table.vulns"))).To(Succeed())
	showsRows(g, ctx, "CVE-2022-22965", "CVE-2022-42889", "CVE-2019-10744", "CVE-2023-4911", "CVE-2023-44487", "CVE-2022-25883")
	g.Expect(chromedp.Run(ctx, chromedp.Text(`[data-count="critical"]`))).To(Equal("3"))
	screenshot(t, ctx, "list")

	// A GHSA alias finds the CVE it is recorded under; the URL keeps the search.
	g.Expect(chromedp.Do(ctx, chromedp.SendKeys("#q", "ghsa-599f"))).To(Succeed())
	showsRows(g, ctx, "CVE-2022-42889")
	location, err := chromedp.Run(ctx, chromedp.Location())
	g.Expect(err).NotTo(HaveOccurred())
	parsed, err := url.Parse(location)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed.Query().Get("q")).To(Equal("ghsa-599f"))

	// A package name finds its vulnerabilities.
	g.Expect(typeInto(ctx, "q", "lodash")).To(Succeed())
	showsRows(g, ctx, "CVE-2019-10744")

	// Critical and High with a CVSS score of 9 or more: exactly those.
	g.Expect(typeInto(ctx, "q", " ")).To(Succeed())
	showsRows(g, ctx, "CVE-2022-22965", "CVE-2022-42889", "CVE-2019-10744", "CVE-2023-4911", "CVE-2023-44487", "CVE-2022-25883")
	g.Expect(chromedp.Do(ctx, chromedp.Click(`label[for="sev-high"]`))).To(Succeed())
	showsRows(g, ctx, "CVE-2023-4911", "CVE-2023-44487")
	g.Expect(chromedp.Do(ctx, chromedp.Click(`label[for="sev-critical"]`))).To(Succeed())
	showsRows(g, ctx, "CVE-2022-22965", "CVE-2022-42889", "CVE-2019-10744", "CVE-2023-4911", "CVE-2023-44487")

	// The back button returns to the previous filters, and forward comes back.
	checkedChips := func() ([]string, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("input.chip:checked")].map(c => c.value)`))
	}
	g.Expect(traverseHistory(ctx, -1)).To(Succeed())
	showsRows(g, ctx, "CVE-2023-4911", "CVE-2023-44487")
	g.Eventually(checkedChips).Should(Equal([]string{"high"}))
	g.Expect(traverseHistory(ctx, +1)).To(Succeed())
	showsRows(g, ctx, "CVE-2022-22965", "CVE-2022-42889", "CVE-2019-10744", "CVE-2023-4911", "CVE-2023-44487")
	g.Eventually(checkedChips).Should(Equal([]string{"critical", "high"}))

	g.Expect(chromedp.Do(ctx, chromedp.WaitVisible("#cvss-min"), chromedp.SendKeys("#cvss-min", "9.5"))).To(Succeed())
	showsRows(g, ctx, "CVE-2022-22965", "CVE-2022-42889")
	g.Expect(typeInto(ctx, "cvss-min", "7.6")).To(Succeed())
	showsRows(g, ctx, "CVE-2022-22965", "CVE-2022-42889", "CVE-2019-10744", "CVE-2023-4911")
	screenshot(t, ctx, "list-filtered")

	// The filtered URL is shareable: opened afresh, it shows the same list and the same form.
	location, err = chromedp.Run(ctx, chromedp.Location())
	g.Expect(err).NotTo(HaveOccurred())
	other := newTab(t)
	g.Expect(chromedp.Do(other, chromedp.Navigate(location), chromedp.WaitVisible("table.vulns"))).To(Succeed())
	showsRows(g, other, "CVE-2022-22965", "CVE-2022-42889", "CVE-2019-10744", "CVE-2023-4911")
	g.Expect(chromedp.Run(other, chromedp.Evaluate[[]string](`[...document.querySelectorAll("input.chip:checked")].map(c => c.value)`))).
		To(Equal([]string{"critical", "high"}))
	g.Expect(chromedp.Run(other, chromedp.Evaluate[string](`document.getElementById("cvss-min").value`))).To(Equal("7.6"))

	// The column chooser adds EPSS.
	g.Expect(chromedp.Do(ctx, chromedp.Click("details.columns summary"), chromedp.Click(`label[for="col-epss"]`),
		chromedp.WaitVisible(`//th[.//a[text()="EPSS"]]`))).To(Succeed())
}

func TestTheDetailPageShowsTheThreeSectionsInOrder(t *testing.T) {
	env.Isolate(t)
	g := NewWithT(t)
	createCatalogue(t)
	ctx := newTab(t)

	// The list's row leads to the detail page.
	g.Expect(chromedp.Do(ctx, chromedp.Navigate(dashboardURL+"/?q=spring-beans"), chromedp.WaitVisible("table.vulns"),
		chromedp.Click(`tr[data-id="CVE-2022-22965"] a`), chromedp.WaitVisible("#workloads"))).To(Succeed())
	g.Expect(chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("main h2")].map(h => h.firstChild.textContent.trim())`))).
		To(Equal([]string{"Vulnerability", "Images", "Workloads"}))
	g.Expect(chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#workloads tbody tr")].map(r => r.dataset.workload)`))).
		To(ConsistOf("shop/Deployment/orders", "shop/Deployment/billing"))
	vulnerabilityText, err := chromedp.Run(ctx, chromedp.Text("#vulnerability"))
	g.Expect(err).NotTo(HaveOccurred())
	imagesText, err := chromedp.Run(ctx, chromedp.Text("#images"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(vulnerabilityText).To(ContainSubstring("GHSA-36p3-wjmg-h94x"))
	g.Expect(vulnerabilityText).To(ContainSubstring("spring-beans"))
	g.Expect(vulnerabilityText).To(ContainSubstring("5.3.18"))
	g.Expect(imagesText).To(ContainSubstring("registry.example/shop/orders:2.6"))
	screenshot(t, ctx, "detail")

	// An alias leads to the same page.
	g.Expect(chromedp.Do(ctx, chromedp.Navigate(dashboardURL+"/vulnerabilities/GHSA-36p3-wjmg-h94x"))).To(Succeed())
	g.Expect(chromedp.Run(ctx, chromedp.Text("h1"))).To(HavePrefix("CVE-2022-22965"))
}
