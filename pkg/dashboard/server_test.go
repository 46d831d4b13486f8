package dashboard

import (
	"context"
	"encoding/csv"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

func vulnerability(id string, severity vigilv1alpha1.Severity, score float64, pkg, namespace, workload string) *vigilv1alpha1.Vulnerability {
	v := &vigilv1alpha1.Vulnerability{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.VulnerabilityName(id)}}
	v.Status.Details = vigilv1alpha1.VulnerabilityDetails{
		ID: id, Severity: severity, Score: ptr.To(score), PackageSummary: pkg + " 1.0",
		Packages: []vigilv1alpha1.VulnerablePackage{{Name: pkg, Installed: "1.0"}},
		Links:    []string{"https://nvd.nist.gov/vuln/detail/" + id, "javascript:alert(1)"},
	}
	v.Status.Workloads = []vigilv1alpha1.AffectedWorkload{{Namespace: namespace, Kind: "Deployment", Name: workload, Container: "app", LastDetected: metav1.NewTime(time.Now())}}
	v.Status.WorkloadCount = 1
	return v
}

func testServer(t *testing.T, authorizer Authorizer) *Server {
	t.Helper()
	s, err := newServer(authorizer)
	if err != nil {
		t.Fatal(err)
	}
	log4shell := vulnerability("CVE-2021-44228", vigilv1alpha1.SeverityCritical, 10, "log4j-core", "shop", "api")
	log4shell.Status.Details.Aliases = []string{"GHSA-jfh8-c2jp-5v3q"}
	s.store.set(log4shell)
	s.store.set(vulnerability("CVE-2023-0286", vigilv1alpha1.SeverityHigh, 7.4, "libssl3", "shop", "db"))
	s.store.set(vulnerability("GHSA-xvch-5gv4-984h", vigilv1alpha1.SeverityCritical, 9.8, "minimist", "jobs", "report"))
	s.store.set(vulnerability("CVE-2024-0001", vigilv1alpha1.SeverityLow, 3.1, "<script>alert(1)</script>", "tools", "lint"))
	return s
}

func get(s http.Handler, target string, header ...string) (*http.Response, string) {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Host = "localhost:50760"
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			r.Host = header[i+1]
		} else {
			r.Header.Set(header[i], header[i+1])
		}
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Result().Body)
	return w.Result(), string(body)
}

// rows are the vulnerability IDs of a rendered list, in order.
func rows(body string) []string {
	var ids []string
	for _, part := range strings.Split(body, `data-id="`)[1:] {
		ids = append(ids, part[:strings.IndexByte(part, '"')])
	}
	return ids
}

func TestList(t *testing.T) {
	s := testServer(t, nil)
	tests := []struct {
		name   string
		target string
		status int
		want   []string
		says   string
	}{
		{"the default order", "/", 200, []string{"CVE-2021-44228", "GHSA-xvch-5gv4-984h", "CVE-2023-0286", "CVE-2024-0001"}, "<strong>4</strong> vulnerabilities"},
		{"a GHSA alias", "/?q=ghsa-jfh8", 200, []string{"CVE-2021-44228"}, "<strong>1</strong> vulnerability"},
		{"a package", "/?q=libssl", 200, []string{"CVE-2023-0286"}, ""},
		{"severity and CVSS", "/?severity=critical&severity=high&cvss-min=9", 200, []string{"CVE-2021-44228", "GHSA-xvch-5gv4-984h"}, ""},
		{"a namespace", "/?namespace=shop", 200, []string{"CVE-2021-44228", "CVE-2023-0286"}, ""},
		{"a page", "/?per-page=2&page=2", 200, []string{"CVE-2023-0286", "CVE-2024-0001"}, "Page 2 of 2"},
		{"the results alone", "/?partial=results&q=minimist", 200, []string{"GHSA-xvch-5gv4-984h"}, ""},
		{"a bad filter is explained", "/?cvss-min=11", 400, nil, "the minimum CVSS score must be from 0 to 10"},
		{"markup from a scanned image is escaped", "/?q=script", 200, []string{"CVE-2024-0001"}, "&lt;script&gt;alert(1)&lt;/script&gt;"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			response, body := get(s, tc.target)
			if response.StatusCode != tc.status {
				t.Fatalf("GET %s = %d, want %d", tc.target, response.StatusCode, tc.status)
			}
			if got := rows(body); !slices.Equal(got, tc.want) {
				t.Errorf("GET %s lists %v, want %v", tc.target, got, tc.want)
			}
			if !strings.Contains(body, tc.says) {
				t.Errorf("GET %s does not say %q", tc.target, tc.says)
			}
			if strings.Contains(body, "<script>alert") {
				t.Errorf("GET %s wrote markup from a package name", tc.target)
			}
		})
	}
}

func TestDetail(t *testing.T) {
	s := testServer(t, nil)
	response, body := get(s, "/vulnerabilities/cve-2021-44228")
	if response.StatusCode != 200 {
		t.Fatalf("GET the detail = %d", response.StatusCode)
	}
	var order []int
	for _, section := range []string{`id="vulnerability"`, `id="images"`, `id="workloads"`} {
		order = append(order, strings.Index(body, section))
	}
	if slices.Contains(order, -1) || !slices.IsSorted(order) {
		t.Errorf("the detail's sections are not vulnerability, images, workloads in that order: %v", order)
	}
	if !strings.Contains(body, `data-workload="shop/Deployment/api"`) {
		t.Errorf("the detail does not list the workload shop/Deployment/api")
	}
	if strings.Contains(body, `href="javascript:`) {
		t.Errorf("the detail links a javascript: URL")
	}
	response, _ = get(s, "/vulnerabilities/GHSA-jfh8-c2jp-5v3q")
	if response.StatusCode != http.StatusFound || response.Header.Get("Location") != "/vulnerabilities/cve-2021-44228" {
		t.Errorf("an alias leads to %d %q, want a redirect to the vulnerability", response.StatusCode, response.Header.Get("Location"))
	}
	response, body = get(s, "/vulnerabilities/cve-1999-0001")
	if response.StatusCode != http.StatusNotFound || !strings.Contains(body, "does not run in the cluster now") {
		t.Errorf("a vulnerability that does not run = %d", response.StatusCode)
	}
}

func TestCSV(t *testing.T) {
	s := testServer(t, nil)
	response, body := get(s, "/vulnerabilities.csv?severity=critical&page=2&per-page=1")
	if response.StatusCode != 200 || !strings.HasPrefix(response.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("GET the CSV = %d %s", response.StatusCode, response.Header.Get("Content-Type"))
	}
	records, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, record := range records[1:] {
		ids = append(ids, record[0])
	}
	if want := []string{"CVE-2021-44228", "GHSA-xvch-5gv4-984h"}; !slices.Equal(ids, want) {
		t.Errorf("the CSV lists %v, want every page of the filtered list: %v", ids, want)
	}
}

func TestLocalDashboardAnswersLoopbackHostsOnly(t *testing.T) {
	s := testServer(t, nil)
	tests := []struct {
		host   string
		status int
	}{
		{"localhost:50760", 200},
		{"127.0.0.1:50760", 200},
		{"[::1]:50760", 200},
		{"LOCALHOST", 200},
		{"attacker.example:50760", http.StatusMisdirectedRequest},
		{"127.0.0.1.nip.io:50760", http.StatusMisdirectedRequest},
		{"", http.StatusMisdirectedRequest},
	}
	for _, tc := range tests {
		response, _ := get(s, "/", "Host", tc.host)
		if response.StatusCode != tc.status {
			t.Errorf("GET / with Host %q = %d, want %d", tc.host, response.StatusCode, tc.status)
		}
		if response.Header.Get("Content-Security-Policy") == "" || response.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET / with Host %q has no security headers", tc.host)
		}
	}
}

// fakeAuthorizer allows the token "reader", knows "stranger" but does not allow it, and fails
// on "broken".
type fakeAuthorizer struct{}

func (fakeAuthorizer) Authorize(_ context.Context, token string) (string, bool, error) {
	switch token {
	case "reader":
		return "alice", true, nil
	case "stranger":
		return "bob", false, nil
	case "broken":
		return "", false, errors.New("the API server is down")
	}
	return "", false, nil
}

func TestInClusterDashboardAsksForAnAllowedToken(t *testing.T) {
	s := testServer(t, fakeAuthorizer{})
	tests := []struct {
		name   string
		target string
		header []string
		status int
	}{
		{"no token: the login page", "/", nil, http.StatusSeeOther},
		{"no token on the event stream", "/events", nil, http.StatusUnauthorized},
		{"no token on the CSV", "/vulnerabilities.csv", nil, http.StatusUnauthorized},
		{"a token nobody has", "/", []string{"Authorization", "Bearer forged"}, http.StatusUnauthorized},
		{"a token of someone who may not list vulnerabilities", "/", []string{"Authorization", "Bearer stranger"}, http.StatusForbidden},
		{"the API server cannot answer", "/", []string{"Authorization", "Bearer broken"}, http.StatusServiceUnavailable},
		{"an allowed token", "/", []string{"Authorization", "Bearer reader"}, http.StatusOK},
		{"an allowed token in the login cookie", "/vulnerabilities/cve-2021-44228", []string{"Cookie", tokenCookie + "=reader"}, http.StatusOK},
		{"an allowed token, any host", "/", []string{"Authorization", "Bearer reader", "Host", "vigil-dashboard.vigil-system.svc"}, http.StatusOK},
		{"the login page needs no token", "/login", nil, http.StatusOK},
		{"the probe needs no token", "/healthz", nil, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			response, body := get(s, tc.target, tc.header...)
			if response.StatusCode != tc.status {
				t.Errorf("GET %s = %d, want %d", tc.target, response.StatusCode, tc.status)
			}
			if tc.status != http.StatusOK && strings.Contains(body, "CVE-2021-44228") {
				t.Errorf("GET %s refused but showed a vulnerability", tc.target)
			}
		})
	}
}
