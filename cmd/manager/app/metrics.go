package app

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	vigilmetrics "github.com/vigil-dev/vigil/pkg/metrics"
	"github.com/vigil-dev/vigil/pkg/metrics/findings"
	"github.com/vigil-dev/vigil/pkg/vulndb"
)

// setupMetrics registers the findings and database metrics. Both are read at each scrape, and
// only on the elected leader: it updates the database, and a sum over the replicas counts each
// vulnerability once.
func setupMetrics(mgr manager.Manager, options *Options, database *vulndb.Store) error {
	collectors := []prometheus.Collector{
		&findings.Collector{
			Reader: mgr.GetCache(), Active: mgr.Elected(), WorkloadSeriesLimit: options.MetricsWorkloadSeriesLimit,
			Log: ctrl.Log.WithName("metrics"),
		},
		vigilmetrics.NewDatabaseCollector(func() vigilmetrics.DatabaseStatus {
			status := database.Status()
			return vigilmetrics.DatabaseStatus{
				SchemaVersion: status.Database.SchemaVersion, Built: status.Database.Built,
				LastCheck: status.LastCheck, LastError: status.LastError, LastUpdate: status.LastUpdate,
			}
		}, mgr.Elected()),
	}
	for _, collector := range collectors {
		if err := metrics.Registry.Register(collector); err != nil {
			return fmt.Errorf("registering the metrics: %w", err)
		}
	}
	return nil
}
