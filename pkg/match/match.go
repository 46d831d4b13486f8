// Package match matches SBOMs against a grype v6 vulnerability database with grype's own
// matchers and grype CLI's default settings, and turns grype's report into Vigil's findings.
package match

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anchore/clio"
	"github.com/anchore/grype/cmd/grype/cli/options"
	"github.com/anchore/grype/grype"
	grypematch "github.com/anchore/grype/grype/match"
	"github.com/anchore/grype/grype/matcher"
	"github.com/anchore/grype/grype/matcher/dotnet"
	"github.com/anchore/grype/grype/matcher/dpkg"
	"github.com/anchore/grype/grype/matcher/golang"
	"github.com/anchore/grype/grype/matcher/hex"
	"github.com/anchore/grype/grype/matcher/java"
	"github.com/anchore/grype/grype/matcher/javascript"
	"github.com/anchore/grype/grype/matcher/python"
	"github.com/anchore/grype/grype/matcher/rpm"
	"github.com/anchore/grype/grype/matcher/ruby"
	"github.com/anchore/grype/grype/matcher/rust"
	"github.com/anchore/grype/grype/matcher/stock"
	grypepkg "github.com/anchore/grype/grype/pkg"
	"github.com/anchore/grype/grype/presenter/models"
	"github.com/anchore/grype/grype/vulnerability"
	syftpkg "github.com/anchore/syft/syft/pkg"
	syftsbom "github.com/anchore/syft/syft/sbom"
)

// Database identifies the vulnerability database a result came from.
type Database struct {
	// SchemaVersion is the database's schema version, for example v6.1.3.
	SchemaVersion string `json:"schemaVersion"`
	// Built is when the database was built.
	Built time.Time `json:"built"`
}

// Finding is one vulnerability of one package.
type Finding struct {
	Details
	// Namespace is the database namespace of the record that matched; with ID and Related it
	// lets Describe read the same details from the database again.
	Namespace string      `json:"namespace,omitempty"`
	Related   []Reference `json:"related,omitempty"`
	Package   Package     `json:"package"`
	FixedIn   []string    `json:"fixedIn,omitempty"`
	FixState  FixState    `json:"fixState"`
}

// Details describe a vulnerability as the database records it.
type Details struct {
	ID             string   `json:"id"`
	Aliases        []string `json:"aliases,omitempty"`
	Severity       Severity `json:"severity"`
	CVSS           []CVSS   `json:"cvss,omitempty"`
	Description    string   `json:"description,omitempty"`
	Links          []string `json:"links,omitempty"`
	KnownExploited bool     `json:"knownExploited,omitempty"`
	EPSS           *EPSS    `json:"epss,omitempty"`
}

// Package is the vulnerable package of a finding.
type Package struct {
	Name      string   `json:"name"`
	Version   string   `json:"version"`
	Type      string   `json:"type"`
	PURL      string   `json:"purl,omitempty"`
	Locations []string `json:"locations,omitempty"`
}

// Score is the highest CVSS base score, and false when there is none.
func (f Details) Score() (float64, bool) {
	best, found := 0.0, false
	for _, c := range f.CVSS {
		if !found || c.BaseScore > best {
			best, found = c.BaseScore, true
		}
	}
	return best, found
}

// Result is what matching an SBOM found.
type Result struct {
	// Database is the database the SBOM was matched against.
	Database Database `json:"database"`
	// Findings are sorted most severe first, then by CVSS score, ID and package.
	Findings []Finding `json:"findings"`
	// Packages counts the SBOM's packages.
	Packages int `json:"packages"`
	// Distro is the SBOM's distribution and version, for example "debian 12", or empty.
	Distro string `json:"distro,omitempty"`
	// Document is grype's own report of the same matches, as `grype -o json` writes it.
	Document models.Document `json:"-"`
}

// Matcher matches SBOMs against one vulnerability database. It is safe for concurrent use.
type Matcher struct {
	provider vulnerability.Provider
	database Database
	byCVE    bool
}

// ByCVE returns a Matcher that reports a vulnerability by its CVE when it has one (a GitHub or
// distribution advisory of a CVE becomes that CVE, the advisory an alias), as `grype --by-cve`
// does: the cluster view keeps one object per vulnerability, whatever advisories name it.
func (m *Matcher) ByCVE() *Matcher {
	byCVE := *m
	byCVE.byCVE = true
	return &byCVE
}

// NewMatcher returns a Matcher of the database that provider reads.
func NewMatcher(provider vulnerability.Provider, database Database) *Matcher {
	return &Matcher{provider: provider, database: database}
}

// grypeDefaults are grype CLI's default settings, which Vigil matches with.
var grypeDefaults = options.DefaultGrype(clio.Identification{Name: "vigil"})

// ignoreLinuxKernelHeaders are the ignore rules grype CLI applies by default: kernel header
// packages match the kernel's advisories only indirectly, and grype does not report them.
var ignoreLinuxKernelHeaders = []grypematch.IgnoreRule{
	{Package: grypematch.IgnoreRulePackage{Name: "kernel-headers", UpstreamName: "kernel", Type: string(syftpkg.RpmPkg)}, MatchType: grypematch.ExactIndirectMatch},
	{Package: grypematch.IgnoreRulePackage{Name: "linux(-.*)?-headers-.*", UpstreamName: "linux.*", Type: string(syftpkg.DebPkg)}, MatchType: grypematch.ExactIndirectMatch},
	{Package: grypematch.IgnoreRulePackage{Name: "linux-libc-dev", UpstreamName: "linux", Type: string(syftpkg.DebPkg)}, MatchType: grypematch.ExactIndirectMatch},
	{Package: grypematch.IgnoreRulePackage{Name: "linux-kbuild-.*", UpstreamName: "linux.*", Type: string(syftpkg.DebPkg)}, MatchType: grypematch.ExactIndirectMatch},
}

func matcherConfig() matcher.Config {
	m := grypeDefaults.Match
	return matcher.Config{
		Java: java.MatcherConfig{
			ExternalSearchConfig: java.ExternalSearchConfig{}, // no network look-ups
			UseCPEs:              m.Java.UseCPEs,
		},
		Ruby:       ruby.MatcherConfig(m.Ruby),
		Python:     python.MatcherConfig(m.Python),
		Dotnet:     dotnet.MatcherConfig(m.Dotnet),
		Javascript: javascript.MatcherConfig(m.Javascript),
		Golang: golang.MatcherConfig{
			UseCPEs:                                m.Golang.UseCPEs,
			AlwaysUseCPEForStdlib:                  m.Golang.AlwaysUseCPEForStdlib,
			AllowMainModulePseudoVersionComparison: m.Golang.AllowMainModulePseudoVersionComparison,
		},
		Rust:  rust.MatcherConfig(m.Rust),
		Hex:   hex.MatcherConfig(m.Hex),
		Stock: stock.MatcherConfig(m.Stock),
		Dpkg: dpkg.MatcherConfig{
			MissingEpochStrategy: m.Dpkg.MissingEpochStrategy,
			UseCPEsForEOL:        m.Dpkg.UseCPEsForEOL,
			UseCPEs:              m.Dpkg.UseCPEs,
		},
		Rpm: rpm.MatcherConfig{
			MissingEpochStrategy: m.Rpm.MissingEpochStrategy,
			UseCPEsForEOL:        m.Rpm.UseCPEsForEOL,
			UseCPEs:              m.Rpm.UseCPEs,
		},
	}
}

// Match matches the packages of an SBOM in syft JSON, the way `grype sbom:FILE` does.
func (m *Matcher) Match(ctx context.Context, syftJSON []byte) (*Result, error) {
	packages, pkgContext, _, err := grypepkg.ProvideFromReader(bytes.NewReader(syftJSON), grypepkg.ProviderConfig{
		SynthesisConfig: grypepkg.SynthesisConfig{
			Distro: grypepkg.DistroConfig{FixChannels: fixChannels},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("reading the SBOM: %w", err)
	}
	return m.match(ctx, packages, pkgContext)
}

// MatchDocument matches the packages of syft's document as syft built it, the way the grype CLI
// matches the SBOM it builds of an image: it finds what Match finds in the document's JSON,
// without encoding and decoding it.
func (m *Matcher) MatchDocument(ctx context.Context, document *syftsbom.SBOM) (*Result, error) {
	packages, pkgContext := packagesOf(document, fixChannels)
	return m.match(ctx, packages, pkgContext)
}

func (m *Matcher) match(ctx context.Context, packages []grypepkg.Package, pkgContext grypepkg.Context) (*Result, error) {
	vulnerabilityMatcher := grype.VulnerabilityMatcher{
		VulnerabilityProvider: m.provider,
		IgnoreRules:           ignoreLinuxKernelHeaders,
		NormalizeByCVE:        m.byCVE,
		Matchers:              matcher.NewDefaultMatchers(matcherConfig()),
	}
	remaining, ignored, err := vulnerabilityMatcher.FindMatchesContext(ctx, packages, pkgContext)
	if err != nil {
		return nil, fmt.Errorf("matching packages: %w", err)
	}
	document, err := models.NewDocument(clio.Identification{Name: "vigil"}, packages, pkgContext, *remaining, ignored,
		m.provider, nil, m.database, models.SortByPackage, false, nil)
	if err != nil {
		return nil, fmt.Errorf("describing the matches: %w", err)
	}
	findings := make([]Finding, 0, len(document.Matches))
	for _, match := range document.Matches {
		findings = append(findings, findingOf(match))
	}
	SortFindings(findings)
	result := &Result{Database: m.database, Findings: findings, Document: document, Packages: len(packages)}
	if pkgContext.Distro != nil {
		result.Distro = strings.TrimSpace(pkgContext.Distro.ID() + " " + pkgContext.Distro.Version)
	}
	return result, nil
}

// findingOf turns one of grype's reported matches into a Finding.
func findingOf(match models.Match) Finding {
	v := match.Vulnerability
	finding := Finding{
		Details:   describe(v.VulnerabilityMetadata, match.RelatedVulnerabilities),
		Namespace: v.Namespace,
		Package: Package{
			Name: match.Artifact.Name, Version: match.Artifact.Version, Type: string(match.Artifact.Type),
			PURL: match.Artifact.PURL,
		},
		FixedIn:  v.Fix.Versions,
		FixState: fixStateOf(v.Fix.State),
	}
	for _, related := range match.RelatedVulnerabilities {
		finding.Related = append(finding.Related, Reference{ID: related.ID, Namespace: related.Namespace})
	}
	for _, location := range match.Artifact.Locations {
		finding.Package.Locations = appendUnique(finding.Package.Locations, location.RealPath)
	}
	return finding
}

// Describe reads the details of a vulnerability from the database, as a match reports them: the
// vulnerability primary names (its ID and the namespace of the record that matched) and its
// related records.
func (m *Matcher) Describe(primary Reference, related []Reference) (Details, error) {
	metadataOf := func(id string, record Reference) (models.VulnerabilityMetadata, error) {
		metadata, err := m.provider.VulnerabilityMetadata(vulnerability.Reference{ID: record.ID, Namespace: record.Namespace}) //nolint:staticcheck // grype's own document model reads it so
		if err != nil {
			return models.VulnerabilityMetadata{}, fmt.Errorf("reading %s (%s) from the database: %w", record.ID, record.Namespace, err)
		}
		return models.NewVulnerabilityMetadata(id, record.Namespace, metadata), nil
	}
	first, err := metadataOf(primary.ID, recordOf(primary, related))
	if err != nil {
		return Details{}, err
	}
	var others []models.VulnerabilityMetadata
	for _, ref := range related {
		other, err := metadataOf(ref.ID, ref)
		if err != nil {
			return Details{}, err
		}
		others = append(others, other)
	}
	return describe(first, others), nil
}

// recordOf is the database record whose metadata describes a vulnerability: its own, or, when
// grype reported an advisory by its CVE (--by-cve), the advisory's, which grype keeps as the one
// related record of the same namespace.
func recordOf(primary Reference, related []Reference) Reference {
	if len(related) == 1 && related[0].Namespace == primary.Namespace && related[0].ID != primary.ID &&
		isCVE(primary.ID) && !isCVE(related[0].ID) {
		return related[0]
	}
	return primary
}

func isCVE(id string) bool {
	return strings.HasPrefix(strings.ToLower(id), "cve-")
}

// describe gathers the details of a vulnerability from its record and its related records.
func describe(primary models.VulnerabilityMetadata, related []models.VulnerabilityMetadata) Details {
	details := Details{ID: primary.ID, Severity: severityOf(primary.Severity), Description: primary.Description}
	if primary.DataSource != "" {
		details.Links = append(details.Links, primary.DataSource)
	}
	details.Links = appendUnique(details.Links, primary.URLs...)
	for _, r := range related {
		details.Aliases = appendUnique(details.Aliases, r.ID)
	}
	for _, m := range append([]models.VulnerabilityMetadata{primary}, related...) {
		// The fullest description wins: an advisory's summary is often one line, NVD's a paragraph.
		if len(m.Description) > len(details.Description) {
			details.Description = m.Description
		}
		for _, cvss := range m.Cvss {
			if cvss.Metrics.BaseScore == 0 && cvss.Vector == "" {
				continue
			}
			if slices.ContainsFunc(details.CVSS, func(c CVSS) bool {
				return c.Vector == cvss.Vector && c.Version == cvss.Version && c.BaseScore == cvss.Metrics.BaseScore
			}) {
				continue // the same rating from another source of the same vulnerability
			}
			details.CVSS = append(details.CVSS, CVSS{
				Source: cvss.Source, Version: cvss.Version, Vector: cvss.Vector, BaseScore: cvss.Metrics.BaseScore,
			})
		}
		if len(m.KnownExploited) > 0 {
			details.KnownExploited = true
		}
		for _, epss := range m.EPSS {
			if details.EPSS == nil || epss.EPSS > details.EPSS.Score {
				details.EPSS = &EPSS{Score: epss.EPSS, Percentile: epss.Percentile, Date: epss.Date}
			}
		}
	}
	return details
}

func appendUnique(list []string, values ...string) []string {
	for _, value := range values {
		if value != "" && !contains(list, value) {
			list = append(list, value)
		}
	}
	return list
}

func contains(list []string, value string) bool {
	for _, v := range list {
		if v == value {
			return true
		}
	}
	return false
}

func severityOf(word string) Severity {
	if severity, ok := ParseSeverity(word); ok {
		return severity
	}
	return SeverityUnknown
}

func fixStateOf(state string) FixState {
	switch strings.ToLower(state) {
	case string(vulnerability.FixStateFixed):
		return FixStateFixed
	case string(vulnerability.FixStateNotFixed):
		return FixStateNotFixed
	case string(vulnerability.FixStateWontFix):
		return FixStateWontFix
	default:
		return FixStateUnknown
	}
}

// SortFindings sorts findings most severe first, then by highest CVSS score, ID, package name and
// version.
func SortFindings(findings []Finding) {
	sort.SliceStable(findings, func(i, j int) bool {
		a, b := findings[i], findings[j]
		if ra, rb := a.Severity.Rank(), b.Severity.Rank(); ra != rb {
			return ra < rb
		}
		sa, _ := a.Score()
		sb, _ := b.Score()
		if sa != sb {
			return sa > sb
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		if a.Package.Name != b.Package.Name {
			return a.Package.Name < b.Package.Name
		}
		return a.Package.Version < b.Package.Version
	})
}
