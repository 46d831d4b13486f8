package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/pkg/sbom"
)

// scanJobOptions are the flags of `vigil scan-job`, which the manager sets on each scan Job.
type scanJobOptions struct {
	digest         string
	images         []string
	reportURL      string
	tokenFile      string
	caFile         string
	registryConfig string
	platform       string
	maxImageSize   int64
	maxSBOMSize    int64
	timeout        time.Duration
	plainHTTP      []string
	skipTLSVerify  []string
}

func newScanJobCommand(stderr io.Writer) *cobra.Command {
	options := &scanJobOptions{}
	cmd := &cobra.Command{
		Use:    "scan-job",
		Short:  "Scan one image digest and report its SBOM to the Vigil manager (run by scan Jobs)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runScanJob(cmd.Context(), options, stderr)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&options.digest, "digest", "", "image digest to scan")
	flags.StringArrayVar(&options.images, "image", nil, "reference pinned to the digest, tried in order (repeatable)")
	flags.StringVar(&options.reportURL, "report-url", "", "the manager's scan report endpoint")
	flags.StringVar(&options.tokenFile, "token-file", "", "service-account token to report with")
	flags.StringVar(&options.caFile, "ca-file", "", "CA certificate that signs the manager's serving certificate")
	flags.StringVar(&options.registryConfig, "registry-config", "", "docker config JSON with the pull credentials")
	flags.StringVar(&options.platform, "platform", sbom.DefaultPlatform, "platform to scan")
	flags.Int64Var(&options.maxImageSize, "max-image-size", 0, "largest image, compressed, in bytes (0: no bound)")
	flags.Int64Var(&options.maxSBOMSize, "max-sbom-size", 0, "largest SBOM in bytes (0: no bound)")
	flags.DurationVar(&options.timeout, "timeout", 30*time.Second, "time each registry request may take")
	flags.StringSliceVar(&options.plainHTTP, "plain-http", nil, "registry reached over plain HTTP")
	flags.StringSliceVar(&options.skipTLSVerify, "insecure-skip-tls-verify", nil, "registry whose certificate is not verified")
	for _, required := range []string{"digest", "image", "report-url", "token-file"} {
		_ = cmd.MarkFlagRequired(required)
	}
	return cmd
}

func runScanJob(ctx context.Context, o *scanJobOptions, stderr io.Writer) error {
	options := sbom.Options{
		Platform: o.platform, MaxImageSize: o.maxImageSize, MaxSBOMSize: o.maxSBOMSize, Timeout: o.timeout,
		Registries: sbom.RegistryAccessOf(o.plainHTTP, o.skipTLSVerify),
	}
	if o.registryConfig != "" {
		content, err := os.ReadFile(o.registryConfig)
		if err != nil {
			return fmt.Errorf("--registry-config: %w", err)
		}
		if credentials, err := sbom.CredentialsFromDockerConfig(content); err == nil {
			options.Credentials = credentials
		}
	}

	report := executor.Report{Digest: o.digest}
	var errs []error
	for _, image := range o.images {
		fmt.Fprintf(stderr, "Scanning %s\n", image)
		generated, err := sbom.Generate(ctx, sbom.Source{Scheme: sbom.SchemeRegistry, Location: image}, options)
		if err == nil {
			report.SBOM = generated.JSON
			errs = nil
			break
		}
		errs = append(errs, err)
		var tooLarge *sbom.TooLargeError
		if errors.As(err, &tooLarge) {
			report.TooLarge = true
			break
		}
		report.Unauthorized = report.Unauthorized || errors.Is(err, sbom.ErrUnauthorized)
	}
	if len(errs) > 0 {
		report.Error = oneLine(errors.Join(errs...).Error())
		fmt.Fprintf(stderr, "Scan failed: %s\n", report.Error)
	}
	if err := sendReport(ctx, o, report); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "Reported to the manager")
	return nil
}

func sendReport(ctx context.Context, o *scanJobOptions, report executor.Report) error {
	token, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return fmt.Errorf("reading the token: %w", err)
	}
	body, err := reportBody(report)
	if err != nil {
		return err
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caFile != "" {
		ca, err := os.ReadFile(o.caFile)
		if err != nil {
			return fmt.Errorf("reading the CA: %w", err)
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(ca) {
			return fmt.Errorf("%s holds no PEM certificate", o.caFile)
		}
	}
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, o.reportURL, body)
	if err != nil {
		return err
	}
	request.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	request.Header.Set("Content-Type", "application/json")
	response, err := client.Do(request)
	if err != nil {
		return fmt.Errorf("reporting to %s: %w", o.reportURL, err)
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusNoContent {
		answer, _ := io.ReadAll(io.LimitReader(response.Body, 1024))
		return fmt.Errorf("the manager refused the report: %s: %s", response.Status, strings.TrimSpace(string(answer)))
	}
	return nil
}

// reportBody is report as JSON, with its SBOM, which syft's encoder wrote as valid JSON, sent as
// it is rather than copied into one more buffer of its size.
func reportBody(report executor.Report) (io.Reader, error) {
	sbomJSON := report.SBOM
	report.SBOM = nil
	head, err := json.Marshal(report)
	if err != nil {
		return nil, err
	}
	if len(sbomJSON) == 0 {
		return bytes.NewReader(head), nil
	}
	return io.MultiReader(bytes.NewReader(head[:len(head)-1]), strings.NewReader(`,"sbom":`),
		bytes.NewReader(sbomJSON), strings.NewReader("}")), nil
}
