// Package metrics holds Vigil's scan and vulnerability-database metrics, registered with
// controller-runtime's registry so that the manager's /metrics endpoint serves them. The scan
// metrics are recorded by calling ObserveScan; the database metrics are read from the database's
// status at each scrape by the collector that NewDatabaseCollector returns.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// ScanOutcome is the "outcome" label of vigil_scans_total and vigil_scan_duration_seconds.
type ScanOutcome string

// The outcomes of one scan attempt.
const (
	// ScanScanned: the attempt produced an SBOM; the image is Scanned.
	ScanScanned ScanOutcome = "scanned"
	// ScanRetried: the attempt failed and the image will be tried again after a backoff.
	ScanRetried ScanOutcome = "retried"
	// ScanFailed: the attempt failed and it was the last one; the image is Failed.
	ScanFailed ScanOutcome = "failed"
	// ScanTooLarge: the image or its SBOM exceeded a bound, or the scan Job was OOMKilled; the
	// image is TooLarge.
	ScanTooLarge ScanOutcome = "too_large"
)

// ScanOutcomes lists every ScanOutcome.
var ScanOutcomes = []ScanOutcome{ScanScanned, ScanRetried, ScanFailed, ScanTooLarge}

var (
	scansTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_scans_total",
		Help: "Scan attempts that ended, by executor (job or in-process) and outcome: scanned, retried, failed (the last attempt failed) or too_large.",
	}, []string{"executor", "outcome"})
	scanDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vigil_scan_duration_seconds",
		Help:    "Time from the start of a scan attempt to its outcome, by executor and outcome.",
		Buckets: []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200},
	}, []string{"executor", "outcome"})
)

func init() {
	metrics.Registry.MustRegister(scansTotal, scanDuration)
	// Every series exists from the start, at zero, so that rate() sees the first scan.
	for _, executor := range []string{"job", "in-process"} {
		for _, outcome := range ScanOutcomes {
			scansTotal.WithLabelValues(executor, string(outcome))
			scanDuration.WithLabelValues(executor, string(outcome))
		}
	}
}

// ObserveScan records a scan attempt that ended with outcome after taking duration, on executor
// "job" or "in-process".
func ObserveScan(executor string, outcome ScanOutcome, duration time.Duration) {
	scansTotal.WithLabelValues(executor, string(outcome)).Inc()
	scanDuration.WithLabelValues(executor, string(outcome)).Observe(duration.Seconds())
}

// Descriptions of the database metrics.
var (
	databaseBuilt = prometheus.NewDesc("vigil_database_built_timestamp_seconds",
		"When the vulnerability database in use was built, in Unix seconds.", nil, nil)
	databaseAge = prometheus.NewDesc("vigil_database_age_seconds",
		"Age of the vulnerability database in use: the time since it was built.", nil, nil)
	databaseInfo = prometheus.NewDesc("vigil_database_info",
		"The vulnerability database in use: always 1, with its schema version.", []string{"schema_version"}, nil)
	databaseLastCheck = prometheus.NewDesc("vigil_database_last_check_timestamp_seconds",
		"When an update of the vulnerability database was last checked for or imported, in Unix seconds.", nil, nil)
	databaseLastCheckSuccess = prometheus.NewDesc("vigil_database_last_check_success",
		"1 when the last update check or import of the vulnerability database succeeded, 0 when it failed (the previous database stays in use).", nil, nil)
	databaseLastUpdate = prometheus.NewDesc("vigil_database_last_update_timestamp_seconds",
		"When a new vulnerability database was last swapped in, in Unix seconds.", nil, nil)
)

// DatabaseStatus is the state of the vulnerability database that the metrics show.
type DatabaseStatus struct {
	// SchemaVersion is the schema version of the database in use; empty when none is loaded.
	SchemaVersion string
	// Built is when the database in use was built.
	Built time.Time
	// LastCheck is when an update was last checked for or imported; zero before the first.
	LastCheck time.Time
	// LastError is the error of the last check, empty when it succeeded.
	LastError string
	// LastUpdate is when a new database was last swapped in; zero before the first.
	LastUpdate time.Time
}

// DatabaseCollector exports the state of the vulnerability database at each scrape. It exports
// nothing until Active is closed: only the elected leader updates the database.
type DatabaseCollector struct {
	status func() DatabaseStatus
	active <-chan struct{}
	now    func() time.Time
}

// NewDatabaseCollector returns the collector of the database whose status status returns; it
// reports once active is closed (a nil channel never is; pass a closed one to report at once).
func NewDatabaseCollector(status func() DatabaseStatus, active <-chan struct{}) *DatabaseCollector {
	return &DatabaseCollector{status: status, active: active, now: time.Now}
}

// Describe sends the descriptions of every database metric.
func (c *DatabaseCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{databaseBuilt, databaseAge, databaseInfo, databaseLastCheck, databaseLastCheckSuccess, databaseLastUpdate} {
		ch <- d
	}
}

// Collect sends the database metrics: those of the database in use once one is loaded, those of
// the last check once there was one.
func (c *DatabaseCollector) Collect(ch chan<- prometheus.Metric) {
	select {
	case <-c.active:
	default:
		return
	}
	status := c.status()
	if status.SchemaVersion != "" {
		ch <- prometheus.MustNewConstMetric(databaseInfo, prometheus.GaugeValue, 1, status.SchemaVersion)
		if !status.Built.IsZero() {
			ch <- prometheus.MustNewConstMetric(databaseBuilt, prometheus.GaugeValue, unixSeconds(status.Built))
			ch <- prometheus.MustNewConstMetric(databaseAge, prometheus.GaugeValue, c.now().Sub(status.Built).Seconds())
		}
	}
	if !status.LastCheck.IsZero() {
		ch <- prometheus.MustNewConstMetric(databaseLastCheck, prometheus.GaugeValue, unixSeconds(status.LastCheck))
		success := 1.0
		if status.LastError != "" {
			success = 0
		}
		ch <- prometheus.MustNewConstMetric(databaseLastCheckSuccess, prometheus.GaugeValue, success)
	}
	if !status.LastUpdate.IsZero() {
		ch <- prometheus.MustNewConstMetric(databaseLastUpdate, prometheus.GaugeValue, unixSeconds(status.LastUpdate))
	}
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
