package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/view"
)

func newVulnCommand(stdout io.Writer) *cobra.Command {
	var output string
	var c *cluster
	cmd := &cobra.Command{
		Use:     "vuln ID",
		Aliases: []string{"vulnerability"},
		Short:   "Show one vulnerability: what it is, the images it is in, the workloads that run it",
		Long: `Show one vulnerability that runs in the cluster, in three sections: the vulnerability
(severity, CVSS, description, links, each vulnerable package with its installed version and
the version that fixes it), the images it was found in, and the workloads that run it.

ID is a CVE, GHSA or distribution advisory ID, or an alias of one: a GHSA ID finds the CVE
it is recorded under.`,
		Example: `  vigil vuln CVE-2021-44228
  vigil vuln GHSA-jfh8-c2jp-5v3q
  kubectl vigil vuln cve-2023-0286 -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "", "json", "yaml":
			default:
				return fmt.Errorf("--output %q: use json or yaml", output)
			}
			return runVuln(cmd.Context(), c, args[0], output, stdout)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (the three sections by default)")
	c = addClusterFlags(cmd)
	return cmd
}

func runVuln(ctx context.Context, c *cluster, id, output string, stdout io.Writer) error {
	k8s, err := c.client()
	if err != nil {
		return err
	}
	vulnerability, err := view.Find(ctx, k8s, id)
	if errors.Is(err, view.ErrNotRunning) {
		return fmt.Errorf("%s does not run in the cluster now (or is not known by that ID)", id)
	}
	if err != nil {
		return err
	}
	if output != "" {
		vulnerability.APIVersion, vulnerability.Kind = vigilv1alpha1.GroupVersion.String(), "Vulnerability"
		return writeObject(stdout, output, vulnerability)
	}
	return writeVulnerability(stdout, vulnerability, time.Now())
}

// writeVulnerability writes the three sections of a vulnerability, in the order a reader needs.
func writeVulnerability(w io.Writer, v *vigilv1alpha1.Vulnerability, now time.Time) error {
	d := &v.Status.Details
	e := view.NewEntry(v)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	headline := fmt.Sprintf("%s  %s", d.ID, d.Severity)
	if score, ok := e.Score(); ok {
		headline += fmt.Sprintf("  CVSS %.1f", score)
	}
	if d.KnownExploited {
		headline += "  KNOWN EXPLOITED"
	}
	fmt.Fprintln(tw, headline)

	fmt.Fprintln(tw, "\nVULNERABILITY")
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "  %s:\t%s\n", name, value)
		}
	}
	field("Aliases", strings.Join(d.Aliases, ", "))
	for i, cvss := range d.CVSS {
		name := ""
		if i == 0 {
			name = "CVSS"
		}
		source := strings.TrimSpace(cvss.Source + " " + cvss.Version)
		if name == "" {
			fmt.Fprintf(tw, "  \t%.1f %s (%s)\n", cvss.BaseScore, cvss.Vector, source)
		} else {
			field(name, fmt.Sprintf("%.1f %s (%s)", cvss.BaseScore, cvss.Vector, source))
		}
	}
	if d.EPSS != nil {
		field("EPSS", fmt.Sprintf("%.2f%% (percentile %.0f)", d.EPSS.Score*100, d.EPSS.Percentile*100))
	}
	field("Fixable", map[bool]string{true: "yes: a fixing version is known", false: "no fixing version is known"}[e.Fixable()])
	field("Description", d.Description)
	for i, link := range d.Links {
		if i == 0 {
			field("Links", link)
		} else {
			fmt.Fprintf(tw, "  \t%s\n", link)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "  Packages:")
	tw = tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "    NAME\tTYPE\tINSTALLED\tFIXED-IN\tLOCATION")
	for _, p := range d.Packages {
		fixed := strings.Join(p.FixedIn, ", ")
		if fixed == "" {
			fixed = "(" + dash(string(p.FixState)) + ")"
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", p.Name, dash(p.Type), p.Installed, fixed, dash(p.Location))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nIMAGES (%s)\n", countOf(len(v.Status.Images), int(v.Status.ImageCount)))
	tw = tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "  IMAGE\tDIGEST")
	for _, image := range v.Status.Images {
		fmt.Fprintf(tw, "  %s\t%s\n", image.Image, image.Digest)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nWORKLOADS (%s)\n", countOf(len(v.Status.Workloads), int(v.Status.WorkloadCount)))
	tw = tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "  NAMESPACE\tKIND\tNAME\tCONTAINER\tLAST-DETECTED")
	for _, workload := range v.Status.Workloads {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s (%s)\n", workload.Namespace, workload.Kind, workload.Name, workload.Container,
			workload.LastDetected.UTC().Format(time.RFC3339), ago(now, workload.LastDetected.Time))
	}
	return tw.Flush()
}

// countOf is "n", or "listed of n" when the object lists fewer than it counts.
func countOf(listed, count int) string {
	if listed >= count {
		return fmt.Sprint(listed)
	}
	return fmt.Sprintf("%d listed of %d", listed, count)
}
