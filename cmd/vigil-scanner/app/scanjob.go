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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/cmd/internal/cli"
	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/pkg/sbom"
)

// scanJobOptions are the flags of `vigil-scanner scan-job`, which the manager sets on each scan Job.
type scanJobOptions struct {
	digest            string
	images            []string
	reportURL         string
	tokenFile         string
	caFile            string
	registryConfigDir string
	platform          string
	maxImageSize      int64
	maxSBOMSize       int64
	timeout           time.Duration
	reportTimeout     time.Duration
	plainHTTP         []string
	skipTLSVerify     []string
	// bounds and registry policy beyond --max-image-size and --max-sbom-size
	maxUncompressedSize int64
	maxLayers           int
	maxFiles            int64
	registryAllow       []string
	registryDeny        []string
	denyNetworks        []string
	allowNetworks       []string
	noCloudCredentials  bool
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
	flags.StringVar(&options.registryConfigDir, "registry-config-dir", "",
		"folder of docker config JSON files, N.json holding the pull credentials of the N-th --image (from 0)")
	flags.StringVar(&options.platform, "platform", sbom.DefaultPlatform, "platform to scan")
	flags.Int64Var(&options.maxImageSize, "max-image-size", 0, "largest image, compressed, in bytes (0: no bound)")
	flags.Int64Var(&options.maxSBOMSize, "max-sbom-size", 0, "largest SBOM in bytes (0: no bound)")
	flags.DurationVar(&options.timeout, "timeout", 30*time.Second, "time each registry request may take")
	flags.DurationVar(&options.reportTimeout, "report-timeout", 10*time.Minute,
		"time the report may take, retries included (the manager may be changing leaders)")
	flags.StringSliceVar(&options.plainHTTP, "plain-http", nil, "registry reached over plain HTTP")
	flags.StringSliceVar(&options.skipTLSVerify, "insecure-skip-tls-verify", nil, "registry whose certificate is not verified")
	flags.Int64Var(&options.maxUncompressedSize, "max-uncompressed-image-size", sbom.DefaultMaxUncompressedSize, "largest image, its layers decompressed, in bytes (0: no bound)")
	flags.IntVar(&options.maxLayers, "max-image-layers", sbom.DefaultMaxLayers, "most layers of an image (0: no bound)")
	flags.Int64Var(&options.maxFiles, "max-image-files", sbom.DefaultMaxFiles, "most files of an image, all layers together (0: no bound)")
	flags.StringArrayVar(&options.registryAllow, "registry-allow", nil, "registry images may come from (repeatable; none: every registry not denied)")
	flags.StringArrayVar(&options.registryDeny, "registry-deny", nil, "registry never contacted (repeatable)")
	defaultDeny := []string{}
	for _, network := range sbom.DefaultDenyNetworks() {
		defaultDeny = append(defaultDeny, network.String())
	}
	flags.StringArrayVar(&options.denyNetworks, "registry-deny-network", defaultDeny, `CIDR range no registry connection may reach (repeatable; "" denies none)`)
	flags.StringArrayVar(&options.allowNetworks, "registry-allow-network", nil, "CIDR range allowed inside the denied ones (repeatable)")
	flags.BoolVar(&options.noCloudCredentials, "no-cloud-credentials", false,
		"never authenticate with the node's or the workload's cloud identity (ECR, GCR/Artifact Registry, ACR)")
	for _, required := range []string{"digest", "image", "report-url", "token-file"} {
		_ = cmd.MarkFlagRequired(required)
	}
	return cmd
}

func runScanJob(ctx context.Context, o *scanJobOptions, stderr io.Writer) error {
	denyNetworks, err := sbom.ParseNetworks(o.denyNetworks)
	if err != nil {
		return fmt.Errorf("--registry-deny-network: %w", err)
	}
	allowNetworks, err := sbom.ParseNetworks(o.allowNetworks)
	if err != nil {
		return fmt.Errorf("--registry-allow-network: %w", err)
	}
	var errs []error
	for i, image := range o.images {
		options := sbom.Options{
			Platform: o.platform, MaxImageSize: o.maxImageSize, MaxSBOMSize: o.maxSBOMSize, Timeout: o.timeout,
			Registries:          sbom.RegistryAccessOf(o.plainHTTP, o.skipTLSVerify),
			MaxUncompressedSize: o.maxUncompressedSize, MaxLayers: o.maxLayers, MaxFiles: o.maxFiles,
			Policy:             sbom.RegistryPolicy{Allow: o.registryAllow, Deny: o.registryDeny, DenyNetworks: denyNetworks, AllowNetworks: allowNetworks},
			NoCloudCredentials: o.noCloudCredentials,
		}
		// Each reference is pulled with its own namespace's credentials, never another's.
		if o.registryConfigDir != "" {
			content, err := os.ReadFile(filepath.Join(o.registryConfigDir, strconv.Itoa(i)+".json"))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("reading the credentials of %s: %w", image, err)
			}
			if credentials, err := sbom.CredentialsFromDockerConfig(content); err == nil {
				options.Credentials = credentials
			}
		}
		fmt.Fprintf(stderr, "Scanning %s\n", image)
		generated, err := sbom.Generate(ctx, sbom.Source{Scheme: sbom.SchemeRegistry, Location: image}, options)
		if err == nil {
			fmt.Fprintf(stderr, "Reporting the SBOM of %s (%d bytes)\n", image, len(generated.JSON))
			return report(ctx, o, executor.ReportSBOM, generated.JSON, generated.ImageSize, stderr)
		}
		errs = append(errs, err)
		if errors.As(err, new(*sbom.TooLargeError)) {
			break // the same image from another reference is as large
		}
	}
	fmt.Fprintf(stderr, "Scan failed: %s\n", sbom.Sanitize(errors.Join(errs...).Error(), 4096))
	body, err := json.Marshal(failureOf(errs))
	if err != nil {
		return err
	}
	return report(ctx, o, executor.ReportFailure, body, 0, stderr)
}

// failureOf is the failure report of an attempt whose references failed with errs, one each.
// The manager writes its text into the ImageScan's status and Events: only Vigil's own short
// explanation of each failure, never text that a registry sent. The attempt counts as refused
// by the registry only when every reference was: a bogus pull secret in one namespace must not
// end the scan of an image that another namespace can pull.
func failureOf(errs []error) executor.Failure {
	failure := executor.Failure{Unauthorized: len(errs) > 0}
	messages := make([]string, len(errs))
	for i, err := range errs {
		_, messages[i] = sbom.Explain(err, "")
		failure.TooLarge = failure.TooLarge || errors.As(err, new(*sbom.TooLargeError))
		failure.Unauthorized = failure.Unauthorized && errors.Is(err, sbom.ErrUnauthorized)
	}
	failure.Error = cli.OneLine(strings.Join(messages, "; "))
	return failure
}

// report sends one report, trying again until it is recorded: the manager answers 503 from a
// replica that is not the leader, and may be changing leaders. Every try opens a new
// connection, so that the Service can pick another replica; the body is sent only once the
// manager has authenticated the request (Expect: 100-continue).
func report(ctx context.Context, o *scanJobOptions, kind string, body []byte, imageSize int64, stderr io.Writer) error {
	token, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return fmt.Errorf("reading the token: %w", err)
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
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: tlsConfig, DisableKeepAlives: true, ExpectContinueTimeout: 5 * time.Second,
		Proxy: http.ProxyFromEnvironment,
	}}
	ctx, cancel := context.WithTimeout(ctx, o.reportTimeout)
	defer cancel()
	wait := 500 * time.Millisecond
	for try := 1; ; try++ {
		status, answer, err := send(ctx, client, o.reportURL+"?kind="+kind, strings.TrimSpace(string(token)), body, imageSize)
		switch {
		case err == nil && status == http.StatusNoContent:
			fmt.Fprintln(stderr, "Reported to the manager")
			return nil
		case err == nil && status == http.StatusConflict:
			fmt.Fprintln(stderr, "The manager has recorded this scan already")
			return nil
		case err == nil && status == http.StatusRequestEntityTooLarge:
			fmt.Fprintf(stderr, "The manager recorded the SBOM as too large: %s\n", answer)
			return nil
		case err == nil && (status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusBadRequest):
			return fmt.Errorf("the manager refused the report: %d: %s", status, answer)
		case err == nil:
			err = fmt.Errorf("%d: %s", status, answer)
		}
		fmt.Fprintf(stderr, "Report try %d failed (%v); trying again in %s\n", try, err, wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("reporting to %s: %w (last: %v)", o.reportURL, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

func send(ctx context.Context, client *http.Client, url, token string, body []byte, imageSize int64) (int, string, error) {
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	request.Header.Set("Authorization", "Bearer "+token)
	request.Header.Set("Content-Type", "application/json")
	request.Header.Set("Expect", "100-continue")
	if imageSize > 0 {
		request.Header.Set(executor.ImageSizeHeader, strconv.FormatInt(imageSize, 10))
	}
	response, err := client.Do(request)
	if err != nil {
		return 0, "", err
	}
	defer response.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(response.Body, 1024))
	return response.StatusCode, strings.TrimSpace(string(answer)), nil
}
