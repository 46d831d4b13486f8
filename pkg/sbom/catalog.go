package sbom

import (
	"runtime"

	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/cataloging"
)

// catalogConfig is the grype CLI's cataloging configuration, so that Vigil finds what grype
// finds, with as many cataloging tasks at once as the process may use CPUs.
//
// Unless full is set, it leaves out what vulnerability matching never reads, which the grype CLI
// pays for on every scan: the metadata and SHA-256 digest of every file a package owns (every
// file of a Debian base image), the security features of every executable, and the
// package-to-file relationships. Packages, their locations, CPEs and PURLs, the distribution and
// the package-to-package relationships that matching reads (file ownership overlap, which drops
// binaries that an OS package owns) are the same either way.
func catalogConfig(full bool) *syft.CreateSBOMConfig {
	config := syft.DefaultCreateSBOMConfig().WithTool("vigil", "").WithParallelism(catalogParallelism())
	search := cataloging.DefaultArchiveSearchConfig()
	config.Packages.JavaArchive.IncludeIndexedArchives = search.IncludeIndexedArchives
	config.Packages.JavaArchive.IncludeUnindexedArchives = search.IncludeUnindexedArchives
	config.Packages.Golang = config.Packages.Golang.WithCaptureSymbols(cataloging.SymbolScopeAll)
	config.Compliance.MissingVersion = cataloging.ComplianceActionDrop
	if !full {
		config = config.WithoutFiles()
		config.Relationships = config.Relationships.WithPackageFileOwnership(false)
	}
	return config
}

// catalogParallelism is the number of cataloging tasks run at once: GOMAXPROCS, which the Go
// runtime sets from the container's CPU limit. syft's own default, four per CPU of the node,
// holds several times the memory at once in a pod limited to a CPU or two of a large node,
// without finishing sooner.
func catalogParallelism() int {
	return max(runtime.GOMAXPROCS(0), 1)
}
