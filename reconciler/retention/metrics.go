package retention

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	collected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_images_collected_total",
		Help: "Images whose ImageScan and SBOM were collected because nothing ran them within the retention period.",
	})
	imageScans = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_imagescans",
		Help: "ImageScans in the cluster, at the last collection.",
	})
	storeBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_sbom_store_bytes",
		Help: "Bytes the SBOM store takes on disk, at the last collection.",
	})
)

func init() {
	metrics.Registry.MustRegister(collected, imageScans, storeBytes)
}
