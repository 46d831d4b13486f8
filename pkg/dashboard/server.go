package dashboard

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/view"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// DefaultPageSize is the number of vulnerabilities on a page of the list.
const DefaultPageSize = 50

// Options configure a dashboard.
type Options struct {
	// Config reads and watches Vulnerabilities: the user's credentials when the dashboard runs
	// on the user's machine, its service account's in the cluster.
	Config *rest.Config
	// Authorizer, when set, decides for every request whether its bearer token may see the
	// view. Without one the dashboard answers only requests addressed to a loopback host.
	Authorizer Authorizer
}

// Authorizer decides whether the bearer token of a request may see the view.
type Authorizer interface {
	// Authorize tells who the token is and whether they may list vulnerabilities; err is for
	// failures to ask, not for refusals.
	Authorize(ctx context.Context, token string) (user string, allowed bool, err error)
}

// Server is a running dashboard: an http.Handler fed by a watch of Vulnerabilities.
type Server struct {
	store      *store
	templates  *template.Template
	static     http.Handler
	authorizer Authorizer
	mux        *http.ServeMux
}

// New starts watching Vulnerabilities with options.Config until ctx ends, and returns the
// dashboard once the first list is in.
func New(ctx context.Context, options Options) (*Server, error) {
	s, err := newServer(options.Authorizer)
	if err != nil {
		return nil, err
	}
	if err := s.store.watch(ctx, options.Config); err != nil {
		return nil, err
	}
	return s, nil
}

func newServer(authorizer Authorizer) (*Server, error) {
	templates, err := template.New("").Funcs(funcs).ParseFS(templateFiles, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("reading the dashboard's templates: %w", err)
	}
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, err
	}
	s := &Server{store: newStore(), templates: templates, static: http.StripPrefix("/static/", http.FileServerFS(static)), authorizer: authorizer}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /{$}", s.list)
	s.mux.HandleFunc("GET /vulnerabilities.csv", s.csv)
	s.mux.HandleFunc("GET /vulnerabilities/{name}", s.detail)
	s.mux.HandleFunc("GET /events", s.events)
	s.mux.Handle("GET /static/", s.static)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	if authorizer != nil {
		s.mux.HandleFunc("GET /login", s.loginPage)
		s.mux.HandleFunc("POST /login", s.login)
		s.mux.HandleFunc("POST /logout", s.logout)
	}
	return s, nil
}

// ServeHTTP answers a request: the security headers, the host or token check, then the page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	header := w.Header()
	header.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	header.Set("X-Content-Type-Options", "nosniff")
	header.Set("X-Frame-Options", "DENY")
	header.Set("Referrer-Policy", "no-referrer")
	header.Set("Cache-Control", "no-store")
	if r.URL.Path == "/healthz" || strings.HasPrefix(r.URL.Path, "/static/") {
		s.mux.ServeHTTP(w, r)
		return
	}
	if s.authorizer == nil {
		// The local dashboard reads with the user's credentials: a page on any other site
		// must not reach it through a name that resolves to 127.0.0.1 (DNS rebinding).
		if !loopbackHost(r.Host) {
			http.Error(w, "The dashboard answers requests for localhost and loopback addresses only.", http.StatusMisdirectedRequest)
			return
		}
	} else if r.URL.Path != "/login" {
		var ok bool
		if r, ok = s.authorize(w, r); !ok {
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// loopbackHost tells whether the Host header names this machine: localhost or a loopback address.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// columns are the optional columns of the list, in order, and the ones shown by default.
var (
	columns        = []column{{"epss", "EPSS"}, {"kev", "Known exploited"}, {"fixed", "Fixed in"}, {"images", "Images"}, {"workloads", "Workloads"}, {"detected", "Last detected"}}
	defaultColumns = []string{"fixed", "workloads", "detected"}
)

type column struct{ Key, Label string }

// listPage is what the list's template shows.
type listPage struct {
	Query      view.Query
	Result     view.Result
	Error      string
	Columns    []column
	Shown      map[string]bool
	Severities []severityChip
	Sorts      []view.Sort
	Params     url.Values // the query and the columns: the page's own URL
	Now        time.Time
	User       string
	Login      bool
}

type severityChip struct {
	Severity vigilv1alpha1.Severity
	Value    string
	Count    int32
	Checked  bool
}

// parseList reads the list's query and columns from the URL; a bad query is reported, not run.
func parseList(r *http.Request) (view.Query, map[string]bool, url.Values, error) {
	values := r.URL.Query()
	q, err := view.ParseValues(values)
	if q.PageSize == 0 {
		q.PageSize = DefaultPageSize
	}
	shown := map[string]bool{}
	chosen := defaultColumns
	if values.Has("c") {
		chosen = values["col"]
	}
	for _, key := range chosen {
		if slices.ContainsFunc(columns, func(c column) bool { return c.Key == key }) {
			shown[key] = true
		}
	}
	params := q.Values()
	if q.PageSize == DefaultPageSize {
		params.Del(view.ParamPageSize)
	}
	if values.Has("c") {
		params.Set("c", "1")
		for _, c := range columns {
			if shown[c.Key] {
				params.Add("col", c.Key)
			}
		}
	}
	return q, shown, params, err
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q, shown, params, err := parseList(r)
	page := listPage{Query: q, Columns: columns, Shown: shown, Sorts: view.Sorts, Params: params, Now: time.Now(), User: user(r), Login: s.authorizer != nil}
	status := http.StatusOK
	if err != nil {
		page.Error, status = err.Error(), http.StatusBadRequest
	} else {
		entries, _ := s.store.snapshot()
		page.Result = q.Run(entries)
	}
	for _, severity := range vigilv1alpha1.Severities {
		page.Severities = append(page.Severities, severityChip{
			Severity: severity, Value: severity.LabelValue(), Count: countOf(page.Result.Counts, severity), Checked: slices.Contains(q.Severities, severity),
		})
	}
	name := "list.html"
	if r.URL.Query().Get("partial") == "results" {
		name = "results"
	}
	s.render(w, status, name, page)
}

func countOf(counts vigilv1alpha1.SeverityCounts, severity vigilv1alpha1.Severity) int32 {
	switch severity {
	case vigilv1alpha1.SeverityCritical:
		return counts.Critical
	case vigilv1alpha1.SeverityHigh:
		return counts.High
	case vigilv1alpha1.SeverityMedium:
		return counts.Medium
	case vigilv1alpha1.SeverityLow:
		return counts.Low
	case vigilv1alpha1.SeverityNegligible:
		return counts.Negligible
	}
	return counts.Unknown
}

func (s *Server) csv(w http.ResponseWriter, r *http.Request) {
	q, err := view.ParseValues(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q.Page, q.PageSize = 0, 0
	entries, _ := s.store.snapshot()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="vulnerabilities-%s.csv"`, time.Now().UTC().Format("20060102-150405")))
	_ = view.WriteCSV(w, q.Run(entries).Items)
}

// detailPage is what the detail's template shows.
type detailPage struct {
	Entry *view.Entry
	Name  string
	Now   time.Time
	User  string
	Login bool
}

func (s *Server) detail(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	entry := s.store.get(name)
	if entry == nil {
		// An alias (a GHSA ID, say) leads to the vulnerability it is recorded under.
		entries, _ := s.store.snapshot()
		if found := view.FindIn(entries, name); found != nil {
			http.Redirect(w, r, "/vulnerabilities/"+url.PathEscape(found.Name()), http.StatusFound)
			return
		}
	}
	page := detailPage{Entry: entry, Name: name, Now: time.Now(), User: user(r), Login: s.authorizer != nil}
	status := http.StatusOK
	if entry == nil {
		status = http.StatusNotFound
	}
	template := "detail.html"
	if r.URL.Query().Get("partial") == "detail" {
		template = "detail-body"
	}
	s.render(w, status, template, page)
}

// keepAlive is how often an idle event stream gets a comment, so that proxies keep it open.
const keepAlive = 25 * time.Second

// settle is how long the event stream waits after a change for the changes that come with it.
const settle = 100 * time.Millisecond

// events streams a "change" event whenever the vulnerabilities change, for the page to refresh
// what it shows.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "retry: 1000\n\n")
	flusher.Flush()
	_, changed := s.store.snapshot()
	ticker := time.NewTicker(keepAlive)
	defer ticker.Stop()
	for version := 1; ; version++ {
		select {
		case <-r.Context().Done():
			return
		case <-ticker.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case <-changed:
			select {
			case <-r.Context().Done():
				return
			case <-time.After(settle):
			}
			_, changed = s.store.snapshot()
			if _, err := fmt.Fprintf(w, "event: change\ndata: %d\n\n", version); err != nil {
				return
			}
		}
		flusher.Flush()
	}
}

func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	var out bytes.Buffer
	if err := s.templates.ExecuteTemplate(&out, name, data); err != nil {
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(out.Bytes())
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"score": func(e *view.Entry) string {
		if score, ok := e.Score(); ok {
			return strconv.FormatFloat(score, 'f', 1, 64)
		}
		return "–"
	},
	"epss": func(e *view.Entry) string {
		if score, ok := e.EPSS(); ok {
			return strconv.FormatFloat(score*100, 'f', 1, 64) + "%"
		}
		return "–"
	},
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		d := now.Sub(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh ago", int(d.Hours()))
		}
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	},
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"lower":   strings.ToLower,
	"join":    strings.Join,
	// withParam is the page's URL with a parameter set (an empty value removes it); the page number
	// goes back to 1 unless it is the parameter set.
	"withParam": func(params url.Values, name, value string) template.URL {
		next := url.Values{}
		for k, v := range params {
			next[k] = slices.Clone(v)
		}
		if name != view.ParamPage {
			next.Del(view.ParamPage)
		}
		if value == "" {
			next.Del(name)
		} else {
			next.Set(name, value)
		}
		return template.URL("?" + next.Encode())
	},
	"csvURL": func(params url.Values) template.URL {
		next := url.Values{}
		for k, v := range params {
			if k != view.ParamPage && k != view.ParamPageSize && k != "c" && k != "col" {
				next[k] = v
			}
		}
		return template.URL("/vulnerabilities.csv?" + next.Encode())
	},
	"workloadURL": func(w vigilv1alpha1.AffectedWorkload) template.URL {
		q := view.Query{Namespace: w.Namespace, WorkloadKind: w.Kind, WorkloadName: w.Name}
		return template.URL("/?" + q.Values().Encode())
	},
	"safeLink": func(link string) bool {
		u, err := url.Parse(link)
		return err == nil && (u.Scheme == "https" || u.Scheme == "http")
	},
	"add":  func(a, b int) int { return a + b },
	"mulf": func(f float64) float64 { return f * 100 },
	"int":  func(n int32) int { return int(n) },
	"sortKey": func(q view.Query) view.Sort {
		if q.Sort == "" {
			return view.SortSeverity
		}
		return q.Sort
	},
	"fixedIn": func(p vigilv1alpha1.VulnerablePackage) string {
		if len(p.FixedIn) > 0 {
			return strings.Join(p.FixedIn, ", ")
		}
		if p.FixState == vigilv1alpha1.FixStateWontFix {
			return "won't fix"
		}
		return "no fix known"
	},
}
