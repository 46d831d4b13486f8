package v1alpha1

import "strings"

// Severity is the severity of a vulnerability as the vulnerability database rates it.
// +kubebuilder:validation:Enum=Critical;High;Medium;Low;Negligible;Unknown
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

// ParseSeverity reads a severity in any letter case ("critical", "HIGH"); ok is false for a word
// that names no severity.
func ParseSeverity(word string) (severity Severity, ok bool) {
	for _, s := range Severities {
		if strings.EqualFold(string(s), word) {
			return s, true
		}
	}
	return "", false
}

// Rank is the severity's place in Severities counted from 1: 1 for Critical, 6 for Unknown, and 6
// for a value that is not a severity. Sorting by rank ascending lists the most severe first.
func (s Severity) Rank() int32 {
	for i, known := range Severities {
		if s == known {
			return int32(i + 1)
		}
	}
	return int32(len(Severities))
}

// LabelValue is the severity as it is written in the SeverityLabel: lower case.
func (s Severity) LabelValue() string {
	return strings.ToLower(string(s))
}

// SeverityCounts counts vulnerabilities by severity.
type SeverityCounts struct {
	// +optional
	Critical int32 `json:"critical,omitempty"`
	// +optional
	High int32 `json:"high,omitempty"`
	// +optional
	Medium int32 `json:"medium,omitempty"`
	// +optional
	Low int32 `json:"low,omitempty"`
	// +optional
	Negligible int32 `json:"negligible,omitempty"`
	// +optional
	Unknown int32 `json:"unknown,omitempty"`
}

// Add counts one more vulnerability of the given severity.
func (c *SeverityCounts) Add(severity Severity) {
	switch severity {
	case SeverityCritical:
		c.Critical++
	case SeverityHigh:
		c.High++
	case SeverityMedium:
		c.Medium++
	case SeverityLow:
		c.Low++
	case SeverityNegligible:
		c.Negligible++
	default:
		c.Unknown++
	}
}

// Total is the number of vulnerabilities counted.
func (c SeverityCounts) Total() int32 {
	return c.Critical + c.High + c.Medium + c.Low + c.Negligible + c.Unknown
}
