package imagescan

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	scansInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_scans_in_flight",
		Help: "Image scans running now, in the manager or as Jobs.",
	})
	scansQueued = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_scans_queued",
		Help: "Image scans waiting for a free scan slot or for their retry.",
	})
	scanAttempts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_scan_attempts_total",
		Help: "Scan attempts started.",
	})
	scansLost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_scans_lost_total",
		Help: "Scan attempts started again because their replica or Job was lost, or their SBOM was on another replica.",
	})
	rescans = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_rescans_total",
		Help: "Scanned images scanned again in the background because a new database needed their SBOM and this replica's store lacked it.",
	})
	matchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "vigil_match_duration_seconds",
		Help:    "Time one SBOM takes to match against the vulnerability database.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
	})
	rematchesPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_rematches_pending",
		Help: "Scanned images still to be matched against the database in use.",
	})
)

func init() {
	metrics.Registry.MustRegister(scansInFlight, scansQueued, scanAttempts, scansLost, rescans, matchDuration, rematchesPending)
}
