// Package findings exports gauges of the vulnerabilities that run now, computed at each scrape
// from the Vulnerability and ImageScan objects in the manager's cache: it depends on the API
// objects only, never on a reconciler's memory, so that any replica that becomes leader reports
// the same figures.
package findings

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// Descriptions of the findings metrics.
var (
	vulnerabilitiesDesc = prometheus.NewDesc("vigil_vulnerabilities",
		"Vulnerabilities running now (one per vulnerability ID), by severity.", []string{"severity"}, nil)
	namespaceDesc = prometheus.NewDesc("vigil_namespace_vulnerabilities",
		"Vulnerabilities running now in a namespace (one per vulnerability ID), by namespace and severity.", []string{"namespace", "severity"}, nil)
	workloadsDesc = prometheus.NewDesc("vigil_vulnerable_workloads",
		"Running workloads that have at least one vulnerability of the severity or above, by severity.", []string{"severity"}, nil)
	imageScansDesc = prometheus.NewDesc("vigil_image_scans",
		"ImageScans by phase: Pending and Scanning ones are the scan queue.", []string{"phase"}, nil)
	detailDesc = prometheus.NewDesc("vigil_vulnerability_workload_info",
		"A vulnerability running in a workload's container: always 1. Opt-in and bounded (--metrics-workload-series-limit); the most severe come first.",
		[]string{"vulnerability_id", "severity", "namespace", "kind", "workload", "container"}, nil)
	droppedDesc = prometheus.NewDesc("vigil_vulnerability_workload_info_dropped",
		"Series of vigil_vulnerability_workload_info left out at this scrape because of the limit.", nil, nil)
	scrapeErrorDesc = prometheus.NewDesc("vigil_findings_metrics_error",
		"1 when the findings metrics could not be read from the cache at this scrape, else 0.", nil, nil)
)

// Collector computes the findings metrics at each scrape.
type Collector struct {
	// Reader reads Vulnerabilities and ImageScans; the manager's cache, so a scrape costs no
	// request to the API server.
	Reader client.Reader
	// Active is closed once this replica is the elected leader; before, nothing is exported, so
	// that a sum over every replica counts each vulnerability once.
	Active <-chan struct{}
	// WorkloadSeriesLimit bounds the series of vigil_vulnerability_workload_info; 0 turns them off.
	WorkloadSeriesLimit int
	// Timeout bounds the reading of the cache at one scrape; 0 means 10 seconds.
	Timeout time.Duration
	// Log receives the reading errors.
	Log logr.Logger
}

// Describe sends the descriptions of every findings metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{vulnerabilitiesDesc, namespaceDesc, workloadsDesc, imageScansDesc, detailDesc, droppedDesc, scrapeErrorDesc} {
		ch <- d
	}
}

// Collect reads the cache and sends the findings metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	select {
	case <-c.Active:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(c.Timeout, 10*time.Second))
	defer cancel()
	vulnerabilities := &vigilv1alpha1.VulnerabilityList{}
	scans := &vigilv1alpha1.ImageScanList{}
	// The lists are only read: the cache's objects are not copied.
	err := c.Reader.List(ctx, vulnerabilities, client.UnsafeDisableDeepCopy)
	if err == nil {
		err = c.Reader.List(ctx, scans, client.UnsafeDisableDeepCopy)
	}
	if err != nil {
		c.Log.Error(err, "Reading the findings metrics from the cache failed")
		ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, 0)
	for _, m := range Compute(vulnerabilities.Items, scans.Items, c.WorkloadSeriesLimit) {
		ch <- m
	}
}

// workloadKey identifies a workload.
type workloadKey struct{ namespace, kind, name string }

type namespaceSeverity struct {
	namespace string
	severity  vigilv1alpha1.Severity
}

// Compute returns the findings metrics of vulnerabilities and scans, with at most limit series of
// vigil_vulnerability_workload_info. A Vulnerability lists up to 500 workloads: beyond that, the
// namespace and workload figures count the listed ones.
func Compute(vulnerabilities []vigilv1alpha1.Vulnerability, scans []vigilv1alpha1.ImageScan, limit int) []prometheus.Metric {
	bySeverity := map[vigilv1alpha1.Severity]int{}
	byNamespace := map[namespaceSeverity]int{}
	// The most severe rank of each workload's vulnerabilities.
	worst := map[workloadKey]int32{}
	seen := map[string]bool{}
	for i := range vulnerabilities {
		details := &vulnerabilities[i].Status.Details
		severity := known(details.Severity)
		bySeverity[severity]++
		clear(seen)
		for _, w := range vulnerabilities[i].Status.Workloads {
			if !seen[w.Namespace] {
				seen[w.Namespace] = true
				byNamespace[namespaceSeverity{w.Namespace, severity}]++
			}
			key := workloadKey{w.Namespace, w.Kind, w.Name}
			if rank, ok := worst[key]; !ok || severity.Rank() < rank {
				worst[key] = severity.Rank()
			}
		}
	}
	var out []prometheus.Metric
	workloadsAtOrAbove := make([]int, len(vigilv1alpha1.Severities)+1)
	for _, rank := range worst {
		workloadsAtOrAbove[rank]++
	}
	atOrAbove := 0
	for i, severity := range vigilv1alpha1.Severities {
		atOrAbove += workloadsAtOrAbove[i+1]
		label := severity.LabelValue()
		out = append(out,
			prometheus.MustNewConstMetric(vulnerabilitiesDesc, prometheus.GaugeValue, float64(bySeverity[severity]), label),
			prometheus.MustNewConstMetric(workloadsDesc, prometheus.GaugeValue, float64(atOrAbove), label))
	}
	for key, count := range byNamespace {
		out = append(out, prometheus.MustNewConstMetric(namespaceDesc, prometheus.GaugeValue, float64(count), key.namespace, key.severity.LabelValue()))
	}
	phases := map[vigilv1alpha1.ImageScanPhase]int{
		vigilv1alpha1.ImageScanPending: 0, vigilv1alpha1.ImageScanScanning: 0, vigilv1alpha1.ImageScanScanned: 0,
		vigilv1alpha1.ImageScanFailed: 0, vigilv1alpha1.ImageScanTooLarge: 0,
	}
	for i := range scans {
		// An ImageScan the scan reconciler has not seen yet has no phase: it waits like a Pending one.
		phases[cmp.Or(scans[i].Status.Phase, vigilv1alpha1.ImageScanPending)]++
	}
	for phase, count := range phases {
		out = append(out, prometheus.MustNewConstMetric(imageScansDesc, prometheus.GaugeValue, float64(count), string(phase)))
	}
	if limit > 0 {
		out = append(out, details(vulnerabilities, limit)...)
	}
	return out
}

// details returns up to limit series of vigil_vulnerability_workload_info, the most severe
// vulnerabilities first, then by ID, and the count of those left out.
func details(vulnerabilities []vigilv1alpha1.Vulnerability, limit int) []prometheus.Metric {
	order := make([]*vigilv1alpha1.Vulnerability, len(vulnerabilities))
	for i := range vulnerabilities {
		order[i] = &vulnerabilities[i]
	}
	slices.SortFunc(order, func(a, b *vigilv1alpha1.Vulnerability) int {
		return cmp.Or(
			cmp.Compare(known(a.Status.Details.Severity).Rank(), known(b.Status.Details.Severity).Rank()),
			cmp.Compare(a.Status.Details.ID, b.Status.Details.ID))
	})
	var out []prometheus.Metric
	dropped := 0
	seen := map[[4]string]bool{}
	for _, v := range order {
		severity := known(v.Status.Details.Severity).LabelValue()
		clear(seen)
		for _, w := range v.Status.Workloads {
			key := [4]string{w.Namespace, w.Kind, w.Name, w.Container}
			if seen[key] {
				continue // the same container with two digests: one series
			}
			seen[key] = true
			if len(out) >= limit {
				dropped++
				continue
			}
			out = append(out, prometheus.MustNewConstMetric(detailDesc, prometheus.GaugeValue, 1,
				v.Status.Details.ID, severity, w.Namespace, w.Kind, w.Name, w.Container))
		}
	}
	return append(out, prometheus.MustNewConstMetric(droppedDesc, prometheus.GaugeValue, float64(dropped)))
}

// known is severity, or Unknown for a value that names no severity.
func known(severity vigilv1alpha1.Severity) vigilv1alpha1.Severity {
	if slices.Contains(vigilv1alpha1.Severities, severity) {
		return severity
	}
	return vigilv1alpha1.SeverityUnknown
}
