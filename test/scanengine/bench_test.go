package scanengine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/testenv"
)

// largePackages is the package count of the large benchmark image.
const largePackages = 5000

// benchmarkImages are the vulnerable fixture images and the large image.
var benchmarkImages = slices.Concat(vulnerableImages, []fixtureImage{
	{"large-node-5000", func() (v1.Image, error) { return images.LargeNodeApp(largePackages) }},
})

func benchmarkSource(b *testing.B, recipe func() (v1.Image, error)) sbom.Source {
	b.Helper()
	img, err := recipe()
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), "layout")
	if err := images.WriteOCILayout(dir, img); err != nil {
		b.Fatal(err)
	}
	return sbom.Source{Scheme: sbom.SchemeOCIDir, Location: dir}
}

// BenchmarkGenerateSBOM measures syft's SBOM generation of each fixture image.
func BenchmarkGenerateSBOM(b *testing.B) {
	for _, bi := range benchmarkImages {
		b.Run(bi.name, func(b *testing.B) {
			source := benchmarkSource(b, bi.recipe)
			b.ReportAllocs()
			var packages int
			for b.Loop() {
				generated, err := sbom.Generate(context.Background(), source, sbom.Options{})
				if err != nil {
					b.Fatal(err)
				}
				packages = generated.Packages()
			}
			b.ReportMetric(float64(packages), "packages")
		})
	}
}

// BenchmarkMatch measures grype's matching of each fixture image's SBOM.
func BenchmarkMatch(b *testing.B) {
	matcher := match.NewMatcher(provider, database)
	for _, bi := range benchmarkImages {
		b.Run(bi.name, func(b *testing.B) {
			generated, err := sbom.Generate(context.Background(), benchmarkSource(b, bi.recipe), sbom.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var findings int
			for b.Loop() {
				result, err := matcher.Match(context.Background(), generated.JSON)
				if err != nil {
					b.Fatal(err)
				}
				findings = len(result.Findings)
			}
			b.ReportMetric(float64(findings), "findings")
		})
	}
}

// scanPeakTargetMiB is the peak resident memory within which `vigil scan` must scan the
// 5,000-package image (docs/benchmarks.md): BenchmarkScanCommand fails over it.
const scanPeakTargetMiB = 512

// BenchmarkScanCommand runs `vigil-scanner scan` (what `vigil scan` runs) as its own process on each image and reports the
// process's peak resident memory, which the 5,000-package image must keep under
// scanPeakTargetMiB: the benchmark fails over it.
func BenchmarkScanCommand(b *testing.B) {
	binary, err := testenv.BuildBinary("./cmd/vigil-scanner")
	if err != nil {
		b.Fatal(err)
	}
	defer testenv.RemoveBinaries()
	for _, bi := range benchmarkImages {
		b.Run(bi.name, func(b *testing.B) {
			source := benchmarkSource(b, bi.recipe)
			var peak int64
			for b.Loop() {
				cmd := exec.Command(binary, "scan", source.String(), "--db", dbRoot, "-o", "json", "-q")
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				if hwm, err := peakRSS(cmd.Process.Pid, done); err != nil {
					b.Fatalf("vigil-scanner scan: %v: %s", err, out.String())
				} else if hwm > peak {
					peak = hwm
				}
			}
			b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
			if peakMiB := float64(peak) / 1024; bi.name == "large-node-5000" && peakMiB > scanPeakTargetMiB {
				b.Errorf("vigil scan's peak resident memory is %.0f MiB, over the %d MiB target", peakMiB, scanPeakTargetMiB)
			}
		})
	}
}

// peakRSS follows a process until it exits (done delivers its Wait result) and returns its peak
// resident memory in KiB, the VmHWM of /proc/PID/status read every 5 ms. (The rusage of a
// child started with vfork counts the parent's memory, so it cannot be used.)
func peakRSS(pid int, done <-chan error) (int64, error) {
	var peak int64
	ticker := time.NewTicker(5 * time.Millisecond)
	defer ticker.Stop()
	for {
		if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, line := range strings.Split(string(status), "\n") {
				if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					if kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil && kib > peak {
						peak = kib
					}
				}
			}
		}
		select {
		case err := <-done:
			return peak, err
		case <-ticker.C:
		}
	}
}
