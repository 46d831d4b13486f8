package load

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"

	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
	"github.com/vigil-dev/vigil/test/testenv"
)

// bed is what the load benchmarks stand on: a real control plane, a registry on loopback and a
// server of vulnerability databases. Everything stops when the benchmark ends.
type bed struct {
	env *testenv.Environment
	// root is the module's root folder.
	root string
	reg  *registry.Registry
	// dbListingURL is the database listing a manager downloads from.
	dbListingURL string

	b      *testing.B
	served string
	builds *fixturedb.BuildClock
}

// newBed starts the control plane, the registry and the database server, which serves nothing
// until publishDB.
func newBed(b *testing.B) *bed {
	b.Helper()
	env, err := testenv.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = env.Stop()
		testenv.RemoveBinaries()
	})
	root, err := testenv.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	reg := registry.Start(registry.Options{})
	b.Cleanup(reg.Close)
	served := b.TempDir()
	dbServer := httptest.NewServer(http.FileServer(http.Dir(served)))
	b.Cleanup(dbServer.Close)
	return &bed{
		env: env, root: root, reg: reg, dbListingURL: dbServer.URL + "/" + v6distribution.LatestFileName,
		b: b, served: served, builds: fixturedb.NewBuildClock(time.Now()),
	}
}

// fixtures is the folder of the named test fixtures (advisories, advisories-update, ...).
func (bed *bed) fixtures(name string) string {
	return filepath.Join(bed.root, "test", "fixtures", name)
}

// publishDB builds a database from the advisory folders, each built later than the one before,
// and serves it as the newest.
func (bed *bed) publishDB(sources ...string) *fixturedb.Database {
	bed.b.Helper()
	built, err := fixturedb.Build(bed.b.TempDir(), bed.builds.Next(), sources...)
	if err != nil {
		bed.b.Fatal(err)
	}
	if _, err := built.Package(bed.served); err != nil {
		bed.b.Fatal(err)
	}
	return built
}
