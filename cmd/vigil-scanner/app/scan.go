package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/adrg/xdg"
	"github.com/anchore/syft/syft/format/cyclonedxjson"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/format/syftjson"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vigil-dev/vigil/cmd/internal/cli"
	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/vulndb"
)

// scanOptions are the flags of `vigil-scanner scan`.
type scanOptions struct {
	dbDir          string
	dbURL          string
	dbCache        string
	output         string
	sbomFile       string
	sbomFormat     string
	failOn         string
	platform       string
	maxImageSize   string
	maxSBOMSize    string
	registryConfig string
	plainHTTP      []string
	skipTLSVerify  []string
	timeout        time.Duration
	quiet          bool
}

// Report is what `vigil-scanner scan -o json` writes.
type Report struct {
	// Source is the scanned image as given.
	Source string `json:"source"`
	// Distro is the image's distribution, when it has one.
	Distro string `json:"distro,omitempty"`
	// Packages counts the packages found.
	Packages int `json:"packages"`
	// Database is the vulnerability database matched against.
	Database match.Database `json:"database"`
	// Findings are the vulnerabilities, most severe first.
	Findings []match.Finding `json:"findings"`
}

func newScanCommand(stdout, stderr io.Writer) *cobra.Command {
	options := &scanOptions{}
	cmd := &cobra.Command{
		Use:   "scan SOURCE",
		Short: "Scan one image for known vulnerabilities",
		Long: `Scan one image: build its SBOM with syft and match it with grype against a v6
vulnerability database, as the grype CLI does.

SOURCE is registry:REF, oci-dir:PATH, oci-archive:PATH, docker-archive:PATH, or a bare image
reference, which means a registry. Registries on loopback addresses are reached over plain
HTTP, as docker does; every other registry over verified HTTPS unless --plain-http or
--insecure-skip-tls-verify names it.

Exit codes: 0 when the scan ran (and --fail-on was not met), 1 on any error, 2 when a
vulnerability at or above the --fail-on severity was found.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScan(cmd.Context(), args[0], options, stdout, stderr)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&options.dbDir, "db", "", "vulnerability database root: the folder that holds 6/vulnerability.db, as grype's cache does")
	flags.StringVar(&options.dbURL, "db-url", "", "URL of a database listing document (latest.json) to download the database from")
	flags.StringVar(&options.dbCache, "db-cache", filepath.Join(xdg.CacheHome, "vigil", "db"), "where --db-url keeps the downloaded database between runs")
	flags.StringVarP(&options.output, "output", "o", "table", "output format: table or json")
	flags.StringVar(&options.sbomFile, "sbom", "", "also write the image's SBOM to this file")
	flags.StringVar(&options.sbomFormat, "sbom-format", "syft-json", "format of --sbom: syft-json, cyclonedx-json or spdx-json")
	flags.StringVar(&options.failOn, "fail-on", "", "exit with code 2 when a vulnerability of this severity or higher is found (critical, high, medium, low, negligible)")
	flags.StringVar(&options.platform, "platform", sbom.DefaultPlatform, "platform of a multi-platform image: os/arch[/variant]")
	flags.StringVar(&options.maxImageSize, "max-image-size", "", "refuse images larger than this, compressed, for example 2Gi")
	flags.StringVar(&options.maxSBOMSize, "max-sbom-size", "", "refuse SBOMs larger than this, for example 64Mi")
	flags.StringVar(&options.registryConfig, "registry-config", "", "docker config JSON with registry credentials (as in a pull secret); anonymous otherwise")
	flags.StringSliceVar(&options.plainHTTP, "plain-http", nil, "registry host[:port] to reach over plain HTTP (repeatable)")
	flags.StringSliceVar(&options.skipTLSVerify, "insecure-skip-tls-verify", nil, "registry host[:port] whose certificate is not verified (repeatable)")
	flags.DurationVar(&options.timeout, "timeout", 30*time.Second, "how long to wait for a registry or database server to answer")
	flags.BoolVarP(&options.quiet, "quiet", "q", false, "print no progress on standard error")
	return cmd
}

// validate checks the flags before any work, so that bad input fails at once.
func (o *scanOptions) validate() (sbom.Options, *match.Severity, error) {
	var scanOptions sbom.Options
	if (o.dbDir == "") == (o.dbURL == "") {
		return scanOptions, nil, errors.New("give the vulnerability database with exactly one of --db DIR and --db-url URL")
	}
	if o.output != "table" && o.output != "json" {
		return scanOptions, nil, fmt.Errorf("--output %q: use table or json", o.output)
	}
	if _, err := sbomEncoder(o.sbomFormat); err != nil {
		return scanOptions, nil, err
	}
	var failOn *match.Severity
	if o.failOn != "" {
		severity, ok := match.ParseSeverity(o.failOn)
		if !ok || severity == match.SeverityUnknown {
			return scanOptions, nil, fmt.Errorf("--fail-on %q: use critical, high, medium, low or negligible", o.failOn)
		}
		failOn = &severity
	}
	scanOptions.Platform = o.platform
	scanOptions.Timeout = o.timeout
	// An SBOM written for the user is the whole of what syft catalogs; one only matched leaves out
	// what matching never reads.
	scanOptions.FullSBOM = o.sbomFile != ""
	// The scan matches syft's document as it is, as the grype CLI does: the syft JSON that the
	// cluster stores and matches would be encoded and decoded again for nothing.
	scanOptions.WithoutJSON = true
	for flag, value := range map[string]*int64{o.maxImageSize: &scanOptions.MaxImageSize, o.maxSBOMSize: &scanOptions.MaxSBOMSize} {
		if flag == "" {
			continue
		}
		quantity, err := resource.ParseQuantity(flag)
		if err != nil || quantity.Sign() <= 0 {
			return scanOptions, nil, fmt.Errorf("size %q: use a positive size such as 512Mi or 2Gi", flag)
		}
		*value = quantity.Value()
	}
	scanOptions.Registries = sbom.RegistryAccessOf(o.plainHTTP, o.skipTLSVerify)
	if o.registryConfig != "" {
		content, err := os.ReadFile(o.registryConfig)
		if err != nil {
			return scanOptions, nil, fmt.Errorf("--registry-config: %w", err)
		}
		if scanOptions.Credentials, err = sbom.CredentialsFromDockerConfig(content); err != nil {
			return scanOptions, nil, fmt.Errorf("--registry-config %s: %w", o.registryConfig, err)
		}
	}
	return scanOptions, failOn, nil
}

func runScan(ctx context.Context, input string, o *scanOptions, stdout, stderr io.Writer) error {
	progress := func(format string, args ...any) {
		if !o.quiet {
			fmt.Fprintf(stderr, format+"\n", args...)
		}
	}
	sbomOptions, failOn, err := o.validate()
	if err != nil {
		return err
	}
	source, err := sbom.ParseSource(input)
	if err != nil {
		return err
	}

	start := time.Now()
	store, err := openDatabase(ctx, o, progress)
	if err != nil {
		return err
	}
	defer store.Close()
	matcher, release, err := store.Acquire()
	if err != nil {
		return err
	}
	defer release()

	progress("Generating the SBOM of %s", source)
	generated, err := sbom.Generate(ctx, source, sbomOptions)
	if err != nil {
		return explain(err, o.timeout)
	}
	distro, packages := generated.Distro(), generated.Packages()
	if o.sbomFile != "" {
		if err := writeSBOM(o.sbomFile, o.sbomFormat, generated.SBOM); err != nil {
			return err
		}
	}
	progress("Matching %d packages against the database built %s", packages, store.Status().Database.Built.Format(time.RFC3339))
	result, err := matcher.MatchDocument(ctx, generated.SBOM)
	if err != nil {
		return err
	}
	report := Report{
		Source: input, Distro: distro, Packages: packages,
		Database: result.Database, Findings: result.Findings,
	}
	if err := writeReport(stdout, o.output, report); err != nil {
		return err
	}
	progress("Found %d vulnerabilities in %d packages in %s", len(result.Findings), packages, time.Since(start).Round(time.Millisecond))
	if failOn != nil {
		for _, finding := range result.Findings {
			if finding.Severity != match.SeverityUnknown && finding.Severity.Rank() <= failOn.Rank() {
				return &cli.ExitCode{Code: ExitFailOn, Message: fmt.Sprintf("found %s vulnerabilities at or above %s (--fail-on)", finding.Severity, *failOn)}
			}
		}
	}
	return nil
}

// openDatabase opens the database of --db, or downloads the one --db-url lists into the cache.
func openDatabase(ctx context.Context, o *scanOptions, progress func(string, ...any)) (*vulndb.Store, error) {
	if o.dbDir != "" {
		progress("Loading the vulnerability database from %s", o.dbDir)
		if _, err := os.Stat(filepath.Join(o.dbDir, "6", "vulnerability.db")); err != nil {
			return nil, fmt.Errorf("no vulnerability database in %s: it must hold 6/vulnerability.db", o.dbDir)
		}
		store, err := vulndb.NewStore(vulndb.Options{Root: o.dbDir})
		if err != nil {
			return nil, fmt.Errorf("the vulnerability database in %s cannot be read: %w", o.dbDir, err)
		}
		return store, nil
	}
	root := o.dbCache
	progress("Updating the vulnerability database in %s from %s", root, o.dbURL)
	store, err := vulndb.NewStore(vulndb.Options{Root: root, ListingURL: o.dbURL, Timeout: o.timeout})
	if err != nil {
		return nil, err
	}
	if _, err := store.Update(ctx); err != nil {
		if store.Status().Database.SchemaVersion == "" {
			_ = store.Close()
			return nil, err
		}
		progress("Database update failed, using the cached database: %s", cli.OneLine(err.Error()))
	}
	return store, nil
}

// explain turns registry failures into messages that say what to do.
func explain(err error, timeout time.Duration) error {
	var netErr net.Error
	switch {
	case errors.Is(err, sbom.ErrUnauthorized):
		return fmt.Errorf("the registry refused the credentials (give them with --registry-config): %w", err)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return fmt.Errorf("the registry did not answer within %s: %w", timeout, err)
	case strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host"):
		return fmt.Errorf("cannot reach the registry: %w", err)
	}
	return err
}

func sbomEncoder(format string) (syftsbom.FormatEncoder, error) {
	switch format {
	case "syft-json":
		return syftjson.NewFormatEncoder(), nil
	case "cyclonedx-json":
		return cyclonedxjson.NewFormatEncoderWithConfig(cyclonedxjson.DefaultEncoderConfig())
	case "spdx-json":
		return spdxjson.NewFormatEncoderWithConfig(spdxjson.DefaultEncoderConfig())
	}
	return nil, fmt.Errorf("--sbom-format %q: use syft-json, cyclonedx-json or spdx-json", format)
}

func writeSBOM(path, format string, document *syftsbom.SBOM) error {
	encoder, err := sbomEncoder(format)
	if err != nil {
		return err
	}
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the SBOM: %w", err)
	}
	if err := encoder.Encode(file, *document); err != nil {
		_ = file.Close()
		return fmt.Errorf("writing the SBOM to %s: %w", path, err)
	}
	return file.Close()
}

func writeReport(out io.Writer, format string, report Report) error {
	if format == "json" {
		encoder := json.NewEncoder(out)
		encoder.SetIndent("", "  ")
		return encoder.Encode(report)
	}
	table := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	fmt.Fprintln(table, "ID\tSEVERITY\tCVSS\tPACKAGE\tINSTALLED\tFIXED-IN")
	for _, f := range report.Findings {
		score := "-"
		if s, ok := f.Score(); ok {
			score = strconv.FormatFloat(s, 'f', 1, 64)
		}
		fixedIn := strings.Join(f.FixedIn, ", ")
		if fixedIn == "" {
			fixedIn = "(" + string(f.FixState) + ")"
		}
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Severity, score, f.Package.Name, f.Package.Version, fixedIn)
	}
	if len(report.Findings) == 0 {
		fmt.Fprintln(table, "No known vulnerabilities")
	}
	return table.Flush()
}
