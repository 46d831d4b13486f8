package app

import (
	"cmp"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

func newImagesCommand(stdout, stderr io.Writer) *cobra.Command {
	var output, search string
	var c *cluster
	cmd := &cobra.Command{
		Use:   "images [SEARCH]",
		Short: "List the scanned images, the most vulnerable first",
		Long: `List the images Vigil has seen (its ImageScans), the most vulnerable first: each image's
references, digest, scan phase, distribution, package count and vulnerabilities by severity.
SEARCH keeps the images whose reference or digest contains it.`,
		Example: `  vigil images
  vigil images shop/api -o wide`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "", "wide", "json", "yaml", "csv":
			default:
				return fmt.Errorf("--output %q: use wide, json, yaml or csv", output)
			}
			if len(args) == 1 {
				search = args[0]
			}
			k8s, err := c.client()
			if err != nil {
				return err
			}
			return runImages(cmd.Context(), k8s, search, output, stdout, stderr)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: wide, json, yaml or csv (a table by default)")
	c = addClusterFlags(cmd)
	return cmd
}

// runImages lists the ImageScans whose reference or digest contains search, the most vulnerable
// first, and writes them in output's format.
func runImages(ctx context.Context, k8s client.Client, search, output string, stdout, stderr io.Writer) error {
	var scans []vigilv1alpha1.ImageScan
	list := &vigilv1alpha1.ImageScanList{}
	options := []client.ListOption{client.Limit(500)}
	for {
		if err := k8s.List(ctx, list, options...); err != nil {
			return fmt.Errorf("listing image scans: %w", err)
		}
		for _, scan := range list.Items {
			if search == "" || strings.Contains(strings.ToLower(imageText(&scan)), strings.ToLower(search)) {
				scans = append(scans, scan)
			}
		}
		if list.Continue == "" {
			break
		}
		options = []client.ListOption{client.Limit(500), client.Continue(list.Continue)}
		list = &vigilv1alpha1.ImageScanList{}
	}
	slices.SortFunc(scans, func(a, b vigilv1alpha1.ImageScan) int {
		ac, bc := a.Status.SeverityCounts, b.Status.SeverityCounts
		return cmp.Or(cmp.Compare(bc.Critical, ac.Critical), cmp.Compare(bc.High, ac.High), cmp.Compare(bc.Medium, ac.Medium),
			cmp.Compare(bc.Low, ac.Low), cmp.Compare(imageOf(&a), imageOf(&b)))
	})
	switch output {
	case "json", "yaml":
		out := &vigilv1alpha1.ImageScanList{Items: scans}
		out.APIVersion, out.Kind = vigilv1alpha1.GroupVersion.String(), "ImageScanList"
		for i := range out.Items {
			out.Items[i].APIVersion, out.Items[i].Kind = vigilv1alpha1.GroupVersion.String(), "ImageScan"
		}
		return writeObject(stdout, output, out)
	case "csv":
		w := csv.NewWriter(stdout)
		_ = w.Write([]string{"image", "digest", "phase", "distro", "packages", "critical", "high", "medium", "low", "negligible", "unknown", "scanned"})
		for i := range scans {
			_ = w.Write(imageRow(&scans[i], true, true))
		}
		w.Flush()
		return w.Error()
	}
	if len(scans) == 0 {
		fmt.Fprintln(stderr, "No image scan matches.")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	if output == "wide" {
		fmt.Fprintln(tw, "IMAGE\tDIGEST\tPHASE\tDISTRO\tPACKAGES\tCRITICAL\tHIGH\tMEDIUM\tLOW\tNEGLIGIBLE\tUNKNOWN\tSCANNED\tREASON")
	} else {
		fmt.Fprintln(tw, "IMAGE\tDIGEST\tPHASE\tPACKAGES\tCRITICAL\tHIGH\tMEDIUM\tLOW\tSCANNED")
	}
	for i := range scans {
		row := imageRow(&scans[i], output == "wide", false)
		if output == "wide" {
			row = append(row, dash(reasonOf(&scans[i])))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// imageRow is an image's row: wide adds the distribution and the lesser severities; full keeps
// the whole digest and an absolute scan time.
func imageRow(scan *vigilv1alpha1.ImageScan, wide, full bool) []string {
	counts := scan.Status.SeverityCounts
	digest := scan.Spec.Digest
	if !full && len(digest) > 19 {
		digest = digest[:19]
	}
	packages, distro := "", ""
	if scan.Status.SBOM != nil {
		packages, distro = strconv.Itoa(int(scan.Status.SBOM.Packages)), scan.Status.SBOM.Distro
	}
	scanned := "-"
	if scan.Status.ScanTime != nil {
		scanned = ago(time.Now(), scan.Status.ScanTime.Time)
		if full {
			scanned = scan.Status.ScanTime.UTC().Format(time.RFC3339)
		}
	}
	n := func(v int32) string { return strconv.Itoa(int(v)) }
	if !wide {
		return []string{imageOf(scan), dash(digest), dash(string(scan.Status.Phase)), dash(packages), n(counts.Critical), n(counts.High), n(counts.Medium), n(counts.Low), scanned}
	}
	row := []string{imageOf(scan), dash(digest), dash(string(scan.Status.Phase)), dash(distro), dash(packages),
		n(counts.Critical), n(counts.High), n(counts.Medium), n(counts.Low), n(counts.Negligible), n(counts.Unknown), scanned}
	if full {
		for i, cell := range row {
			if cell == "-" {
				row[i] = ""
			}
		}
	}
	return row
}

// imageOf is the image's first reference, with the number of further ones.
func imageOf(scan *vigilv1alpha1.ImageScan) string {
	references := scan.Spec.References
	switch len(references) {
	case 0:
		return "-"
	case 1:
		return references[0].Image
	default:
		return fmt.Sprintf("%s (+%d)", references[0].Image, len(references)-1)
	}
}

// imageText is what a search of images looks in: every reference and the digest.
func imageText(scan *vigilv1alpha1.ImageScan) string {
	var text strings.Builder
	text.WriteString(scan.Spec.Digest)
	for _, reference := range scan.Spec.References {
		text.WriteString("\n" + reference.Image)
	}
	return text.String()
}

// reasonOf is the reason of the scan's failing condition, if any.
func reasonOf(scan *vigilv1alpha1.ImageScan) string {
	for _, condition := range scan.Status.Conditions {
		if condition.Status == "False" {
			return condition.Reason
		}
	}
	return ""
}
