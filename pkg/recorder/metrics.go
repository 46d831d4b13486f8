package recorder

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Why a record was dropped, the "reason" label of vigil_recorder_images_dropped_total.
const (
	dropQueueFull       = "queue_full"
	dropNamespaceQueue  = "namespace_queue_full"
	dropNamespaceImages = "namespace_image_limit"
)

var (
	imagesQueued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_recorder_images_queued_total",
		Help: "Image records queued for recording.",
	})
	imagesDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_recorder_images_dropped_total",
		Help: "Image records dropped, by reason: queue_full, namespace_queue_full or namespace_image_limit; the pod watch records the images of running pods later.",
	}, []string{"reason"})
	imagesRecorded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_recorder_images_recorded_total",
		Help: "Image records written to ImageScans.",
	})
	recordErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_recorder_record_errors_total",
		Help: "Failed ImageScan writes of the recorder.",
	})
	queueDepth = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_recorder_queue_depth",
		Help: "Image records waiting to be written.",
	})
)

func init() {
	metrics.Registry.MustRegister(imagesQueued, imagesDropped, imagesRecorded, recordErrors, queueDepth)
}
