package app

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/vigil-dev/vigil/pkg/executor"
)

func TestReportBodyDecodesToTheReport(t *testing.T) {
	tests := []struct {
		name   string
		report executor.Report
	}{
		{"an SBOM", executor.Report{Digest: "sha256:" + string(bytes.Repeat([]byte("a"), 64)), SBOM: json.RawMessage(`{"artifacts":[{"name":"minimist"}]}` + "\n")}},
		{"a failure", executor.Report{Digest: "sha256:" + string(bytes.Repeat([]byte("b"), 64)), Error: `the image is "big"`, TooLarge: true}},
		{"an unauthorized pull", executor.Report{Digest: "sha256:" + string(bytes.Repeat([]byte("c"), 64)), Error: "refused", Unauthorized: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := reportBody(tc.report)
			if err != nil {
				t.Fatal(err)
			}
			content, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			var got executor.Report
			if err := json.Unmarshal(content, &got); err != nil {
				t.Fatalf("%s is not JSON: %v", content, err)
			}
			want, _ := json.Marshal(tc.report)
			gotJSON, _ := json.Marshal(got)
			if !bytes.Equal(gotJSON, want) {
				t.Errorf("decoded %s, want %s", gotJSON, want)
			}
		})
	}
}
