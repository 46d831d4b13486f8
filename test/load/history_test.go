package load

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
	"github.com/vigil-dev/vigil/test/testenv"
)

// Scale of BenchmarkNothingGrowsWithHistory; VIGIL_BENCH_HISTORY_IMAGES,
// VIGIL_BENCH_HISTORY_IN_FLIGHT and VIGIL_BENCH_HISTORY_RETENTION override it.
var (
	historyImages    = envInt("VIGIL_BENCH_HISTORY_IMAGES", 10000)
	historyInFlight  = envInt("VIGIL_BENCH_HISTORY_IN_FLIGHT", 8)
	historyRetention = time.Duration(envInt("VIGIL_BENCH_HISTORY_RETENTION", 30)) * time.Second
	historySteady    = 10 // images that run from start to end
)

// historySample is one point of the curves.
type historySample struct {
	at              time.Duration
	done            int64
	imageScans      int
	vulnerabilities int
	storeBytes      int64
	rssKiB          int64
}

// BenchmarkNothingGrowsWithHistory runs 10,000 distinct images through the real API server
// over time, as a cluster that keeps deploying new versions does: a few at a time (8 pods in
// flight), each pod running until its image is scanned and then stopping, beside 10 images
// that run throughout; a vigil-manager scans in process with a retention of 30 seconds. Every
// 10 seconds it samples the ImageScans, the Vulnerabilities, the SBOM store's size on disk and
// the manager's memory, prints the curve, and fails when, once the retention has passed, they
// keep growing; at the end, with only the 10 steady images running, everything else must be
// collected.
//
//	go test -run '^$' -bench NothingGrowsWithHistory -benchtime 1x -timeout 6h ./test/load/
//	# VIGIL_BENCH_HISTORY_IMAGES=600 for a run of about ten minutes
func BenchmarkNothingGrowsWithHistory(b *testing.B) {
	ctx := context.Background()
	bed := newBed(b)
	env, reg := bed.env, bed.reg
	bed.publishDB(bed.fixtures("advisories"))

	manager := startManagerWith(b, env, "--db-listing-url="+bed.dbListingURL,
		"--db-update-interval=1h", "--scan-concurrency=2", "--retention="+historyRetention.String(),
		// One namespace passes all the images: its hourly cap of new images, a bound against a
		// flooding tenant, is not what this measures.
		fmt.Sprintf("--max-images-per-namespace=%d", 4*historyImages))
	defer manager.stop()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "history"}}); err != nil {
		b.Fatal(err)
	}

	// The steady images run throughout.
	steady := make([]string, historySteady)
	imageIDs := map[string]string{}
	for i := range steady {
		reference, pinned, err := pushRecipe(reg, images.AlpineOpenSSL, fmt.Sprintf("history/steady-%d", i), "steady "+fmt.Sprint(i))
		if err != nil {
			b.Fatal(err)
		}
		steady[i], imageIDs[reference] = reference, pinned
	}
	if err := runPods(ctx, env.Client, "history", "steady", steady, imageIDs); err != nil {
		b.Fatal(err)
	}

	// The sampler.
	started := time.Now()
	var done atomic.Int64
	var mu sync.Mutex
	var samples []historySample
	sample := func() historySample {
		s := historySample{at: time.Since(started), done: done.Load(), rssKiB: processRSS(manager.cmd.Process.Pid)}
		scans := &vigilv1alpha1.ImageScanList{}
		if err := env.Client.List(ctx, scans); err == nil {
			s.imageScans = len(scans.Items)
		}
		vulnerabilities := &metav1.PartialObjectMetadataList{}
		vulnerabilities.SetGroupVersionKind(vigilv1alpha1.GroupVersion.WithKind("VulnerabilityList"))
		if err := env.Client.List(ctx, vulnerabilities); err == nil {
			s.vulnerabilities = len(vulnerabilities.Items)
		}
		s.storeBytes = dirSize(manager.sbomDir)
		return s
	}
	fmt.Printf("\n%8s %8s %11s %15s %11s %10s\n", "time", "images", "ImageScans", "Vulnerabilities", "SBOM store", "RSS")
	record := func() {
		s := sample()
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
		fmt.Printf("%8s %8d %11d %15d %9.1f MiB %6.1f MiB\n", s.at.Round(time.Second), s.done, s.imageScans, s.vulnerabilities,
			float64(s.storeBytes)/(1<<20), float64(s.rssKiB)/1024)
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		ticker := time.NewTicker(10 * time.Second)
		defer ticker.Stop()
		for {
			record()
			select {
			case <-stopSampling:
				return
			case <-ticker.C:
			}
		}
	}()

	// The images pass: each pod runs until its image is scanned, then stops.
	b.ResetTimer()
	next := make(chan int)
	errs := make(chan error, historyInFlight)
	var workers sync.WaitGroup
	for range historyInFlight {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range next {
				if err := passImage(ctx, env.Client, reg, i); err != nil {
					errs <- err
					return
				}
				done.Add(1)
			}
		}()
	}
feed:
	for i := range historyImages {
		select {
		case next <- i:
		case err := <-errs:
			b.Errorf("%v\n%s", err, manager.logs.tail())
			break feed
		}
	}
	close(next)
	workers.Wait()
	passed := time.Since(started)

	// With only the steady images running, everything else is collected within the retention
	// and one collection interval (a tenth of it) or two.
	time.Sleep(historyRetention + historyRetention/2)
	close(stopSampling)
	<-sampled
	record()
	b.StopTimer()

	final := samples[len(samples)-1]
	if final.imageScans > historySteady {
		b.Errorf("%d ImageScans remain with %d images running", final.imageScans, historySteady)
	}
	// Once the retention has passed, the curves are flat: the last third of the samples taken
	// while images passed is no higher than the middle third, give or take.
	var passing []historySample
	for _, s := range samples {
		if s.at > 2*historyRetention && s.at <= passed {
			passing = append(passing, s)
		}
	}
	if len(passing) < 6 {
		b.Logf("Only %d samples after the retention: too short a run to judge the curves", len(passing))
	} else {
		third := len(passing) / 3
		middle, last := passing[third:2*third], passing[2*third:]
		for _, curve := range []struct {
			name  string
			value func(historySample) float64
			slack float64
		}{
			{"ImageScans", func(s historySample) float64 { return float64(s.imageScans) }, 20},
			{"Vulnerabilities", func(s historySample) float64 { return float64(s.vulnerabilities) }, 5},
			{"SBOM store bytes", func(s historySample) float64 { return float64(s.storeBytes) }, 1 << 20},
			{"manager RSS KiB", func(s historySample) float64 { return float64(s.rssKiB) }, 32 << 10},
		} {
			before, after := peak(middle, curve.value), peak(last, curve.value)
			if after > before*1.25+curve.slack {
				b.Errorf("%s keep growing: peak %.0f in the middle third, %.0f in the last", curve.name, before, after)
			}
		}
	}
	b.ReportMetric(float64(done.Load()), "images")
	b.ReportMetric(float64(done.Load())/passed.Seconds(), "images/s")
	b.ReportMetric(peak(samples, func(s historySample) float64 { return float64(s.imageScans) }), "imagescans-peak")
	b.ReportMetric(peak(samples, func(s historySample) float64 { return float64(s.rssKiB) })/1024, "rss-peak-MiB")
	b.ReportMetric(float64(final.imageScans), "imagescans-end")
}

// passImage pushes the i-th image, runs a pod of it until its image is scanned, and stops it.
func passImage(ctx context.Context, c client.Client, reg *registry.Registry, i int) error {
	repository := fmt.Sprintf("history/app-%d", i)
	reference, pinned, err := pushRecipe(reg, images.AlpineOpenSSL, repository, fmt.Sprint(i))
	if err != nil {
		return err
	}
	digest := pinned[strings.LastIndex(pinned, "@")+1:]
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "history", Name: fmt.Sprintf("app-%d", i)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: reference}}},
	}
	if err := testenv.RunPod(ctx, c, pod, map[string]string{reference: pinned}); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		scan := &vigilv1alpha1.ImageScan{}
		err := c.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(digest)}, scan)
		if err == nil && (scan.Status.Phase == vigilv1alpha1.ImageScanScanned || scan.Status.Phase == vigilv1alpha1.ImageScanFailed) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("image %d was not scanned within 10 minutes (phase %q)", i, scan.Status.Phase)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return testenv.StopPods(ctx, c, pod)
}

// peak is the highest value of samples.
func peak(samples []historySample, value func(historySample) float64) float64 {
	highest := 0.0
	for _, s := range samples {
		highest = max(highest, value(s))
	}
	return highest
}

// dirSize is the size of the files under dir.
func dirSize(dir string) int64 {
	var size int64
	_ = filepath.WalkDir(dir, func(_ string, entry fs.DirEntry, err error) error {
		if err != nil {
			return nil //nolint:nilerr // a file removed while walking counts as gone
		}
		if info, err := entry.Info(); err == nil && !entry.IsDir() {
			size += info.Size()
		}
		return nil
	})
	return size
}
