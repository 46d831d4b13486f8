package sbom_test

import (
	"fmt"
	"testing"

	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/test/fixtures/images"
)

// BenchmarkGenerateManyFiles measures what each file of an image costs a scan, to size the
// default file bound against the scanner's memory. Peak memory is the process's maximum
// resident set size: run one size at a time under /usr/bin/time -v (docs/benchmarks.md).
func BenchmarkGenerateManyFiles(b *testing.B) {
	for _, files := range []int{10_000, 100_000, 200_000} {
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			img, err := images.ManyFiles(files)
			if err != nil {
				b.Fatal(err)
			}
			ref := pushed(b, img, "many")
			b.ResetTimer()
			for b.Loop() {
				if _, err := sbom.Generate(b.Context(), sbom.Source{Scheme: sbom.SchemeRegistry, Location: ref}, sbom.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
