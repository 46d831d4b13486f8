package match

import "strings"

// Severity is a vulnerability's severity as the vulnerability database rates it.
type Severity string

// The severities, most severe first.
const (
	SeverityCritical   Severity = "Critical"
	SeverityHigh       Severity = "High"
	SeverityMedium     Severity = "Medium"
	SeverityLow        Severity = "Low"
	SeverityNegligible Severity = "Negligible"
	SeverityUnknown    Severity = "Unknown"
)

// Severities lists every severity, most severe first.
var Severities = []Severity{
	SeverityCritical, SeverityHigh, SeverityMedium, SeverityLow, SeverityNegligible, SeverityUnknown,
}

// ParseSeverity reads a severity in any letter case; ok is false for a word that names none.
func ParseSeverity(word string) (severity Severity, ok bool) {
	for _, s := range Severities {
		if strings.EqualFold(string(s), word) {
			return s, true
		}
	}
	return "", false
}

// Rank is the severity's place in Severities counted from 1 (Critical) to 6 (Unknown, and any
// value that is not a severity).
func (s Severity) Rank() int {
	for i, known := range Severities {
		if s == known {
			return i + 1
		}
	}
	return len(Severities)
}

// CVSS is one CVSS rating of a vulnerability.
type CVSS struct {
	Source    string  `json:"source,omitempty"`
	Version   string  `json:"version,omitempty"`
	Vector    string  `json:"vector,omitempty"`
	BaseScore float64 `json:"baseScore"`
}

// EPSS is an Exploit Prediction Scoring System rating.
type EPSS struct {
	Score      float64 `json:"score"`
	Percentile float64 `json:"percentile"`
	Date       string  `json:"date,omitempty"`
}

// FixState says whether a fix for a vulnerable package is known.
type FixState string

// The fix states.
const (
	FixStateFixed    FixState = "fixed"
	FixStateNotFixed FixState = "not-fixed"
	FixStateWontFix  FixState = "wont-fix"
	FixStateUnknown  FixState = "unknown"
)

// Reference names a vulnerability record in the database: its ID and namespace (for example
// CVE-2021-44228 in nvd:cpe).
type Reference struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace,omitempty"`
}
