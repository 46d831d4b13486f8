package scanengine

import (
	"reflect"
	"testing"

	"github.com/vigil-dev/vigil/pkg/match"
)

// TestDescribeReadsWhatTheMatchReported checks that the details the Vulnerability reconciler
// reads from the database by a finding's ID, namespace and related records are exactly those the
// match reported, by CVE (the manager's mode) and by advisory.
func TestDescribeReadsWhatTheMatchReported(t *testing.T) {
	for _, tc := range vulnerableImages {
		t.Run(tc.name, func(t *testing.T) {
			img, err := tc.recipe()
			if err != nil {
				t.Fatal(err)
			}
			for _, byCVE := range []bool{true, false} {
				matcher := match.NewMatcher(provider, database)
				if byCVE {
					matcher = matcher.ByCVE()
				}
				result := matchImage(t, img, matcher)
				if len(result.Findings) == 0 {
					t.Fatal("no findings to describe")
				}
				for _, f := range result.Findings {
					got, err := matcher.Describe(match.Reference{ID: f.ID, Namespace: f.Namespace}, f.Related)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, f.Details) {
						t.Errorf("by CVE %v: Describe(%s, %s, %v) =\n%+v\nthe match reported\n%+v", byCVE, f.ID, f.Namespace, f.Related, got, f.Details)
					}
				}
			}
		})
	}
}
