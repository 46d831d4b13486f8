package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/view"
)

// vulnsOptions are the flags of `vigil vulns` and `vigil workload`.
type vulnsOptions struct {
	cluster    *cluster
	output     string
	search     string
	severities []string
	minCVSS    float64
	maxCVSS    float64
	workload   string
	image      string
	fixable    bool
	exploited  bool
	sort       string
	limit      int
	page       int
}

func newVulnsCommand(stdout, stderr io.Writer) *cobra.Command {
	o := &vulnsOptions{}
	cmd := &cobra.Command{
		Use:     "vulns [SEARCH]",
		Aliases: []string{"vulnerabilities"},
		Short:   "List the vulnerabilities that run in the cluster, most severe first",
		Long: `List the vulnerabilities that run in the cluster now, most severe first (then by CVSS
score), with your own kubeconfig and RBAC (you need to list vulnerabilities.vigil.dev).

SEARCH (or --search) keeps the vulnerabilities whose ID, an alias (such as a GHSA ID or a
distribution advisory), a package name or the description contains it, in any letter case.
--namespace keeps what runs in that namespace; without it every namespace is listed.`,
		Example: `  vigil vulns --severity critical,high --min-cvss 9
  vigil vulns log4j
  vigil vulns --search GHSA-jfh8-c2jp-5v3q -o wide
  vigil vulns -n shop --fixable -o csv > shop.csv
  kubectl vigil vulns --context prod --sort epss`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if o.search != "" {
					return errors.New("give the search once: as SEARCH or as --search")
				}
				o.search = args[0]
			}
			query, err := o.query(cmd)
			if err != nil {
				return err
			}
			return o.run(cmd.Context(), query, stdout, stderr)
		},
	}
	o.addFlags(cmd, true)
	return cmd
}

func newWorkloadCommand(stdout, stderr io.Writer) *cobra.Command {
	o := &vulnsOptions{}
	cmd := &cobra.Command{
		Use:   "workload NAMESPACE/KIND/NAME",
		Short: "List the vulnerabilities that run in one workload",
		Long: `List the vulnerabilities that run in one workload now, most severe first: a Deployment,
StatefulSet, DaemonSet, CronJob, Job, ReplicaSet or bare Pod. KIND/NAME alone means the
workload in --namespace (or the kubeconfig context's namespace).`,
		Example: `  vigil workload shop/Deployment/api
  vigil workload -n jobs CronJob/nightly-report --severity critical`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			namespace, _, err := o.cluster.namespace()
			if err != nil {
				return err
			}
			workload, err := view.ParseWorkload(args[0], namespace)
			if err != nil {
				return err
			}
			query, err := o.query(cmd)
			if err != nil {
				return err
			}
			query.Namespace, query.WorkloadKind, query.WorkloadName = workload.Namespace, workload.WorkloadKind, workload.WorkloadName
			return o.run(cmd.Context(), query, stdout, stderr)
		},
	}
	o.addFlags(cmd, false)
	return cmd
}

func (o *vulnsOptions) addFlags(cmd *cobra.Command, all bool) {
	flags := cmd.Flags()
	flags.StringVarP(&o.output, "output", "o", "", "output format: wide, json, yaml or csv (a table by default)")
	flags.StringSliceVar(&o.severities, "severity", nil, "keep these severities: critical, high, medium, low, negligible, unknown (comma-separated or repeated)")
	flags.Float64Var(&o.minCVSS, "min-cvss", 0, "keep the vulnerabilities whose CVSS score is at least this (those without a score are left out)")
	flags.Float64Var(&o.maxCVSS, "max-cvss", 10, "keep the vulnerabilities whose CVSS score is at most this (those without a score are left out)")
	flags.BoolVar(&o.fixable, "fixable", false, "keep the vulnerabilities for which a fixing version is known")
	flags.BoolVar(&o.exploited, "known-exploited", false, "keep the vulnerabilities in CISA's Known Exploited Vulnerabilities catalog")
	flags.StringVar(&o.sort, "sort", string(view.SortSeverity), "order: severity (then CVSS), cvss, epss, workloads, name or detected")
	flags.IntVar(&o.limit, "limit", 0, "list at most this many (a page); 0 lists all")
	flags.IntVar(&o.page, "page", 1, "the page to list, with --limit")
	if all {
		flags.StringVar(&o.search, "search", "", "keep the vulnerabilities whose ID, alias, package name or description contains this")
		flags.StringVar(&o.workload, "workload", "", "keep what runs in this workload: KIND/NAME or NAME, in --namespace (or every namespace)")
		flags.StringVar(&o.image, "image", "", "keep the vulnerabilities found in an image whose reference or digest contains this")
	}
	o.cluster = addClusterFlags(cmd)
}

// query is the view query of the flags.
func (o *vulnsOptions) query(cmd *cobra.Command) (view.Query, error) {
	switch o.output {
	case "", "wide", "json", "yaml", "csv":
	default:
		return view.Query{}, fmt.Errorf("--output %q: use wide, json, yaml or csv", o.output)
	}
	severities, err := view.ParseSeverities(o.severities...)
	if err != nil {
		return view.Query{}, fmt.Errorf("--severity: %w", err)
	}
	q := view.Query{
		Search: o.search, Severities: severities, Image: o.image, Fixable: o.fixable, KnownExploited: o.exploited,
		Sort: view.Sort(strings.ToLower(o.sort)), PageSize: o.limit, Page: o.page,
	}
	if cmd.Flags().Changed("min-cvss") {
		q.MinCVSS = &o.minCVSS
	}
	if cmd.Flags().Changed("max-cvss") {
		q.MaxCVSS = &o.maxCVSS
	}
	if namespace, explicit, err := o.cluster.namespace(); err != nil {
		return q, err
	} else if explicit {
		q.Namespace = namespace
	}
	if o.workload != "" {
		kind, name, found := strings.Cut(o.workload, "/")
		if !found {
			kind, name = "", kind
		}
		if name == "" || strings.Contains(name, "/") {
			return q, fmt.Errorf("--workload %q: write KIND/NAME or NAME, with --namespace for the namespace", o.workload)
		}
		q.WorkloadKind, q.WorkloadName = kind, name
	}
	if err := q.Validate(); err != nil {
		return q, err
	}
	return q, nil
}

func (o *vulnsOptions) run(ctx context.Context, q view.Query, stdout, stderr io.Writer) error {
	c, err := o.cluster.client()
	if err != nil {
		return err
	}
	entries, err := view.List(ctx, c)
	if err != nil {
		return err
	}
	result := q.Run(entries)
	switch o.output {
	case "json", "yaml":
		return writeList(stdout, o.output, result.Items)
	case "csv":
		return view.WriteCSV(stdout, result.Items)
	}
	if result.Total == 0 {
		fmt.Fprintln(stderr, "No vulnerability that matches runs in the cluster.")
		return nil
	}
	if err := writeVulnTable(stdout, result.Items, o.output == "wide", q); err != nil {
		return err
	}
	if len(result.Items) < result.Total {
		fmt.Fprintf(stderr, "Page %d of %d: %d of %d vulnerabilities (--page for the others).\n", result.Page, result.Pages, len(result.Items), result.Total)
	}
	return nil
}

// writeList writes entries as a VulnerabilityList, as `kubectl get -o json|yaml` does.
func writeList(w io.Writer, format string, entries []*view.Entry) error {
	list := &vigilv1alpha1.VulnerabilityList{Items: make([]vigilv1alpha1.Vulnerability, len(entries))}
	list.APIVersion, list.Kind = vigilv1alpha1.GroupVersion.String(), "VulnerabilityList"
	for i, e := range entries {
		list.Items[i] = *e.Vulnerability
		list.Items[i].APIVersion, list.Items[i].Kind = vigilv1alpha1.GroupVersion.String(), "Vulnerability"
	}
	return writeObject(w, format, list)
}

func writeObject(w io.Writer, format string, object any) error {
	var out []byte
	var err error
	if format == "yaml" {
		out, err = yaml.Marshal(object)
	} else {
		out, err = json.MarshalIndent(object, "", "    ")
		out = append(out, '\n')
	}
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// writeVulnTable writes the table of `vigil vulns`; for a query of one workload, it names the
// workload's vulnerable containers.
func writeVulnTable(w io.Writer, entries []*view.Entry, wide bool, q view.Query) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	header := "ID\tSEVERITY\tCVSS\tPACKAGE\tFIXED-IN\tWORKLOADS\tLAST-DETECTED"
	containers := q.WorkloadName != ""
	if containers {
		header = "ID\tSEVERITY\tCVSS\tPACKAGE\tFIXED-IN\tCONTAINERS\tLAST-DETECTED"
	}
	if wide {
		header += "\tEPSS\tKEV\tIMAGES\tALIASES"
	}
	fmt.Fprintln(tw, header)
	now := time.Now()
	for _, e := range entries {
		details := &e.Vulnerability.Status.Details
		row := []string{
			details.ID, string(details.Severity), scoreText(e), dash(details.PackageSummary), dash(details.FixedInSummary),
			strconv.Itoa(e.Workloads()), ago(now, e.LastDetected()),
		}
		if containers {
			var names []string
			for _, workload := range e.Vulnerability.Status.Workloads {
				if q.MatchesWorkload(workload) && !slices.Contains(names, workload.Container) {
					names = append(names, workload.Container)
				}
			}
			row[5] = strings.Join(names, ",")
		}
		if wide {
			epss := "-"
			if score, ok := e.EPSS(); ok {
				epss = fmt.Sprintf("%.1f%%", score*100)
			}
			kev := "-"
			if e.KnownExploited() {
				kev = "yes"
			}
			row = append(row, epss, kev, strconv.Itoa(e.Images()), dash(strings.Join(details.Aliases, ",")))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func scoreText(e *view.Entry) string {
	if score, ok := e.Score(); ok {
		return strconv.FormatFloat(score, 'f', 1, 64)
	}
	return "-"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago writes how long before now t was, as kubectl's AGE column does.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(t)) + " ago"
}
