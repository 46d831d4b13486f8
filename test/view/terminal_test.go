package view

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/vigil-dev/vigil/cmd/vigil/app"
	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// vigil runs the vigil command with the test admin's kubeconfig, as a user would.
func vigil(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = app.Main(append(args, "--kubeconfig", env.KubeconfigPath), &out, &errOut)
	return code, out.String(), errOut.String()
}

// firstColumn is the first column of a table's rows, under its header.
func firstColumn(table string) []string {
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(table), "\n")[1:] {
		ids = append(ids, strings.Fields(line)[0])
	}
	return ids
}

func TestAUserFindsVulnerabilitiesInTheTerminal(t *testing.T) {
	env.Isolate(t)
	g := NewWithT(t)
	createCatalogue(t)

	// The most severe first, then by CVSS score.
	code, out, errOut := vigil("vulns")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(firstColumn(out)).To(Equal([]string{"CVE-2022-22965", "CVE-2022-42889", "CVE-2019-10744", "CVE-2023-4911", "CVE-2023-44487", "CVE-2022-25883"}))
	g.Expect(out).To(HavePrefix("ID "))

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"a GHSA alias", []string{"vulns", "--search", "GHSA-599F-7c49-w659"}, []string{"CVE-2022-42889"}},
		{"a package name, as the argument", []string{"vulns", "lodash"}, []string{"CVE-2019-10744"}},
		{"critical and high with CVSS 9 or more", []string{"vulns", "--severity", "critical,high", "--min-cvss", "9"}, []string{"CVE-2022-22965", "CVE-2022-42889", "CVE-2019-10744"}},
		{"a namespace", []string{"vulns", "-n", "web"}, []string{"CVE-2019-10744", "CVE-2022-25883"}},
		{"an image", []string{"vulns", "--image", "shop/db"}, []string{"CVE-2023-4911"}},
		{"by name", []string{"vulns", "--sort", "name", "--severity", "high"}, []string{"CVE-2023-44487", "CVE-2023-4911"}},
		{"one workload", []string{"workload", "shop/Deployment/billing"}, []string{"CVE-2022-22965", "CVE-2022-42889"}},
		{"one workload in the namespace of -n", []string{"workload", "-n", "infra", "DaemonSet/log-shipper"}, []string{"CVE-2023-44487"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			code, out, errOut := vigil(tc.args...)
			g.Expect(code).To(Equal(0), errOut)
			g.Expect(firstColumn(out)).To(Equal(tc.want))
		})
	}

	// CSV and JSON hold the same list.
	code, out, errOut = vigil("vulns", "--severity", "critical", "-o", "csv")
	g.Expect(code).To(Equal(0), errOut)
	records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(records).To(HaveLen(4))
	g.Expect(records[1][0]).To(Equal("CVE-2022-22965"))
	code, out, errOut = vigil("vulns", "--search", "semver", "-o", "json")
	g.Expect(code).To(Equal(0), errOut)
	list := &vigilv1alpha1.VulnerabilityList{}
	g.Expect(json.Unmarshal([]byte(out), list)).To(Succeed())
	g.Expect(list.Items).To(HaveLen(1))
	g.Expect(list.Items[0].Status.Details.ID).To(Equal("CVE-2022-25883"))

	// kubectl users get the FIXABLE column and the label to select by.
	table, err := env.Kubectl(t.Context(), "get", "vulnerabilities", "-l", vigilv1alpha1.FixableLabel+"=true", "--sort-by=.status.details.rank")
	g.Expect(err).NotTo(HaveOccurred(), table)
	g.Expect(strings.Fields(strings.SplitN(table, "\n", 2)[0])).To(ContainElement("FIXABLE"))
	g.Expect(table).To(MatchRegexp(`cve-2022-22965\s+CVE-2022-22965\s+Critical\s+9.8\s+spring-beans 5.3.17\s+5.3.18\s+true\s+2`))

	// One vulnerability, found by its alias: three sections in reading order.
	code, out, errOut = vigil("vuln", "GHSA-36p3-wjmg-h94x")
	g.Expect(code).To(Equal(0), errOut)
	g.Expect(out).To(HavePrefix("CVE-2022-22965  Critical  CVSS 9.8"))
	vulnerability, images, workloads := strings.Index(out, "\nVULNERABILITY"), strings.Index(out, "\nIMAGES (1)"), strings.Index(out, "\nWORKLOADS (2)")
	g.Expect([]int{vulnerability, images, workloads}).To(HaveEach(BeNumerically(">", 0)))
	g.Expect(vulnerability < images && images < workloads).To(BeTrue(), out)
	g.Expect(out[vulnerability:images]).To(ContainSubstring("spring-beans"))
	g.Expect(out[vulnerability:images]).To(ContainSubstring("5.3.18"))
	g.Expect(out[images:workloads]).To(ContainSubstring("registry.example/shop/orders:2.6"))
	g.Expect(out[workloads:]).To(MatchRegexp(`shop\s+Deployment\s+orders\s+app`))
	g.Expect(out[workloads:]).To(MatchRegexp(`shop\s+Deployment\s+billing\s+app`))
}

func TestTheTerminalExplainsWhatItCannotDo(t *testing.T) {
	env.Isolate(t)
	createCatalogue(t)
	tests := []struct {
		name string
		args []string
		says string
	}{
		{"a vulnerability that does not run", []string{"vuln", "CVE-1999-0001"}, "CVE-1999-0001 does not run in the cluster now"},
		{"a user without RBAC", []string{"vulns", "--as", "mallory"}, `"mallory" cannot list resource "vulnerabilities"`},
		{"a user without RBAC, one vulnerability", []string{"vuln", "CVE-2022-22965", "--as", "mallory"}, `cannot get resource "vulnerabilities"`},
		{"a bad severity", []string{"vulns", "--severity", "urgent"}, `"urgent" is not a severity`},
		{"a bad CVSS range", []string{"vulns", "--min-cvss", "9", "--max-cvss", "7"}, "the minimum CVSS score 9 is above the maximum 7"},
		{"a bad workload", []string{"workload", "api"}, "write NAMESPACE/KIND/NAME"},
		{"a bad output", []string{"vulns", "-o", "xml"}, `--output "xml"`},
		{"the dashboard on a public address", []string{"dashboard", "--address", "0.0.0.0", "--no-browser"}, "listens on a loopback address only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			code, out, errOut := vigil(tc.args...)
			g.Expect(code).To(Equal(1))
			g.Expect(errOut).To(ContainSubstring(tc.says))
			g.Expect(strings.Count(strings.TrimSpace(errOut), "\n")).To(BeZero(), "the error takes one line")
			g.Expect(out).NotTo(ContainSubstring("CVE-2022-22965"))
		})
	}
}
