package view

import (
	"bytes"
	"encoding/csv"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

var detected = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

type fixture struct {
	id        string
	severity  vigilv1alpha1.Severity
	score     *float64
	epss      *float64
	kev       bool
	aliases   []string
	packages  []vigilv1alpha1.VulnerablePackage
	images    []string
	workloads []string // namespace/kind/name
	minutes   int      // last detected, minutes after detected
	text      string
}

func (f fixture) entry() *Entry {
	v := &vigilv1alpha1.Vulnerability{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.VulnerabilityName(f.id)}}
	v.Status.Details = vigilv1alpha1.VulnerabilityDetails{
		ID: f.id, Severity: f.severity, Score: f.score, KnownExploited: f.kev, Aliases: f.aliases, Packages: f.packages,
		Description: f.text, Links: []string{"https://nvd.nist.gov/vuln/detail/" + f.id},
	}
	if f.epss != nil {
		v.Status.Details.EPSS = &vigilv1alpha1.EPSS{Score: *f.epss}
	}
	for _, image := range f.images {
		v.Status.Images = append(v.Status.Images, vigilv1alpha1.AffectedImage{Image: image, Digest: "sha256:" + strings.Repeat("a", 64)})
	}
	for _, w := range f.workloads {
		parts := strings.Split(w, "/")
		v.Status.Workloads = append(v.Status.Workloads, vigilv1alpha1.AffectedWorkload{
			Namespace: parts[0], Kind: parts[1], Name: parts[2], Container: "app",
			LastDetected: metav1.NewTime(detected.Add(time.Duration(f.minutes) * time.Minute)),
		})
	}
	v.Status.ImageCount, v.Status.WorkloadCount = int32(len(f.images)), int32(len(f.workloads))
	return NewEntry(v)
}

func pkg(name, installed string, fixedIn ...string) vigilv1alpha1.VulnerablePackage {
	p := vigilv1alpha1.VulnerablePackage{Name: name, Installed: installed, FixedIn: fixedIn, FixState: vigilv1alpha1.FixStateNotFixed}
	if len(fixedIn) > 0 {
		p.FixState = vigilv1alpha1.FixStateFixed
	}
	return p
}

// sample is a small cluster's view, in no particular order.
func sample() []*Entry {
	fixtures := []fixture{
		{id: "CVE-2023-0286", severity: vigilv1alpha1.SeverityHigh, score: ptr.To(7.4), epss: ptr.To(0.02),
			aliases: []string{"DSA-5343-1"}, packages: []vigilv1alpha1.VulnerablePackage{pkg("libssl3", "3.0.7-1", "3.0.8-1")},
			images: []string{"registry.example/shop/db:15"}, workloads: []string{"shop/StatefulSet/db"}, minutes: 3,
			text: "X.400 address type confusion in X.509 GeneralName"},
		{id: "CVE-2021-44228", severity: vigilv1alpha1.SeverityCritical, score: ptr.To(10.0), epss: ptr.To(0.97), kev: true,
			aliases: []string{"GHSA-jfh8-c2jp-5v3q"}, packages: []vigilv1alpha1.VulnerablePackage{pkg("log4j-core", "2.14.1", "2.15.0")},
			images: []string{"registry.example/shop/api:1.4"}, workloads: []string{"shop/Deployment/api", "jobs/CronJob/report"}, minutes: 1,
			text: "Apache Log4j2 JNDI features do not protect against attacker controlled LDAP"},
		{id: "GHSA-xvch-5gv4-984h", severity: vigilv1alpha1.SeverityCritical, score: ptr.To(9.8), epss: ptr.To(0.01),
			aliases: []string{"CVE-2021-44906"}, packages: []vigilv1alpha1.VulnerablePackage{pkg("minimist", "0.0.8", "1.2.6")},
			images: []string{"registry.example/jobs/report:2"}, workloads: []string{"jobs/CronJob/report"}, minutes: 5,
			text: "Prototype Pollution in minimist"},
		{id: "CVE-2020-14343", severity: vigilv1alpha1.SeverityCritical, score: ptr.To(9.8),
			packages: []vigilv1alpha1.VulnerablePackage{pkg("PyYAML", "5.3.1", "5.4")},
			images:   []string{"registry.example/tools/yaml-lint:1"}, workloads: []string{"tools/Pod/yaml-lint"}, minutes: 2,
			text: "A vulnerability was discovered in the PyYAML library"},
		{id: "CVE-2022-32149", severity: vigilv1alpha1.SeverityHigh, score: ptr.To(7.5),
			packages: []vigilv1alpha1.VulnerablePackage{pkg("golang.org/x/text", "v0.3.7")},
			images:   []string{"registry.example/tools/greeter:1"}, workloads: []string{"tools/Pod/greeter", "shop/Deployment/api", "jobs/CronJob/report"},
			text: "An attacker may cause a denial of service by crafting an Accept-Language header"},
		{id: "CVE-2019-1010022", severity: vigilv1alpha1.SeverityNegligible,
			packages: []vigilv1alpha1.VulnerablePackage{pkg("libc6", "2.36-9")}, images: []string{"registry.example/shop/db:15"},
			workloads: []string{"shop/StatefulSet/db"}, minutes: 4, text: "GNU Libc stack guard protection bypass"},
	}
	entries := make([]*Entry, len(fixtures))
	for i, f := range fixtures {
		entries[i] = f.entry()
	}
	return entries
}

func ids(entries []*Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.ID()
	}
	return out
}

func TestRun(t *testing.T) {
	tests := []struct {
		name  string
		query Query
		want  []string
	}{
		{"the default order is by severity, then the highest CVSS score first, then the ID",
			Query{}, []string{"CVE-2021-44228", "CVE-2020-14343", "GHSA-xvch-5gv4-984h", "CVE-2022-32149", "CVE-2023-0286", "CVE-2019-1010022"}},
		{"search by ID, in any case", Query{Search: "cve-2021-44228"}, []string{"CVE-2021-44228"}},
		{"search by a GHSA alias", Query{Search: "GHSA-JFH8"}, []string{"CVE-2021-44228"}},
		{"search by a distribution advisory", Query{Search: "dsa-5343"}, []string{"CVE-2023-0286"}},
		{"search by package name", Query{Search: "minimist"}, []string{"GHSA-xvch-5gv4-984h"}},
		{"search by package name, in any case", Query{Search: "pyyaml"}, []string{"CVE-2020-14343"}},
		{"search in the description", Query{Search: "denial of service"}, []string{"CVE-2022-32149"}},
		{"search that matches nothing", Query{Search: "openssh"}, nil},
		{"one severity", Query{Severities: []vigilv1alpha1.Severity{vigilv1alpha1.SeverityHigh}}, []string{"CVE-2022-32149", "CVE-2023-0286"}},
		{"critical and high with CVSS 9 or more",
			Query{Severities: []vigilv1alpha1.Severity{vigilv1alpha1.SeverityCritical, vigilv1alpha1.SeverityHigh}, MinCVSS: ptr.To(9.0)},
			[]string{"CVE-2021-44228", "CVE-2020-14343", "GHSA-xvch-5gv4-984h"}},
		{"a CVSS range includes both ends", Query{MinCVSS: ptr.To(7.4), MaxCVSS: ptr.To(9.8)},
			[]string{"CVE-2020-14343", "GHSA-xvch-5gv4-984h", "CVE-2022-32149", "CVE-2023-0286"}},
		{"a CVSS bound leaves out what has no score", Query{MaxCVSS: ptr.To(7.4)}, []string{"CVE-2023-0286"}},
		{"a namespace", Query{Namespace: "tools"}, []string{"CVE-2020-14343", "CVE-2022-32149"}},
		{"a workload kind in any case", Query{WorkloadKind: "cronjob"}, []string{"CVE-2021-44228", "GHSA-xvch-5gv4-984h", "CVE-2022-32149"}},
		{"a workload", Query{Namespace: "shop", WorkloadKind: "Deployment", WorkloadName: "api"}, []string{"CVE-2021-44228", "CVE-2022-32149"}},
		{"namespace and name must be the same workload's", Query{Namespace: "jobs", WorkloadName: "api"}, nil},
		{"an image by reference", Query{Image: "shop/db"}, []string{"CVE-2023-0286", "CVE-2019-1010022"}},
		{"fixable only", Query{Fixable: true}, []string{"CVE-2021-44228", "CVE-2020-14343", "GHSA-xvch-5gv4-984h", "CVE-2023-0286"}},
		{"known exploited only", Query{KnownExploited: true}, []string{"CVE-2021-44228"}},
		{"by CVSS", Query{Sort: SortCVSS}, []string{"CVE-2021-44228", "CVE-2020-14343", "GHSA-xvch-5gv4-984h", "CVE-2022-32149", "CVE-2023-0286", "CVE-2019-1010022"}},
		{"by EPSS, then the default order", Query{Sort: SortEPSS}, []string{"CVE-2021-44228", "CVE-2023-0286", "GHSA-xvch-5gv4-984h", "CVE-2020-14343", "CVE-2022-32149", "CVE-2019-1010022"}},
		{"by workloads", Query{Sort: SortWorkloads}, []string{"CVE-2022-32149", "CVE-2021-44228", "CVE-2020-14343", "GHSA-xvch-5gv4-984h", "CVE-2023-0286", "CVE-2019-1010022"}},
		{"by name", Query{Sort: SortName}, []string{"CVE-2019-1010022", "CVE-2020-14343", "CVE-2021-44228", "CVE-2022-32149", "CVE-2023-0286", "GHSA-xvch-5gv4-984h"}},
		{"by last detected", Query{Sort: SortLastDetected}, []string{"GHSA-xvch-5gv4-984h", "CVE-2019-1010022", "CVE-2023-0286", "CVE-2020-14343", "CVE-2021-44228", "CVE-2022-32149"}},
		{"the first page", Query{PageSize: 4}, []string{"CVE-2021-44228", "CVE-2020-14343", "GHSA-xvch-5gv4-984h", "CVE-2022-32149"}},
		{"the last page", Query{PageSize: 4, Page: 2}, []string{"CVE-2023-0286", "CVE-2019-1010022"}},
		{"a page past the end", Query{PageSize: 4, Page: 3}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries := sample()
			before := ids(entries)
			got := ids(tc.query.Run(entries).Items)
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("Run() = %v, want %v", got, tc.want)
			}
			if !slices.Equal(ids(entries), before) {
				t.Errorf("Run() reordered its input")
			}
		})
	}
}

func TestRunCountsAndPages(t *testing.T) {
	tests := []struct {
		name         string
		query        Query
		total, pages int
		counts       vigilv1alpha1.SeverityCounts
	}{
		{"everything", Query{}, 6, 1, vigilv1alpha1.SeverityCounts{Critical: 3, High: 2, Negligible: 1}},
		{"counts ignore the severity filter, the total does not",
			Query{Severities: []vigilv1alpha1.Severity{vigilv1alpha1.SeverityHigh}}, 2, 1, vigilv1alpha1.SeverityCounts{Critical: 3, High: 2, Negligible: 1}},
		{"counts follow the other filters", Query{Namespace: "shop"}, 4, 1, vigilv1alpha1.SeverityCounts{Critical: 1, High: 2, Negligible: 1}},
		{"pages", Query{PageSize: 4}, 6, 2, vigilv1alpha1.SeverityCounts{Critical: 3, High: 2, Negligible: 1}},
		{"one empty page", Query{Search: "nothing like it", PageSize: 4}, 0, 1, vigilv1alpha1.SeverityCounts{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			result := tc.query.Run(sample())
			if result.Total != tc.total || result.Pages != tc.pages || result.Counts != tc.counts {
				t.Errorf("Run() = total %d, pages %d, counts %+v; want %d, %d, %+v", result.Total, result.Pages, result.Counts, tc.total, tc.pages, tc.counts)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    Query
		wantErr string
	}{
		{"nothing", "", Query{}, ""},
		{"every filter",
			"q=log4j&severity=critical&severity=High,low&cvss-min=9&cvss-max=10&namespace=shop&kind=Deployment&workload=api&image=shop/api&fixable=true&exploited=1&sort=EPSS&page=2&per-page=50",
			Query{Search: "log4j", Severities: []vigilv1alpha1.Severity{vigilv1alpha1.SeverityCritical, vigilv1alpha1.SeverityHigh, vigilv1alpha1.SeverityLow},
				MinCVSS: ptr.To(9.0), MaxCVSS: ptr.To(10.0), Namespace: "shop", WorkloadKind: "Deployment", WorkloadName: "api", Image: "shop/api",
				Fixable: true, KnownExploited: true, Sort: SortEPSS, Page: 2, PageSize: 50}, ""},
		{"empty parameters are ignored", "q=&cvss-min=&severity=&fixable=", Query{}, ""},
		{"a word that is no severity", "severity=urgent", Query{}, `"urgent" is not a severity`},
		{"a score that is no number", "cvss-min=high", Query{}, `cvss-min: "high" is not a number`},
		{"a score out of range", "cvss-max=11", Query{}, "the maximum CVSS score must be from 0 to 10, not 11"},
		{"NaN is out of range", "cvss-min=NaN", Query{}, "the minimum CVSS score must be from 0 to 10"},
		{"an empty range", "cvss-min=9&cvss-max=7", Query{}, "the minimum CVSS score 9 is above the maximum 7"},
		{"an unknown order", "sort=age", Query{}, `"age" is not an order`},
		{"a page size too large", "per-page=100000", Query{}, "the page size must be from 1 to 1000"},
		{"a page that is no number", "page=two", Query{}, `page: "two" is not a whole number`},
		{"a flag that is no boolean", "fixable=maybe", Query{}, `fixable: "maybe" is neither true nor false`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			values, err := url.ParseQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseValues(values)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseValues(%q) error = %v, want one that says %q", tc.raw, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseValues(%q) = %v", tc.raw, err)
			}
			if got.Values().Encode() != tc.want.Values().Encode() {
				t.Errorf("ParseValues(%q) = %+v, want %+v", tc.raw, got, tc.want)
			}
			// What Values writes, ParseValues reads back.
			again, err := ParseValues(got.Values())
			if err != nil || again.Values().Encode() != got.Values().Encode() {
				t.Errorf("ParseValues(Values()) = %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

func TestFindIn(t *testing.T) {
	tests := []struct{ id, want string }{
		{"CVE-2021-44228", "CVE-2021-44228"},
		{"cve-2021-44228", "CVE-2021-44228"},
		{"GHSA-jfh8-c2jp-5v3q", "CVE-2021-44228"},
		{"ghsa-JFH8-c2jp-5v3q", "CVE-2021-44228"},
		{"CVE-2021-44906", "GHSA-xvch-5gv4-984h"},
		{"DSA-5343-1", "CVE-2023-0286"},
		{"GHSA-jfh8", ""},
		{"CVE-1999-0001", ""},
	}
	for _, tc := range tests {
		got := ""
		if e := FindIn(sample(), tc.id); e != nil {
			got = e.ID()
		}
		if got != tc.want {
			t.Errorf("FindIn(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

func TestParseWorkload(t *testing.T) {
	tests := []struct {
		text    string
		want    Query
		wantErr bool
	}{
		{"shop/Deployment/api", Query{Namespace: "shop", WorkloadKind: "Deployment", WorkloadName: "api"}, false},
		{"Deployment/api", Query{Namespace: "default", WorkloadKind: "Deployment", WorkloadName: "api"}, false},
		{"api", Query{}, true},
		{"shop//api", Query{}, true},
		{"a/b/c/d", Query{}, true},
	}
	for _, tc := range tests {
		got, err := ParseWorkload(tc.text, "default")
		if (err != nil) != tc.wantErr || (err == nil && got.Values().Encode() != tc.want.Values().Encode()) {
			t.Errorf("ParseWorkload(%q) = %+v, %v; want %+v (error: %v)", tc.text, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestWriteCSV(t *testing.T) {
	hostile := fixture{id: "CVE-2024-0001", severity: vigilv1alpha1.SeverityLow, packages: []vigilv1alpha1.VulnerablePackage{
		pkg(`=HYPERLINK("https://attacker.example","x")`, "1.0"),
	}}.entry()
	entries := append(Query{Search: "log4j"}.Run(sample()).Items, hostile)
	var out bytes.Buffer
	if err := WriteCSV(&out, entries); err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatalf("WriteCSV wrote no valid CSV: %v", err)
	}
	want := [][]string{
		CSVHeader,
		{"CVE-2021-44228", "Critical", "10.0", "0.97", "true", "true", "log4j-core 2.14.1", "2.15.0", "GHSA-jfh8-c2jp-5v3q",
			"1", "2", "2026-11-29T10:01:00Z", "https://nvd.nist.gov/vuln/detail/CVE-2021-44228"},
		{"CVE-2024-0001", "Low", "", "", "false", "false", `'=HYPERLINK("https://attacker.example","x") 1.0`, "", "",
			"0", "0", "", "https://nvd.nist.gov/vuln/detail/CVE-2024-0001"},
	}
	if !slices.EqualFunc(records, want, slices.Equal) {
		t.Errorf("WriteCSV wrote\n%q\nwant\n%q", records, want)
	}
}

// BenchmarkRun measures the query layer alone over 5,000 entries: the default first page and a
// search.
//
//	go test ./pkg/view/ -run '^$' -bench Run
func BenchmarkRun(b *testing.B) {
	base := sample()
	entries := make([]*Entry, 0, 5000)
	for i := range 5000 {
		v := base[i%len(base)].Vulnerability.DeepCopy()
		v.Name = v.Name + "-" + strconv.Itoa(i)
		v.Status.Details.ID = v.Status.Details.ID + "-" + strconv.Itoa(i)
		v.Status.Details.Description = strings.Repeat(v.Status.Details.Description+" ", 8)
		entries = append(entries, NewEntry(v))
	}
	for _, bench := range []struct {
		name  string
		query Query
	}{
		{"first-page", Query{PageSize: 50}},
		{"search", Query{Search: "pyyaml", PageSize: 50}},
		{"critical-high-cvss9", Query{Severities: []vigilv1alpha1.Severity{vigilv1alpha1.SeverityCritical, vigilv1alpha1.SeverityHigh}, MinCVSS: ptr.To(9.0), PageSize: 50}},
	} {
		b.Run(bench.name, func(b *testing.B) {
			for b.Loop() {
				bench.query.Run(entries)
			}
		})
	}
}
