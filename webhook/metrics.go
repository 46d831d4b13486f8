package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Outcomes of an admission request, the "outcome" label of vigil_webhook_requests_total.
const (
	outcomeRecorded    = "recorded"
	outcomeNoImages    = "no_images"
	outcomeDryRun      = "dry_run"
	outcomeSelf        = "self"
	outcomeOperation   = "operation"
	outcomeMalformed   = "malformed"
	outcomeTooLarge    = "too_large"
	outcomeUnknownKind = "unknown_kind"
	outcomeShed        = "shed"
	outcomePanic       = "panic"
	// outcomeUnauthenticated: refused, the client presented no certificate of the admission
	// client CA.
	outcomeUnauthenticated = "unauthenticated"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_webhook_requests_total",
		Help: "Admission requests answered, by outcome: recorded, no_images, dry_run, self, operation, malformed, too_large, unknown_kind, shed (answered without looking, at the concurrency bound), panic (a defect: answered allowed) or unauthenticated (refused: no client certificate of the admission client CA).",
	}, []string{"outcome"})
	requestDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "vigil_webhook_request_duration_seconds",
		Help:    "Time from reading an admission request to writing its answer.",
		Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05},
	})
)

func init() {
	metrics.Registry.MustRegister(requestsTotal, requestDuration)
}
