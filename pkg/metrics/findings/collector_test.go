package findings

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

func vulnerability(id string, severity vigilv1alpha1.Severity, workloads ...vigilv1alpha1.AffectedWorkload) *vigilv1alpha1.Vulnerability {
	return &vigilv1alpha1.Vulnerability{
		ObjectMeta: metav1.ObjectMeta{Name: strings.ToLower(id)},
		Status: vigilv1alpha1.VulnerabilityStatus{
			Details:   vigilv1alpha1.VulnerabilityDetails{ID: id, Severity: severity},
			Workloads: workloads, WorkloadCount: int32(len(workloads)),
		},
	}
}

func workload(namespace, kind, name, container string) vigilv1alpha1.AffectedWorkload {
	return vigilv1alpha1.AffectedWorkload{Namespace: namespace, Kind: kind, Name: name, Container: container, Digest: "sha256:" + strings.Repeat("a", 64)}
}

func scan(name string, phase vigilv1alpha1.ImageScanPhase) *vigilv1alpha1.ImageScan {
	return &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: vigilv1alpha1.ImageScanStatus{Phase: phase}}
}

// sample is a cluster where shop/api runs log4j (Critical) and openssl (High) in two containers,
// jobs/report runs minimist (Critical) and openssl, and a vulnerability of an unknown severity.
func sample() []client.Object {
	return []client.Object{
		vulnerability("CVE-2021-44228", vigilv1alpha1.SeverityCritical, workload("shop", "Deployment", "api", "app")),
		vulnerability("CVE-2021-44906", vigilv1alpha1.SeverityCritical, workload("jobs", "CronJob", "report", "run")),
		vulnerability("CVE-2023-0286", vigilv1alpha1.SeverityHigh,
			workload("shop", "Deployment", "api", "app"), workload("shop", "Deployment", "api", "sidecar"),
			workload("jobs", "CronJob", "report", "run")),
		vulnerability("GHSA-0000-0000-0000", "Whatever", workload("tools", "Pod", "lint", "lint")),
		scan("a", vigilv1alpha1.ImageScanScanned), scan("b", vigilv1alpha1.ImageScanPending), scan("c", ""),
		scan("d", vigilv1alpha1.ImageScanScanning), scan("e", vigilv1alpha1.ImageScanTooLarge),
	}
}

func newReader(t testing.TB, objects []client.Object, funcs interceptor.Funcs) client.Reader {
	scheme := runtime.NewScheme()
	if err := vigilv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects...).WithStatusSubresource(&vigilv1alpha1.Vulnerability{}, &vigilv1alpha1.ImageScan{}).WithInterceptorFuncs(funcs).Build()
}

const aggregates = `
# HELP vigil_findings_metrics_error 1 when the findings metrics could not be read from the cache at this scrape, else 0.
# TYPE vigil_findings_metrics_error gauge
vigil_findings_metrics_error 0
# HELP vigil_image_scans ImageScans by phase: Pending and Scanning ones are the scan queue.
# TYPE vigil_image_scans gauge
vigil_image_scans{phase="Failed"} 0
vigil_image_scans{phase="Pending"} 2
vigil_image_scans{phase="Scanned"} 1
vigil_image_scans{phase="Scanning"} 1
vigil_image_scans{phase="TooLarge"} 1
# HELP vigil_namespace_vulnerabilities Vulnerabilities running now in a namespace (one per vulnerability ID), by namespace and severity.
# TYPE vigil_namespace_vulnerabilities gauge
vigil_namespace_vulnerabilities{namespace="jobs",severity="critical"} 1
vigil_namespace_vulnerabilities{namespace="jobs",severity="high"} 1
vigil_namespace_vulnerabilities{namespace="shop",severity="critical"} 1
vigil_namespace_vulnerabilities{namespace="shop",severity="high"} 1
vigil_namespace_vulnerabilities{namespace="tools",severity="unknown"} 1
# HELP vigil_vulnerabilities Vulnerabilities running now (one per vulnerability ID), by severity.
# TYPE vigil_vulnerabilities gauge
vigil_vulnerabilities{severity="critical"} 2
vigil_vulnerabilities{severity="high"} 1
vigil_vulnerabilities{severity="low"} 0
vigil_vulnerabilities{severity="medium"} 0
vigil_vulnerabilities{severity="negligible"} 0
vigil_vulnerabilities{severity="unknown"} 1
# HELP vigil_vulnerable_workloads Running workloads that have at least one vulnerability of the severity or above, by severity.
# TYPE vigil_vulnerable_workloads gauge
vigil_vulnerable_workloads{severity="critical"} 2
vigil_vulnerable_workloads{severity="high"} 2
vigil_vulnerable_workloads{severity="low"} 2
vigil_vulnerable_workloads{severity="medium"} 2
vigil_vulnerable_workloads{severity="negligible"} 2
vigil_vulnerable_workloads{severity="unknown"} 3
`

const detailHelp = `
# HELP vigil_vulnerability_workload_info A vulnerability running in a workload's container: always 1. Opt-in and bounded (--metrics-workload-series-limit); the most severe come first.
# TYPE vigil_vulnerability_workload_info gauge
`

const droppedHelp = `
# HELP vigil_vulnerability_workload_info_dropped Series of vigil_vulnerability_workload_info left out at this scrape because of the limit.
# TYPE vigil_vulnerability_workload_info_dropped gauge
`

func TestCollector(t *testing.T) {
	closed := make(chan struct{})
	close(closed)
	tests := []struct {
		name   string
		active <-chan struct{}
		limit  int
		funcs  interceptor.Funcs
		want   string
	}{
		{name: "aggregates only, by default", active: closed, want: aggregates},
		{
			name: "per-workload series within the limit, most severe first", active: closed, limit: 4,
			want: aggregates + detailHelp + `vigil_vulnerability_workload_info{container="app",kind="Deployment",namespace="shop",severity="critical",vulnerability_id="CVE-2021-44228",workload="api"} 1
vigil_vulnerability_workload_info{container="run",kind="CronJob",namespace="jobs",severity="critical",vulnerability_id="CVE-2021-44906",workload="report"} 1
vigil_vulnerability_workload_info{container="app",kind="Deployment",namespace="shop",severity="high",vulnerability_id="CVE-2023-0286",workload="api"} 1
vigil_vulnerability_workload_info{container="sidecar",kind="Deployment",namespace="shop",severity="high",vulnerability_id="CVE-2023-0286",workload="api"} 1
` + droppedHelp + "vigil_vulnerability_workload_info_dropped 2\n",
		},
		{name: "a replica that is not the leader exports nothing", active: make(chan struct{}), limit: 10, want: ""},
		{
			name: "a cache that cannot be read", active: closed,
			funcs: interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				return errors.New("cache not synced")
			}},
			want: `
# HELP vigil_findings_metrics_error 1 when the findings metrics could not be read from the cache at this scrape, else 0.
# TYPE vigil_findings_metrics_error gauge
vigil_findings_metrics_error 1
`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			collector := &Collector{Reader: newReader(t, sample(), tc.funcs), Active: tc.active, WorkloadSeriesLimit: tc.limit, Log: logr.Discard()}
			if err := testutil.CollectAndCompare(collector, strings.NewReader(tc.want)); err != nil {
				t.Error(err)
			}
		})
	}
}

// BenchmarkCompute measures a scrape's computation over 5,000 running vulnerabilities of 20
// workloads each, with the per-workload series at a limit of 2,000.
func BenchmarkCompute(b *testing.B) {
	vulnerabilities := make([]vigilv1alpha1.Vulnerability, 5000)
	for i := range vulnerabilities {
		var workloads []vigilv1alpha1.AffectedWorkload
		for w := range 20 {
			workloads = append(workloads, workload(fmt.Sprintf("ns-%d", (i+w)%50), "Deployment", fmt.Sprintf("app-%d", w), "app"))
		}
		vulnerabilities[i] = *vulnerability(fmt.Sprintf("CVE-2026-%05d", i), vigilv1alpha1.Severities[i%len(vigilv1alpha1.Severities)], workloads...)
	}
	scans := make([]vigilv1alpha1.ImageScan, 2000)
	b.ReportAllocs()
	for b.Loop() {
		Compute(vulnerabilities, scans, 2000)
	}
}
