package match

import (
	"strings"
	"testing"
)

func TestFindingsAreSortedMostSevereFirst(t *testing.T) {
	finding := func(id string, severity Severity, name, version string, scores ...float64) Finding {
		f := Finding{Details: Details{ID: id, Severity: severity}, Package: Package{Name: name, Version: version}}
		for _, s := range scores {
			f.CVSS = append(f.CVSS, CVSS{BaseScore: s})
		}
		return f
	}
	findings := []Finding{
		finding("CVE-7", SeverityUnknown, "a", "1"),
		finding("CVE-6", SeverityLow, "a", "1"),
		finding("CVE-5", SeverityHigh, "b", "2"),
		finding("CVE-5", SeverityHigh, "b", "1"),
		finding("CVE-5", SeverityHigh, "a", "1"),
		finding("CVE-4", SeverityHigh, "a", "1", 7.5),
		finding("CVE-3", SeverityHigh, "a", "1", 5.0, 8.1),
		finding("CVE-2", SeverityCritical, "a", "1"),
		finding("CVE-1", Severity("Bogus"), "a", "1"),
	}
	SortFindings(findings)
	var got []string
	for _, f := range findings {
		got = append(got, f.ID+"/"+f.Package.Name+"@"+f.Package.Version)
	}
	want := "CVE-2/a@1 CVE-3/a@1 CVE-4/a@1 CVE-5/a@1 CVE-5/b@1 CVE-5/b@2 CVE-6/a@1 CVE-1/a@1 CVE-7/a@1"
	if strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}

func TestTheScoreOfAFindingIsItsHighestCVSS(t *testing.T) {
	tests := []struct {
		scores    []float64
		want      float64
		wantFound bool
	}{
		{},
		{scores: []float64{0}, want: 0, wantFound: true},
		{scores: []float64{5.3, 9.8, 7.5}, want: 9.8, wantFound: true},
		{scores: []float64{9.8, 5.3}, want: 9.8, wantFound: true},
	}
	for _, tc := range tests {
		var details Details
		for _, s := range tc.scores {
			details.CVSS = append(details.CVSS, CVSS{BaseScore: s})
		}
		if got, found := details.Score(); got != tc.want || found != tc.wantFound {
			t.Errorf("Score of %v = %v, %v; want %v, %v", tc.scores, got, found, tc.want, tc.wantFound)
		}
	}
}

func TestSeverityWordsAndRanks(t *testing.T) {
	for i, s := range Severities {
		if s.Rank() != i+1 {
			t.Errorf("%s ranks %d, want %d", s, s.Rank(), i+1)
		}
		if parsed, ok := ParseSeverity(strings.ToUpper(string(s))); !ok || parsed != s {
			t.Errorf("ParseSeverity(%q) = %q, %v", strings.ToUpper(string(s)), parsed, ok)
		}
	}
	if Severity("Bogus").Rank() != len(Severities) {
		t.Errorf("an unknown word ranks %d, want with Unknown", Severity("Bogus").Rank())
	}
	if _, ok := ParseSeverity("Bogus"); ok {
		t.Error("ParseSeverity accepted a word that is no severity")
	}
	if severityOf("bogus") != SeverityUnknown || severityOf("medium") != SeverityMedium {
		t.Error("severityOf does not map words to severities")
	}
	for word, want := range map[string]FixState{"fixed": FixStateFixed, "NOT-FIXED": FixStateNotFixed, "wont-fix": FixStateWontFix, "": FixStateUnknown, "soon": FixStateUnknown} {
		if got := fixStateOf(word); got != want {
			t.Errorf("fixStateOf(%q) = %q, want %q", word, got, want)
		}
	}
}

func TestFindingsThatSortAlikeKeepTheirOrder(t *testing.T) {
	// The same vulnerability of the same package version found twice (a deb and a binary of one
	// name): the sort must not reorder them, so that reports stay the same from one scan to the next.
	findings := []Finding{
		{Details: Details{ID: "CVE-1", Severity: SeverityHigh}, Package: Package{Name: "openssl", Version: "3.0.7", Type: "deb"}},
		{Details: Details{ID: "CVE-1", Severity: SeverityHigh}, Package: Package{Name: "openssl", Version: "3.0.7", Type: "binary"}},
		{Details: Details{ID: "CVE-1", Severity: SeverityHigh}, Package: Package{Name: "openssl", Version: "3.0.7", Type: "apk"}},
	}
	SortFindings(findings)
	var got []string
	for _, f := range findings {
		got = append(got, f.Package.Type)
	}
	if strings.Join(got, " ") != "deb binary apk" {
		t.Errorf("order %v, want deb binary apk as given", got)
	}
}
