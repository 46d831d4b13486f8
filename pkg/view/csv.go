package view

import (
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"
)

// CSVHeader names the columns that WriteCSV writes.
var CSVHeader = []string{
	"id", "severity", "cvss", "epss", "known_exploited", "fixable", "packages", "fixed_in", "aliases",
	"images", "workloads", "last_detected", "link",
}

// WriteCSV writes entries as CSV with a header line. Cells that a spreadsheet would run as a
// formula (package names come from scanned images, which anyone may build) are quoted with a
// leading apostrophe.
func WriteCSV(w io.Writer, entries []*Entry) error {
	out := csv.NewWriter(w)
	if err := out.Write(CSVHeader); err != nil {
		return err
	}
	for _, e := range entries {
		if err := out.Write(CSVRecord(e)); err != nil {
			return err
		}
	}
	out.Flush()
	return out.Error()
}

// CSVRecord is the CSV line of e, in CSVHeader's columns.
func CSVRecord(e *Entry) []string {
	details := &e.Vulnerability.Status.Details
	var packages, fixedIn []string
	for _, p := range details.Packages {
		packages = append(packages, p.Name+" "+p.Installed)
		fixedIn = append(fixedIn, strings.Join(p.FixedIn, " "))
	}
	record := []string{
		details.ID, string(details.Severity), "", "", strconv.FormatBool(details.KnownExploited), strconv.FormatBool(e.Fixable()),
		strings.Join(packages, "; "), strings.Join(fixedIn, "; "), strings.Join(details.Aliases, " "),
		strconv.Itoa(e.Images()), strconv.Itoa(e.Workloads()), "", "",
	}
	if score, ok := e.Score(); ok {
		record[2] = strconv.FormatFloat(score, 'f', 1, 64)
	}
	if epss, ok := e.EPSS(); ok {
		record[3] = strconv.FormatFloat(epss, 'f', -1, 64)
	}
	if !e.LastDetected().IsZero() {
		record[11] = e.LastDetected().UTC().Format(time.RFC3339)
	}
	if len(details.Links) > 0 {
		record[12] = details.Links[0]
	}
	for i, cell := range record {
		if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
			record[i] = "'" + cell
		}
	}
	return record
}
