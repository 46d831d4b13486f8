package dbupdate

import (
	"context"
	"os"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Store is the part of the vulnerability database store (vulndb.Store) the Updater uses. On
// every failure the database in use stays in use.
type Store interface {
	// Update checks the listing for a newer database and swaps it in; it returns whether it
	// swapped.
	Update(ctx context.Context) (bool, error)
	// Import swaps in the database of an archive file.
	Import(ctx context.Context, path string) error
}

// Updater keeps the vulnerability database current. It runs on the elected leader.
type Updater struct {
	Store Store
	// Interval is the time between checks.
	Interval time.Duration
	// ImportFile, when set, is an archive imported at start and again whenever it changes;
	// otherwise the Store's listing URL is checked.
	ImportFile string
}

// NeedLeaderElection is true: one replica updates the database that it matches with.
func (u *Updater) NeedLeaderElection() bool {
	return true
}

// Start checks for a new database at once and then every Interval until ctx ends.
func (u *Updater) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("dbupdate")
	ctx = log.IntoContext(ctx, logger)
	var imported time.Time
	ticker := time.NewTicker(u.Interval)
	defer ticker.Stop()
	for {
		if u.ImportFile != "" {
			if info, err := os.Stat(u.ImportFile); err != nil {
				logger.Error(err, "Cannot read the vulnerability database archive to import")
			} else if info.ModTime().After(imported) {
				if err := u.Store.Import(ctx, u.ImportFile); err != nil {
					logger.Error(err, "Importing the vulnerability database failed; the current database stays in use")
				} else {
					imported = info.ModTime()
				}
			}
		} else if _, err := u.Store.Update(ctx); err != nil {
			logger.Error(err, "Vulnerability database update failed; the current database stays in use")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}
