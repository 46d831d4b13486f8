package scanengine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"golang.org/x/sys/unix"

	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/vulndb"
	"github.com/vigil-dev/vigil/test/corpus"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
	"github.com/vigil-dev/vigil/test/testenv"
)

// processRun is one measured process: its wall time and peak resident memory.
type processRun struct {
	wall time.Duration
	peak int64 // KiB
}

// dropCachedPages asks the kernel to drop the cached pages of the file at path, so that both
// binaries are measured from the same state: a binary just written, as vigil-scanner is by this
// benchmark, sits in the page cache in large folios that a process maps whole, which counts about
// 40 MiB more resident memory than the same binary read back from disk (RssFile 110 MiB against
// 70 MiB on go-app, the same code).
func dropCachedPages(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("dropping the cached pages of %s: %w", path, err)
	}
	return nil
}

// measure runs binary with args and env to its end and returns its wall time and peak RSS.
func measure(binary string, args, env []string) (processRun, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return processRun{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	peak, err := peakRSS(cmd.Process.Pid, done)
	wall := time.Since(start)
	if err != nil {
		return processRun{}, fmt.Errorf("%s %s: %w: %s", filepath.Base(binary), strings.Join(args, " "), err, out.String())
	}
	return processRun{wall: wall, peak: peak}, nil
}

func median[T int64 | time.Duration](values []T) T {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

// rounds is how many times each side runs on each image: VIGIL_BENCH_ROUNDS, at least 3.
func rounds() int {
	n, err := strconv.Atoi(os.Getenv("VIGIL_BENCH_ROUNDS"))
	if err != nil || n < 3 {
		return 3
	}
	return n
}

// BenchmarkCorpusAgainstGrypeCLI runs `vigil-scanner scan` and the grype CLI, as processes, on
// every corpus image with the same database, interleaved (one after the other, alternating which
// goes first, round after round) so that whatever else runs on the machine weighs on both alike,
// and prints the medians and their ratios. It then measures the scan Job's peak memory
// (`vigil-scanner scan-job` pulling from a loopback registry and reporting to a loopback server)
// and a second scan in one long-lived process against the first.
func BenchmarkCorpusAgainstGrypeCLI(b *testing.B) {
	dir := corpus.Require(b)
	grype := grypeBinary(b)
	vigilBinary, err := testenv.BuildBinary("./cmd/vigil-scanner")
	if err != nil {
		b.Fatal(err)
	}
	defer testenv.RemoveBinaries()
	for _, binary := range []string{vigilBinary, grype} {
		if err := dropCachedPages(binary); err != nil {
			b.Fatal(err)
		}
	}
	selected := corpus.Images
	if only := os.Getenv("VIGIL_BENCH_IMAGES"); only != "" {
		selected = slices.DeleteFunc(slices.Clone(selected), func(image corpus.Image) bool {
			return !slices.Contains(strings.Split(only, ","), image.Name)
		})
	}
	for b.Loop() {
		var table bytes.Buffer
		w := tabwriter.NewWriter(&table, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "image\tvigil wall\tgrype wall\twall ratio\tvigil peak\tgrype peak\tpeak ratio\tfirst scan\tsecond scan\tspeed-up\twall ratios\tpeak ratios\t")
		for _, image := range selected {
			source := "oci-dir:" + corpus.Layout(dir, image.Name)
			vigilArgs := []string{"scan", source, "--db", dbRoot, "-o", "json", "-q"}
			grypeArgs := []string{source, "-o", "json", "-q"}
			var vigilRuns, grypeRuns []processRun
			for round := range rounds() {
				sides := []func() error{
					func() error {
						r, err := measure(vigilBinary, vigilArgs, os.Environ())
						vigilRuns = append(vigilRuns, r)
						return err
					},
					func() error {
						r, err := measure(grype, grypeArgs, grypeEnv(b.TempDir()))
						grypeRuns = append(grypeRuns, r)
						return err
					},
				}
				if round%2 == 1 {
					slices.Reverse(sides)
				}
				for _, side := range sides {
					if err := side(); err != nil {
						b.Fatalf("%s: %v", image.Name, err)
					}
				}
			}
			first, second := twoScans(b, image.Name, source)
			vw, gw := median(walls(vigilRuns)), median(walls(grypeRuns))
			vp, gp := median(peaks(vigilRuns)), median(peaks(grypeRuns))
			fmt.Fprintf(w, "%s\t%.2f s\t%.2f s\t%.2f\t%d MiB\t%d MiB\t%.2f\t%.2f s\t%.2f s\t%.1f×\t%s\t%s\t\n", image.Name,
				vw.Seconds(), gw.Seconds(), vw.Seconds()/gw.Seconds(), vp/1024, gp/1024, float64(vp)/float64(gp),
				first.Seconds(), second.Seconds(), first.Seconds()/second.Seconds(),
				spread(vigilRuns, grypeRuns, func(r processRun) float64 { return r.wall.Seconds() }),
				spread(vigilRuns, grypeRuns, func(r processRun) float64 { return float64(r.peak) }))
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("\nMedians of %d interleaved runs per side (processes, same database, same machine):\n%s", rounds(), table.String())
		if slices.ContainsFunc(selected, func(image corpus.Image) bool { return image.Name == "synthetic-5000" }) {
			peak := scanJobPeak(b, vigilBinary, corpus.Layout(dir, "synthetic-5000"))
			fmt.Printf("scan Job (vigil-scanner scan-job) peak memory on synthetic-5000: %d MiB\n", peak/1024)
			if peak/1024 > scanJobPeakTargetMiB {
				b.Errorf("the scan Job's peak memory on synthetic-5000 is %d MiB, over the %d MiB target", peak/1024, scanJobPeakTargetMiB)
			}
		}
	}
}

// spread is the lowest and highest ratio of one round's vigil run to the same round's grype run:
// on a shared machine the median alone hides how far one round is from the next.
func spread(vigil, grype []processRun, value func(processRun) float64) string {
	var ratios []float64
	for i := range min(len(vigil), len(grype)) {
		ratios = append(ratios, value(vigil[i])/value(grype[i]))
	}
	if len(ratios) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f–%.2f", slices.Min(ratios), slices.Max(ratios))
}

// scanJobPeakTargetMiB is the scan Job's peak memory target on the synthetic 5,000-package corpus
// image (docs/benchmarks.md): BenchmarkCorpusAgainstGrypeCLI fails over it.
const scanJobPeakTargetMiB = 384

func walls(runs []processRun) []time.Duration {
	var out []time.Duration
	for _, r := range runs {
		out = append(out, r.wall)
	}
	return out
}

func peaks(runs []processRun) []int64 {
	var out []int64
	for _, r := range runs {
		out = append(out, r.peak)
	}
	return out
}

// twoScansEnv names the image that TestTwoScansInOneProcess scans, when the benchmark runs it.
const twoScansEnv = "VIGIL_TWO_SCANS_SOURCE"

// twoScans runs TestTwoScansInOneProcess in a new process of this test binary, which scans
// source twice as the manager's in-process executor does (database kept open, SBOM generated,
// matched) and returns the wall time of each scan.
func twoScans(b *testing.B, name, source string) (time.Duration, time.Duration) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestTwoScansInOneProcess$", "-test.v")
	cmd.Env = append(os.Environ(), twoScansEnv+"="+source)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s: two scans: %v: %s", name, err, out)
	}
	var first, second time.Duration
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "two-scans: "); ok {
			if _, err := fmt.Sscanf(rest, "%d %d", &first, &second); err != nil {
				b.Fatalf("%s: %q: %v", name, line, err)
			}
		}
	}
	if first == 0 || second == 0 {
		b.Fatalf("%s: no timing in:\n%s", name, out)
	}
	return first, second
}

// TestTwoScansInOneProcess is run by BenchmarkCorpusAgainstGrypeCLI in a process of its own:
// it scans one image twice with a database kept open, as a long-lived process does.
func TestTwoScansInOneProcess(t *testing.T) {
	source := os.Getenv(twoScansEnv)
	if source == "" {
		t.Skip("run by BenchmarkCorpusAgainstGrypeCLI")
	}
	parsed, err := sbom.ParseSource(source)
	if err != nil {
		t.Fatal(err)
	}
	var took []time.Duration
	store, err := vulndb.NewStore(vulndb.Options{Root: dbRoot})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for range 2 {
		start := time.Now()
		matcher, release, err := store.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		generated, err := sbom.Generate(context.Background(), parsed, sbom.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := matcher.Match(context.Background(), generated.JSON); err != nil {
			t.Fatal(err)
		}
		release()
		took = append(took, time.Since(start))
	}
	fmt.Printf("two-scans: %d %d\n", took[0], took[1])
}

// scanJobPeak pushes the OCI layout at dir to a loopback registry and runs
// `vigil-scanner scan-job` on it, reporting to a loopback server, and returns the Job's peak
// resident memory in KiB.
func scanJobPeak(b *testing.B, vigilBinary, dir string) int64 {
	b.Helper()
	index, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		b.Fatal(err)
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		b.Fatal(err)
	}
	img, err := index.Image(manifest.Manifests[0].Digest)
	if err != nil {
		b.Fatal(err)
	}
	reg := registry.Start(registry.Options{})
	defer reg.Close()
	pinned, err := reg.Push(img, "corpus/synthetic", "5000")
	if err != nil {
		b.Fatal(err)
	}
	_, digest, _ := strings.Cut(pinned, "@")
	// the Job posts its SBOM, syft JSON, as the body of a report of kind "sbom"
	var reported []byte
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("kind") == executor.ReportSBOM {
			reported = body
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer server.Close()
	token := filepath.Join(b.TempDir(), "token")
	if err := os.WriteFile(token, []byte("token"), 0o600); err != nil {
		b.Fatal(err)
	}
	r, err := measure(vigilBinary, []string{"scan-job", "--digest", digest,
		"--image", pinned, "--report-url", server.URL, "--token-file", token,
		"--plain-http", reg.Host}, os.Environ())
	if err != nil {
		b.Fatal(err)
	}
	if len(reported) == 0 || !json.Valid(reported) {
		b.Fatal("the scan Job reported no SBOM")
	}
	return r.peak
}

// BenchmarkCorpusScan generates each corpus image's SBOM in process, as matching needs it and
// whole (as `vigil scan --sbom` exports it), and matches it. With -cpuprofile and -memprofile it
// shows where a scan's time and memory go: image read and decompression, each cataloger, the
// relationships, the JSON encoding, the matchers. VIGIL_BENCH_IMAGES selects images.
func BenchmarkCorpusScan(b *testing.B) {
	dir := corpus.Require(b)
	store, err := vulndb.NewStore(vulndb.Options{Root: dbRoot})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	for _, image := range corpus.Images {
		if only := os.Getenv("VIGIL_BENCH_IMAGES"); only != "" && !slices.Contains(strings.Split(only, ","), image.Name) {
			continue
		}
		source := sbom.Source{Scheme: sbom.SchemeOCIDir, Location: corpus.Layout(dir, image.Name)}
		for _, full := range []bool{false, true} {
			kind := "for-matching"
			if full {
				kind = "full"
			}
			b.Run(image.Name+"/generate-"+kind, func(b *testing.B) {
				b.ReportAllocs()
				var size int
				for b.Loop() {
					generated, err := sbom.Generate(context.Background(), source, sbom.Options{FullSBOM: full})
					if err != nil {
						b.Fatal(err)
					}
					size = len(generated.JSON)
				}
				b.ReportMetric(float64(size)/(1<<20), "SBOM-MiB")
			})
		}
		b.Run(image.Name+"/match", func(b *testing.B) {
			generated, err := sbom.Generate(context.Background(), source, sbom.Options{})
			if err != nil {
				b.Fatal(err)
			}
			matcher, release, err := store.Acquire()
			if err != nil {
				b.Fatal(err)
			}
			defer release()
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
