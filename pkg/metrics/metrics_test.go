package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestDatabaseCollector(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	built := now.Add(-26 * time.Hour)
	closed := make(chan struct{})
	close(closed)
	tests := []struct {
		name   string
		status DatabaseStatus
		active <-chan struct{}
		want   string
	}{
		{
			name: "a database in use after a failed check", active: closed,
			status: DatabaseStatus{SchemaVersion: "v6.1.3", Built: built, LastCheck: now.Add(-time.Minute), LastError: "listing unreachable", LastUpdate: now.Add(-25 * time.Hour)},
			want: `
# HELP vigil_database_age_seconds Age of the vulnerability database in use: the time since it was built.
# TYPE vigil_database_age_seconds gauge
vigil_database_age_seconds 93600
# HELP vigil_database_built_timestamp_seconds When the vulnerability database in use was built, in Unix seconds.
# TYPE vigil_database_built_timestamp_seconds gauge
vigil_database_built_timestamp_seconds 1.79586e+09
# HELP vigil_database_info The vulnerability database in use: always 1, with its schema version.
# TYPE vigil_database_info gauge
vigil_database_info{schema_version="v6.1.3"} 1
# HELP vigil_database_last_check_success 1 when the last update check or import of the vulnerability database succeeded, 0 when it failed (the previous database stays in use).
# TYPE vigil_database_last_check_success gauge
vigil_database_last_check_success 0
# HELP vigil_database_last_check_timestamp_seconds When an update of the vulnerability database was last checked for or imported, in Unix seconds.
# TYPE vigil_database_last_check_timestamp_seconds gauge
vigil_database_last_check_timestamp_seconds 1.79595354e+09
# HELP vigil_database_last_update_timestamp_seconds When a new vulnerability database was last swapped in, in Unix seconds.
# TYPE vigil_database_last_update_timestamp_seconds gauge
vigil_database_last_update_timestamp_seconds 1.7958636e+09
`,
		},
		{
			name: "a successful first check", active: closed,
			status: DatabaseStatus{SchemaVersion: "v6.1.3", Built: now, LastCheck: now},
			want: `
# HELP vigil_database_age_seconds Age of the vulnerability database in use: the time since it was built.
# TYPE vigil_database_age_seconds gauge
vigil_database_age_seconds 0
# HELP vigil_database_built_timestamp_seconds When the vulnerability database in use was built, in Unix seconds.
# TYPE vigil_database_built_timestamp_seconds gauge
vigil_database_built_timestamp_seconds 1.7959536e+09
# HELP vigil_database_info The vulnerability database in use: always 1, with its schema version.
# TYPE vigil_database_info gauge
vigil_database_info{schema_version="v6.1.3"} 1
# HELP vigil_database_last_check_success 1 when the last update check or import of the vulnerability database succeeded, 0 when it failed (the previous database stays in use).
# TYPE vigil_database_last_check_success gauge
vigil_database_last_check_success 1
# HELP vigil_database_last_check_timestamp_seconds When an update of the vulnerability database was last checked for or imported, in Unix seconds.
# TYPE vigil_database_last_check_timestamp_seconds gauge
vigil_database_last_check_timestamp_seconds 1.7959536e+09
`,
		},
		{name: "no database and no check yet", active: closed, want: ""},
		{name: "a replica that is not the leader", active: make(chan struct{}), status: DatabaseStatus{SchemaVersion: "v6.1.3", Built: built, LastCheck: now}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			collector := NewDatabaseCollector(func() DatabaseStatus { return tc.status }, tc.active)
			collector.now = func() time.Time { return now }
			if err := testutil.CollectAndCompare(collector, strings.NewReader(tc.want)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestObserveScan(t *testing.T) {
	before := testutil.ToFloat64(scansTotal.WithLabelValues("job", string(ScanTooLarge)))
	ObserveScan("job", ScanTooLarge, 42*time.Second)
	if got := testutil.ToFloat64(scansTotal.WithLabelValues("job", string(ScanTooLarge))); got != before+1 {
		t.Errorf("vigil_scans_total{executor=job,outcome=too_large} = %v, want %v", got, before+1)
	}
	// Every outcome's series exists before its first scan, so that rate() sees the first one.
	if got := testutil.CollectAndCount(scansTotal); got != 2*len(ScanOutcomes) {
		t.Errorf("vigil_scans_total has %d series, want %d", got, 2*len(ScanOutcomes))
	}
	if got := testutil.CollectAndCount(scanDuration); got != 2*len(ScanOutcomes) {
		t.Errorf("vigil_scan_duration_seconds has %d series, want %d", got, 2*len(ScanOutcomes))
	}
}
