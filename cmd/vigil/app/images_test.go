package app

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// imageScans are three scanned images and one that failed: api has the most Critical, web ties
// db on Critical and wins on High, and failed has none.
func imageScans(scanned time.Time) []runtime.Object {
	scan := func(name, digest string, references []string, phase vigilv1alpha1.ImageScanPhase, sbom *vigilv1alpha1.SBOMSummary, counts vigilv1alpha1.SeverityCounts) *vigilv1alpha1.ImageScan {
		s := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name}}
		s.Spec.Digest = digest
		for _, reference := range references {
			s.Spec.References = append(s.Spec.References, vigilv1alpha1.ImageReference{Image: reference})
		}
		s.Status.Phase, s.Status.SBOM, s.Status.SeverityCounts = phase, sbom, counts
		if phase == vigilv1alpha1.ImageScanScanned {
			s.Status.ScanTime = &metav1.Time{Time: scanned}
		} else {
			s.Status.Conditions = []metav1.Condition{{Type: "Scanned", Status: metav1.ConditionFalse, Reason: "ImageNotFound"}}
		}
		return s
	}
	return []runtime.Object{
		scan("sha256-db", "sha256:dbdbdbdbdbdbdbdbdbdbdbdb", []string{"registry.example/shop/db:15"}, vigilv1alpha1.ImageScanScanned,
			&vigilv1alpha1.SBOMSummary{Distro: "debian 12", Packages: 120}, vigilv1alpha1.SeverityCounts{Critical: 1, High: 2, Low: 7}),
		scan("sha256-api", "sha256:apiapiapiapiapiapiapiapi", []string{"registry.example/shop/api:1.4", "registry.example/shop/api:latest"}, vigilv1alpha1.ImageScanScanned,
			&vigilv1alpha1.SBOMSummary{Distro: "alpine 3.19", Packages: 45}, vigilv1alpha1.SeverityCounts{Critical: 3, Medium: 1, Negligible: 4, Unknown: 2}),
		scan("sha256-failed", "sha256:fafafafafafafafafafafafa", []string{"registry.example/web/gone:1"}, vigilv1alpha1.ImageScanFailed, nil, vigilv1alpha1.SeverityCounts{}),
		scan("sha256-web", "sha256:webwebwebwebwebwebwebweb", []string{"registry.example/web/=cmd|calc:2"}, vigilv1alpha1.ImageScanScanned,
			&vigilv1alpha1.SBOMSummary{Packages: 300}, vigilv1alpha1.SeverityCounts{Critical: 1, High: 5}),
	}
}

func images(t *testing.T, search, output string) (stdout, stderr string) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := vigilv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	scanned := time.Now().Add(-3 * time.Hour)
	k8s := fake.NewClientBuilder().WithScheme(scheme).WithRuntimeObjects(imageScans(scanned)...).Build()
	var out, errOut bytes.Buffer
	if err := runImages(t.Context(), k8s, search, output, &out, &errOut); err != nil {
		t.Fatalf("vigil images %s -o %s: %v", search, output, err)
	}
	return out.String(), errOut.String()
}

func TestVigilImagesListsTheMostVulnerableFirstInEveryFormat(t *testing.T) {
	mostVulnerableFirst := []string{"registry.example/shop/api:1.4 (+1)", "registry.example/web/=cmd|calc:2", "registry.example/shop/db:15", "registry.example/web/gone:1"}
	tests := []struct {
		name, search, output string
		wantLines            []string // the table's lines, columns split on runs of spaces
	}{
		{name: "table", wantLines: []string{
			"IMAGE DIGEST PHASE PACKAGES CRITICAL HIGH MEDIUM LOW SCANNED",
			"registry.example/shop/api:1.4 (+1) sha256:apiapiapiapi Scanned 45 3 0 1 0 3h ago",
			"registry.example/web/=cmd|calc:2 sha256:webwebwebweb Scanned 300 1 5 0 0 3h ago",
			"registry.example/shop/db:15 sha256:dbdbdbdbdbdb Scanned 120 1 2 0 7 3h ago",
			"registry.example/web/gone:1 sha256:fafafafafafa Failed - 0 0 0 0 -",
		}},
		{name: "wide", output: "wide", wantLines: []string{
			"IMAGE DIGEST PHASE DISTRO PACKAGES CRITICAL HIGH MEDIUM LOW NEGLIGIBLE UNKNOWN SCANNED REASON",
			"registry.example/shop/api:1.4 (+1) sha256:apiapiapiapi Scanned alpine 3.19 45 3 0 1 0 4 2 3h ago -",
			"registry.example/web/=cmd|calc:2 sha256:webwebwebweb Scanned - 300 1 5 0 0 0 0 3h ago -",
			"registry.example/shop/db:15 sha256:dbdbdbdbdbdb Scanned debian 12 120 1 2 0 7 0 0 3h ago -",
			"registry.example/web/gone:1 sha256:fafafafafafa Failed - - 0 0 0 0 0 0 - ImageNotFound",
		}},
		{name: "a search by reference, any case", search: "SHOP/", wantLines: []string{
			"IMAGE DIGEST PHASE PACKAGES CRITICAL HIGH MEDIUM LOW SCANNED",
			"registry.example/shop/api:1.4 (+1) sha256:apiapiapiapi Scanned 45 3 0 1 0 3h ago",
			"registry.example/shop/db:15 sha256:dbdbdbdbdbdb Scanned 120 1 2 0 7 3h ago",
		}},
		{name: "a search by a later reference", search: "api:latest", wantLines: []string{
			"IMAGE DIGEST PHASE PACKAGES CRITICAL HIGH MEDIUM LOW SCANNED",
			"registry.example/shop/api:1.4 (+1) sha256:apiapiapiapi Scanned 45 3 0 1 0 3h ago",
		}},
		{name: "a search by digest", search: "sha256:fafa", wantLines: []string{
			"IMAGE DIGEST PHASE PACKAGES CRITICAL HIGH MEDIUM LOW SCANNED",
			"registry.example/web/gone:1 sha256:fafafafafafa Failed - 0 0 0 0 -",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut := images(t, tc.search, tc.output)
			var lines []string
			for line := range strings.Lines(out) {
				lines = append(lines, strings.Join(strings.Fields(line), " "))
			}
			if strings.Join(lines, "\n") != strings.Join(tc.wantLines, "\n") || errOut != "" {
				t.Errorf("got\n%s\nwant\n%s\nstderr: %s", strings.Join(lines, "\n"), strings.Join(tc.wantLines, "\n"), errOut)
			}
		})
	}

	t.Run("csv", func(t *testing.T) {
		out, _ := images(t, "", "csv")
		records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		want := [][]string{
			{"image", "digest", "phase", "distro", "packages", "critical", "high", "medium", "low", "negligible", "unknown", "scanned"},
			{"registry.example/shop/api:1.4 (+1)", "sha256:apiapiapiapiapiapiapiapi", "Scanned", "alpine 3.19", "45", "3", "0", "1", "0", "4", "2", "<time>"},
			{"registry.example/web/=cmd|calc:2", "sha256:webwebwebwebwebwebwebweb", "Scanned", "", "300", "1", "5", "0", "0", "0", "0", "<time>"},
			{"registry.example/shop/db:15", "sha256:dbdbdbdbdbdbdbdbdbdbdbdb", "Scanned", "debian 12", "120", "1", "2", "0", "7", "0", "0", "<time>"},
			{"registry.example/web/gone:1", "sha256:fafafafafafafafafafafafa", "Failed", "", "", "0", "0", "0", "0", "0", "0", ""},
		}
		if len(records) != len(want) {
			t.Fatalf("%d records, want %d:\n%s", len(records), len(want), out)
		}
		for i, record := range records {
			// The scan time is absolute (RFC 3339, UTC) in CSV.
			if want[i][11] == "<time>" {
				if _, err := time.Parse(time.RFC3339, record[11]); err != nil || !strings.HasSuffix(record[11], "Z") {
					t.Errorf("row %d: scanned %q is not an RFC 3339 UTC time", i, record[11])
				}
				want[i][11] = record[11]
			}
			if strings.Join(record, ",") != strings.Join(want[i], ",") {
				t.Errorf("row %d:\n got %q\nwant %q", i, record, want[i])
			}
		}
	})

	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			out, _ := images(t, "", format)
			if format == "yaml" {
				converted, err := yaml.YAMLToJSON([]byte(out))
				if err != nil {
					t.Fatal(err)
				}
				out = string(converted)
			}
			list := &vigilv1alpha1.ImageScanList{}
			if err := json.Unmarshal([]byte(out), list); err != nil {
				t.Fatal(err)
			}
			if list.Kind != "ImageScanList" || list.APIVersion != "vigil.dev/v1alpha1" || len(list.Items) != len(mostVulnerableFirst) {
				t.Fatalf("%s: kind %q, apiVersion %q, %d items", format, list.Kind, list.APIVersion, len(list.Items))
			}
			for i := range list.Items {
				item := &list.Items[i]
				if imageOf(item) != mostVulnerableFirst[i] || item.Kind != "ImageScan" || item.APIVersion != "vigil.dev/v1alpha1" {
					t.Errorf("item %d is %s (%s %s), want %s", i, imageOf(item), item.APIVersion, item.Kind, mostVulnerableFirst[i])
				}
			}
			if list.Items[0].Status.SeverityCounts.Critical != 3 || list.Items[0].Status.SBOM.Distro != "alpine 3.19" {
				t.Errorf("%s lost the status: %+v", format, list.Items[0].Status)
			}
		})
	}

	t.Run("no match", func(t *testing.T) {
		out, errOut := images(t, "no-such-image", "")
		if out != "" || errOut != "No image scan matches.\n" {
			t.Errorf("stdout %q, stderr %q", out, errOut)
		}
	})
}

func TestVigilImagesRejectsAnUnknownOutputFormat(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"images", "-o", "xml"}, &stdout, &stderr); code != ExitError ||
		stderr.String() != "vigil: --output \"xml\": use wide, json, yaml or csv\n" {
		t.Errorf("exit code %d, stderr %q", code, stderr.String())
	}
}
