package view

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// Sort is an order of the view.
type Sort string

// The orders of the view. Every order ends on the default one, then on the ID, so that a page
// never shuffles between two requests.
const (
	// SortSeverity lists the most severe first, the highest CVSS score first within a severity.
	SortSeverity Sort = "severity"
	// SortCVSS lists the highest CVSS score first.
	SortCVSS Sort = "cvss"
	// SortEPSS lists the highest EPSS score first.
	SortEPSS Sort = "epss"
	// SortWorkloads lists the vulnerabilities that run in the most workloads first.
	SortWorkloads Sort = "workloads"
	// SortName lists by ID, alphabetically.
	SortName Sort = "name"
	// SortLastDetected lists the most recently detected first.
	SortLastDetected Sort = "detected"
)

// Sorts lists every order, the default first.
var Sorts = []Sort{SortSeverity, SortCVSS, SortEPSS, SortWorkloads, SortName, SortLastDetected}

// MaxPageSize bounds the page size that a query may ask for.
const MaxPageSize = 1000

// Query is what a user asks of the view. Its zero value lists everything in the default order.
type Query struct {
	// Search keeps the vulnerabilities whose ID, an alias, a package name or the description
	// contains it, in any letter case.
	Search string
	// Severities keeps the vulnerabilities of these severities; empty keeps all.
	Severities []vigilv1alpha1.Severity
	// MinCVSS and MaxCVSS keep the vulnerabilities whose highest CVSS score is in the range,
	// both ends included; a vulnerability without a score is left out once either is set.
	MinCVSS, MaxCVSS *float64
	// Namespace, WorkloadKind and WorkloadName keep the vulnerabilities that run in a workload
	// of that namespace, kind (any letter case) and name; an empty one matches all.
	Namespace, WorkloadKind, WorkloadName string
	// Image keeps the vulnerabilities found in an image whose reference or digest contains it.
	Image string
	// Fixable keeps only the vulnerabilities for which a fixing version is known.
	Fixable bool
	// KnownExploited keeps only the vulnerabilities in CISA's Known Exploited Vulnerabilities catalog.
	KnownExploited bool
	// Sort is the order; empty means SortSeverity.
	Sort Sort
	// Page is the page asked for, from 1; 0 means 1.
	Page int
	// PageSize is the number of vulnerabilities per page; 0 puts all of them on one page.
	PageSize int
}

// Validate tells what is wrong with the query, in words a user can act on.
func (q Query) Validate() error {
	var errs []error
	for _, bound := range []struct {
		name  string
		value *float64
	}{{"minimum CVSS score", q.MinCVSS}, {"maximum CVSS score", q.MaxCVSS}} {
		if bound.value != nil && !(*bound.value >= 0 && *bound.value <= 10) {
			errs = append(errs, fmt.Errorf("the %s must be from 0 to 10, not %v", bound.name, *bound.value))
		}
	}
	if q.MinCVSS != nil && q.MaxCVSS != nil && *q.MinCVSS > *q.MaxCVSS {
		errs = append(errs, fmt.Errorf("the minimum CVSS score %v is above the maximum %v", *q.MinCVSS, *q.MaxCVSS))
	}
	for _, s := range q.Severities {
		if !slices.Contains(vigilv1alpha1.Severities, s) {
			errs = append(errs, fmt.Errorf("%q is not a severity (one of %s)", s, severityWords()))
		}
	}
	if q.Sort != "" && !slices.Contains(Sorts, q.Sort) {
		errs = append(errs, fmt.Errorf("%q is not an order (one of %s)", q.Sort, sortWords()))
	}
	if q.Page < 0 {
		errs = append(errs, fmt.Errorf("the page must be 1 or more, not %d", q.Page))
	}
	if q.PageSize < 0 || q.PageSize > MaxPageSize {
		errs = append(errs, fmt.Errorf("the page size must be from 1 to %d, not %d", MaxPageSize, q.PageSize))
	}
	return errors.Join(errs...)
}

// Result is a page of the view.
type Result struct {
	// Items are the page's vulnerabilities, in the query's order.
	Items []*Entry
	// Total counts the vulnerabilities that the query keeps, on every page.
	Total int
	// Counts counts by severity the vulnerabilities that every filter but the severities keeps:
	// what each severity would add or remove.
	Counts vigilv1alpha1.SeverityCounts
	// Page is the page's number, from 1, and Pages the number of pages (at least 1).
	Page, Pages int
}

// Run answers the query over entries, which it does not modify.
func (q Query) Run(entries []*Entry) Result {
	search := strings.ToLower(strings.TrimSpace(q.Search))
	image := strings.ToLower(strings.TrimSpace(q.Image))
	var kept []*Entry
	result := Result{}
	for _, e := range entries {
		if !q.keeps(e, search, image) {
			continue
		}
		result.Counts.Add(e.Severity())
		if len(q.Severities) > 0 && !slices.Contains(q.Severities, e.Severity()) {
			continue
		}
		kept = append(kept, e)
	}
	slices.SortFunc(kept, q.compare)
	result.Total = len(kept)
	result.Page, result.Pages = max(q.Page, 1), 1
	if q.PageSize > 0 {
		result.Pages = max((len(kept)+q.PageSize-1)/q.PageSize, 1)
		start := min((result.Page-1)*q.PageSize, len(kept))
		kept = kept[start:min(start+q.PageSize, len(kept))]
	}
	result.Items = kept
	return result
}

// keeps tells whether every filter but the severities keeps e; search and image are in lower case.
func (q Query) keeps(e *Entry, search, image string) bool {
	if search != "" && !strings.Contains(e.text, search) {
		return false
	}
	if q.MinCVSS != nil || q.MaxCVSS != nil {
		score, ok := e.Score()
		if !ok || (q.MinCVSS != nil && score < *q.MinCVSS) || (q.MaxCVSS != nil && score > *q.MaxCVSS) {
			return false
		}
	}
	if q.Fixable && !e.Fixable() {
		return false
	}
	if q.KnownExploited && !e.KnownExploited() {
		return false
	}
	if q.Namespace != "" || q.WorkloadKind != "" || q.WorkloadName != "" {
		if !slices.ContainsFunc(e.Vulnerability.Status.Workloads, q.MatchesWorkload) {
			return false
		}
	}
	if image != "" && !slices.ContainsFunc(e.Vulnerability.Status.Images, func(i vigilv1alpha1.AffectedImage) bool {
		return strings.Contains(strings.ToLower(i.Image), image) || strings.Contains(i.Digest, image)
	}) {
		return false
	}
	return true
}

// MatchesWorkload tells whether w is of the query's namespace, workload kind and workload name.
func (q Query) MatchesWorkload(w vigilv1alpha1.AffectedWorkload) bool {
	return (q.Namespace == "" || w.Namespace == q.Namespace) &&
		(q.WorkloadKind == "" || strings.EqualFold(w.Kind, q.WorkloadKind)) &&
		(q.WorkloadName == "" || w.Name == q.WorkloadName)
}

// compare orders a before b (negative) or after it (positive) in the query's order.
func (q Query) compare(a, b *Entry) int {
	var c int
	switch q.Sort {
	case SortCVSS:
		c = cmp.Compare(b.score, a.score)
	case SortEPSS:
		c = cmp.Compare(b.epss, a.epss)
	case SortWorkloads:
		c = cmp.Compare(b.Workloads(), a.Workloads())
	case SortName:
		c = strings.Compare(a.ID(), b.ID())
	case SortLastDetected:
		c = b.lastDetected.Compare(a.lastDetected)
	}
	if c != 0 {
		return c
	}
	if c = cmp.Compare(a.rank, b.rank); c != 0 {
		return c
	}
	if c = cmp.Compare(b.score, a.score); c != 0 {
		return c
	}
	return strings.Compare(a.ID(), b.ID())
}

// The URL parameters of a query.
const (
	ParamSearch    = "q"
	ParamSeverity  = "severity"
	ParamMinCVSS   = "cvss-min"
	ParamMaxCVSS   = "cvss-max"
	ParamNamespace = "namespace"
	ParamKind      = "kind"
	ParamWorkload  = "workload"
	ParamImage     = "image"
	ParamFixable   = "fixable"
	ParamExploited = "exploited"
	ParamSort      = "sort"
	ParamPage      = "page"
	ParamPageSize  = "per-page"
)

// ParseValues reads a query from URL parameters, the way Values writes it. Empty parameters are
// ignored; severities may be repeated or separated by commas, in any letter case.
func ParseValues(values url.Values) (Query, error) {
	q := Query{
		Search: strings.TrimSpace(values.Get(ParamSearch)), Namespace: strings.TrimSpace(values.Get(ParamNamespace)),
		WorkloadKind: strings.TrimSpace(values.Get(ParamKind)), WorkloadName: strings.TrimSpace(values.Get(ParamWorkload)),
		Image: strings.TrimSpace(values.Get(ParamImage)), Sort: Sort(strings.ToLower(strings.TrimSpace(values.Get(ParamSort)))),
	}
	var errs []error
	severities, err := ParseSeverities(values[ParamSeverity]...)
	if err != nil {
		errs = append(errs, err)
	}
	q.Severities = severities
	for _, p := range []struct {
		name  string
		value **float64
	}{{ParamMinCVSS, &q.MinCVSS}, {ParamMaxCVSS, &q.MaxCVSS}} {
		if text := strings.TrimSpace(values.Get(p.name)); text != "" {
			f, err := strconv.ParseFloat(text, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a number", p.name, text))
				continue
			}
			*p.value = &f
		}
	}
	for _, p := range []struct {
		name  string
		value *bool
	}{{ParamFixable, &q.Fixable}, {ParamExploited, &q.KnownExploited}} {
		if text := strings.TrimSpace(values.Get(p.name)); text != "" {
			b, err := strconv.ParseBool(text)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is neither true nor false", p.name, text))
				continue
			}
			*p.value = b
		}
	}
	for _, p := range []struct {
		name  string
		value *int
	}{{ParamPage, &q.Page}, {ParamPageSize, &q.PageSize}} {
		if text := strings.TrimSpace(values.Get(p.name)); text != "" {
			n, err := strconv.Atoi(text)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a whole number", p.name, text))
				continue
			}
			*p.value = n
		}
	}
	if len(errs) > 0 {
		return q, errors.Join(errs...)
	}
	return q, q.Validate()
}

// Values writes the query as URL parameters, leaving out what is the default.
func (q Query) Values() url.Values {
	values := url.Values{}
	set := func(name, value string) {
		if value != "" {
			values.Set(name, value)
		}
	}
	set(ParamSearch, q.Search)
	for _, s := range q.Severities {
		values.Add(ParamSeverity, s.LabelValue())
	}
	if q.MinCVSS != nil {
		set(ParamMinCVSS, strconv.FormatFloat(*q.MinCVSS, 'f', -1, 64))
	}
	if q.MaxCVSS != nil {
		set(ParamMaxCVSS, strconv.FormatFloat(*q.MaxCVSS, 'f', -1, 64))
	}
	set(ParamNamespace, q.Namespace)
	set(ParamKind, q.WorkloadKind)
	set(ParamWorkload, q.WorkloadName)
	set(ParamImage, q.Image)
	if q.Fixable {
		set(ParamFixable, "true")
	}
	if q.KnownExploited {
		set(ParamExploited, "true")
	}
	if q.Sort != SortSeverity {
		set(ParamSort, string(q.Sort))
	}
	if q.Page > 1 {
		set(ParamPage, strconv.Itoa(q.Page))
	}
	if q.PageSize > 0 {
		set(ParamPageSize, strconv.Itoa(q.PageSize))
	}
	return values
}

// ParseSeverities reads severities given one by one or separated by commas, in any letter case,
// each once, most severe first.
func ParseSeverities(words ...string) ([]vigilv1alpha1.Severity, error) {
	var severities []vigilv1alpha1.Severity
	var errs []error
	for _, word := range words {
		for part := range strings.SplitSeq(word, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			s, ok := vigilv1alpha1.ParseSeverity(part)
			if !ok {
				errs = append(errs, fmt.Errorf("%q is not a severity (one of %s)", part, severityWords()))
				continue
			}
			if !slices.Contains(severities, s) {
				severities = append(severities, s)
			}
		}
	}
	slices.SortFunc(severities, func(a, b vigilv1alpha1.Severity) int { return cmp.Compare(a.Rank(), b.Rank()) })
	return severities, errors.Join(errs...)
}

func severityWords() string {
	words := make([]string, len(vigilv1alpha1.Severities))
	for i, s := range vigilv1alpha1.Severities {
		words[i] = s.LabelValue()
	}
	return strings.Join(words, ", ")
}

func sortWords() string {
	words := make([]string, len(Sorts))
	for i, s := range Sorts {
		words[i] = string(s)
	}
	return strings.Join(words, ", ")
}
