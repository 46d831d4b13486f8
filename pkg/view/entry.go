package view

import (
	"strings"
	"time"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// Entry is a Vulnerability with what a query reads of it worked out once: its search text, its
// scores, whether it is fixable and when it was last detected. An Entry is never modified; a
// changed Vulnerability gets a new Entry.
type Entry struct {
	// Vulnerability is the object as the API server returned it.
	Vulnerability *vigilv1alpha1.Vulnerability

	// text is the ID, aliases, package names and description in lower case, one per line.
	text string
	// rank is the severity's rank: 1 for Critical through 6 for Unknown.
	rank int32
	// score is the highest CVSS base score, -1 without one.
	score float64
	// epss is the EPSS score, -1 without one.
	epss float64
	// fixable is true when a fixing version of a vulnerable package is known.
	fixable bool
	// lastDetected is the latest LastDetected of the workloads.
	lastDetected time.Time
}

// NewEntry reads what queries need of vulnerability, which it keeps and must not be modified
// afterwards.
func NewEntry(vulnerability *vigilv1alpha1.Vulnerability) *Entry {
	details := &vulnerability.Status.Details
	var text strings.Builder
	text.WriteString(details.ID)
	for _, alias := range details.Aliases {
		text.WriteByte('\n')
		text.WriteString(alias)
	}
	for _, p := range details.Packages {
		text.WriteByte('\n')
		text.WriteString(p.Name)
	}
	text.WriteByte('\n')
	text.WriteString(details.Description)
	e := &Entry{
		Vulnerability: vulnerability,
		text:          strings.ToLower(text.String()),
		rank:          details.Severity.Rank(),
		score:         -1,
		epss:          -1,
		fixable:       details.Fixable(),
	}
	if details.Score != nil {
		e.score = *details.Score
	}
	if details.EPSS != nil {
		e.epss = details.EPSS.Score
	}
	for _, w := range vulnerability.Status.Workloads {
		if w.LastDetected.After(e.lastDetected) {
			e.lastDetected = w.LastDetected.Time
		}
	}
	return e
}

// ID is the vulnerability's ID, for example CVE-2021-44228.
func (e *Entry) ID() string { return e.Vulnerability.Status.Details.ID }

// Name is the Vulnerability's object name, for example cve-2021-44228.
func (e *Entry) Name() string { return e.Vulnerability.Name }

// Severity is the vulnerability's severity.
func (e *Entry) Severity() vigilv1alpha1.Severity { return e.Vulnerability.Status.Details.Severity }

// Score is the highest CVSS base score; ok is false without one.
func (e *Entry) Score() (score float64, ok bool) { return e.score, e.score >= 0 }

// EPSS is the EPSS score, a probability from 0 to 1; ok is false without one.
func (e *Entry) EPSS() (score float64, ok bool) { return e.epss, e.epss >= 0 }

// Fixable tells whether a version that fixes a vulnerable package is known.
func (e *Entry) Fixable() bool { return e.fixable }

// KnownExploited tells whether the vulnerability is in CISA's Known Exploited Vulnerabilities catalog.
func (e *Entry) KnownExploited() bool { return e.Vulnerability.Status.Details.KnownExploited }

// LastDetected is when a vulnerable container was last seen running; zero when no workload is listed.
func (e *Entry) LastDetected() time.Time { return e.lastDetected }

// Workloads counts the running workloads that have the vulnerability.
func (e *Entry) Workloads() int { return int(e.Vulnerability.Status.WorkloadCount) }

// Images counts the images that have the vulnerability.
func (e *Entry) Images() int { return int(e.Vulnerability.Status.ImageCount) }
