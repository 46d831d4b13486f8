package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
)

// ImageScanName is the name of the ImageScan of an image digest: "sha256:9f2c…" is named
// "sha256-9f2c…".
func ImageScanName(digest string) string {
	return strings.Replace(digest, ":", "-", 1)
}

// VulnerabilityName is the name of the Vulnerability of a vulnerability ID: the ID in lower case,
// with every character that a Kubernetes name cannot hold replaced by a dash, for example
// "CVE-2021-44228" → "cve-2021-44228" and "RHSA-2023:1234" → "rhsa-2023-1234".
func VulnerabilityName(id string) string {
	name := []byte(strings.ToLower(id))
	for i, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			name[i] = '-'
		}
	}
	trimmed := strings.Trim(string(name), "-.")
	if len(trimmed) > 253 {
		trimmed = strings.TrimRight(trimmed[:253], "-.")
	}
	return trimmed
}

// Labels are the labels that make a Vulnerability selectable with `kubectl get -l`: its severity,
// whether it is fixable and, when it has a CVSS score, the score times ten.
func (d VulnerabilityDetails) Labels() map[string]string {
	labels := map[string]string{SeverityLabel: d.Severity.LabelValue(), FixableLabel: strconv.FormatBool(d.Fixable())}
	if d.Score != nil {
		labels[CVSSLabel] = strconv.Itoa(int(math.Round(*d.Score * 10)))
	}
	return labels
}

// Fixable tells whether a version that fixes one of the vulnerable packages is known.
func (d VulnerabilityDetails) Fixable() bool {
	for _, p := range d.Packages {
		if p.FixState == FixStateFixed || len(p.FixedIn) > 0 {
			return true
		}
	}
	return d.FixedInSummary != ""
}

// Namespace opt-out: a namespace labelled vigil.dev/scanning=disabled is not watched by the
// admission webhook, gets no scanning RBAC, and its workloads are not reported.
const (
	// ScanningLabel is the namespace label that opts a namespace out of scanning.
	ScanningLabel = "vigil.dev/scanning"
	// ScanningDisabled is the ScanningLabel value that opts out.
	ScanningDisabled = "disabled"
)

// ReferenceScanName is the name of the ImageScan that records an image reference whose digest
// is not known yet: "ref-" and the SHA-256 of the reference.
func ReferenceScanName(image string) string {
	sum := sha256.Sum256([]byte(image))
	return "ref-" + hex.EncodeToString(sum[:])
}

// AddReference adds reference to the spec, one entry per image and namespace: an entry of the
// same image and namespace takes the new workload. It keeps at most MaxImageReferences entries
// and tells whether the spec changed.
func (s *ImageScanSpec) AddReference(reference ImageReference) bool {
	for i, existing := range s.References {
		if existing.Image != reference.Image || existing.Namespace != reference.Namespace {
			continue
		}
		if reference.Workload == nil || (existing.Workload != nil && *existing.Workload == *reference.Workload) {
			return false
		}
		s.References[i] = reference
		return true
	}
	if len(s.References) >= MaxImageReferences {
		return false
	}
	s.References = append(s.References, reference)
	return true
}

// Truncate shortens s to at most n bytes, on a rune boundary, to fit a field's maximum length.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut]
}

// RankOf is the Rank of a vulnerability of severity with the highest CVSS score score (nil when
// it has none).
func RankOf(severity Severity, score *float64) int32 {
	rank := severity.Rank() * 1000
	if score == nil {
		return rank + 999
	}
	return rank + 1000 - int32(math.Round(*score*10))
}
