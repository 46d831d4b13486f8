package recorder

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllertest"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/scheme"
)

var sha = strings.Repeat("ab", 32)

func TestScanNameOf(t *testing.T) {
	digest := "sha256:" + sha
	tests := []struct{ image, want string }{
		{"registry.example/mesh/proxy@" + digest, "sha256-" + sha},
		{"registry.example/mesh/proxy:1.2@" + digest, "sha256-" + sha},
		{"registry.example/shop/api:1.4", vigilv1alpha1.ReferenceScanName("registry.example/shop/api:1.4")},
		{"docker-pullable://registry.example/mesh/proxy@" + digest, "sha256-" + sha},
		{"registry.example/shop/api@sha256:short", vigilv1alpha1.ReferenceScanName("registry.example/shop/api@sha256:short")},
		{"registry.example/shop/api@sha256:" + sha[:63] + "X", vigilv1alpha1.ReferenceScanName("registry.example/shop/api@sha256:" + sha[:63] + "X")},
	}
	for _, tc := range tests {
		if got := ScanNameOf(ImageRecord{Image: tc.image}); got != tc.want {
			t.Errorf("ScanNameOf(%q) = %q, want %q", tc.image, got, tc.want)
		}
	}
	if got := ScanNameOf(ImageRecord{Image: "registry.example/shop/api:1.4", Digest: digest}); got != "sha256-"+sha {
		t.Errorf("a record with a digest is recorded as %q", got)
	}
}

func TestMergeReferences(t *testing.T) {
	api := &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: "api"}
	existing := []vigilv1alpha1.ImageReference{{Image: "app:1", Namespace: "shop", Workload: api}}
	tests := []struct {
		name         string
		records      []ImageRecord
		wantLen      int
		wantChanged  bool
		wantWorkload string
	}{
		{"the same reference", []ImageRecord{{Image: "app:1", Namespace: "shop", WorkloadKind: "Deployment", WorkloadName: "api"}}, 1, false, "api"},
		{"a record without a workload keeps the known one", []ImageRecord{{Image: "app:1", Namespace: "shop"}}, 1, false, "api"},
		{"another workload of the namespace", []ImageRecord{{Image: "app:1", Namespace: "shop", WorkloadKind: "Pod", WorkloadName: "web-1"}}, 1, true, "web-1"},
		{"another namespace", []ImageRecord{{Image: "app:1", Namespace: "jobs", WorkloadKind: "CronJob", WorkloadName: "report"}}, 2, true, "api"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			merged, changed := mergeReferences(existing, tc.records)
			if len(merged) != tc.wantLen || changed != tc.wantChanged {
				t.Errorf("merged %+v changed %v", merged, changed)
			}
			if merged[0].Workload == nil || merged[0].Workload.Name != tc.wantWorkload {
				t.Errorf("the shop reference names workload %+v, want %s", merged[0].Workload, tc.wantWorkload)
			}
			if len(existing) != 1 || existing[0].Workload != api {
				t.Errorf("the existing references were modified: %+v", existing)
			}
		})
	}

	var many []ImageRecord
	for i := range vigilv1alpha1.MaxImageReferences + 10 {
		many = append(many, ImageRecord{Image: "app:1", Namespace: fmt.Sprintf("ns-%d", i)})
	}
	if merged, _ := mergeReferences(nil, many); len(merged) != vigilv1alpha1.MaxImageReferences {
		t.Errorf("merged %d references, want the bound %d", len(merged), vigilv1alpha1.MaxImageReferences)
	}
}

func TestRecentSet(t *testing.T) {
	now := time.Now()
	set := newRecentSet(2, time.Minute)
	set.add("a", "shop", "scan-1", now)
	set.add("b", "shop", "scan-2", now)
	if !set.contains("a", now) || !set.contains("b", now) || set.countOf("shop") != 2 {
		t.Fatal("added keys are not remembered")
	}
	set.add("c", "jobs", "scan-2", now) // evicts the oldest, a
	if _, ok := set.byScan["scan-1"]; ok {
		t.Error("an evicted key is still known by its ImageScan")
	}
	if set.contains("a", now) || !set.contains("c", now) {
		t.Error("the oldest key was not evicted")
	}
	if set.countOf("shop") != 1 || set.countOf("jobs") != 1 {
		t.Errorf("counts shop %d jobs %d, want 1 and 1", set.countOf("shop"), set.countOf("jobs"))
	}
	set.forgetScan("scan-2")
	if set.contains("b", now) || set.contains("c", now) || len(set.byScan) != 0 {
		t.Error("the keys written to a forgotten ImageScan are remembered")
	}
	set.add("d", "shop", "scan-3", now)
	if set.contains("d", now.Add(2*time.Minute)) || set.countOf("shop") != 0 || len(set.byScan) != 0 {
		t.Error("an expired key is remembered")
	}
}

func TestADeletedImageScanIsRecordedAgain(t *testing.T) {
	digest := "sha256:" + sha
	running := ImageRecord{Image: "registry.example/shop/api:1.4", Digest: digest, Namespace: "shop"}
	admitted := ImageRecord{Image: "registry.example/shop/api:1.4", Namespace: "shop"}
	otherNamespace := ImageRecord{Image: "registry.example/shop/api:1.4", Digest: digest, Namespace: "jobs"}
	otherImage := ImageRecord{Image: "registry.example/shop/web:2", Digest: "sha256:" + strings.Repeat("cd", 32), Namespace: "shop"}
	otherReference := ImageRecord{Image: "registry.example/shop/api:1.5", Namespace: "jobs"}
	deleted := &vigilv1alpha1.ImageScan{
		ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest)},
		Spec: vigilv1alpha1.ImageScanSpec{Digest: digest, References: []vigilv1alpha1.ImageReference{
			{Image: "registry.example/shop/api:1.4", Namespace: "shop"},
		}},
	}
	tests := []struct {
		name       string
		record     ImageRecord
		forget     bool
		wantQueued bool
	}{
		{name: "a running container's record, recorded lately, is not written again", record: running},
		{name: "an admission's record, recorded lately, is not written again", record: admitted},
		{name: "a running container's record, once its ImageScan is deleted, is written again", record: running, forget: true, wantQueued: true},
		{name: "an admission's record, once the ImageScan of its image is deleted, is written again", record: admitted, forget: true, wantQueued: true},
		{name: "a record written to the deleted ImageScan that it did not list (beyond its bound) is written again", record: otherNamespace, forget: true, wantQueued: true},
		{name: "another reference that the deleted ImageScan did not hold is still remembered", record: otherReference, forget: true},
		{name: "another image is still remembered", record: otherImage, forget: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRecorder(Options{QueueSize: 100, NamespaceQueueSize: 100, NamespaceImages: 1000, BatchSize: 100, RememberFor: time.Hour, RememberMax: 1000})
			now := time.Now()
			for _, recorded := range []ImageRecord{running, admitted, otherNamespace, otherImage, otherReference} {
				r.recent.add(recorded.key(), recorded.Namespace, ScanNameOf(recorded), now)
			}
			if tc.forget {
				r.Forget(deleted)
			}
			if !r.Enqueue(tc.record) {
				t.Fatal("the record was dropped")
			}
			if queued := len(r.takeBatch()) == 1; queued != tc.wantQueued {
				t.Errorf("queued to be written: %t, want %t", queued, tc.wantQueued)
			}
		})
	}
}

// TestAnImageScanDeletedWhileItsRecordIsWrittenIsRecordedAgain drives the deletion of an
// ImageScan between its write reaching the API server and the write's answer: the pod watch
// forgets the deleted ImageScan and records its pods' images again while the recorder still
// waits for that answer. Once it comes, the ImageScan must be written again, not remembered as
// recorded for an hour.
func TestAnImageScanDeletedWhileItsRecordIsWrittenIsRecordedAgain(t *testing.T) {
	clusterScheme, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	store := fake.NewClientBuilder().WithScheme(clusterScheme).Build()
	written, answer := make(chan struct{}), make(chan struct{})
	var creates atomic.Int32
	writer := interceptor.NewClient(store, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			err := c.Create(ctx, obj, opts...)
			if creates.Add(1) == 1 {
				close(written)
				<-answer
			}
			return err
		},
	})
	r := New(writer, store, nil, Options{QueueSize: 100, NamespaceQueueSize: 100, NamespaceImages: 1000, BatchSize: 100,
		FlushInterval: 10 * time.Millisecond, RememberFor: time.Hour, RememberMax: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- r.Start(ctx) }()
	defer func() {
		cancel()
		<-stopped
	}()

	record := ImageRecord{Image: "registry.example/shop/api:1.4", Digest: "sha256:" + sha, Namespace: "shop"}
	name := ScanNameOf(record)
	r.Enqueue(record)
	select {
	case <-written:
	case <-time.After(10 * time.Second):
		t.Fatal("the record was not written")
	}
	scan := &vigilv1alpha1.ImageScan{}
	if err := store.Get(ctx, client.ObjectKey{Name: name}, scan); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, scan); err != nil {
		t.Fatal(err)
	}
	r.Forget(scan)
	r.Enqueue(record)
	close(answer)

	deadline := time.Now().Add(5 * time.Second)
	for store.Get(ctx, client.ObjectKey{Name: name}, &vigilv1alpha1.ImageScan{}) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("ImageScan %s was not recorded again after its deletion; the recorder wrote %d times", name, creates.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAnImageScanDeletedBeforeItsUpdateIsCreatedAgain deletes the ImageScan that a record is
// added to between the read and the update: the record must create it again, not fail.
func TestAnImageScanDeletedBeforeItsUpdateIsCreatedAgain(t *testing.T) {
	clusterScheme, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	record := ImageRecord{Image: "registry.example/shop/api:1.4", Digest: "sha256:" + sha, Namespace: "jobs"}
	name := ScanNameOf(record)
	existing := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: vigilv1alpha1.ImageScanSpec{
		Digest: record.Digest, References: []vigilv1alpha1.ImageReference{{Image: record.Image, Namespace: "shop"}},
	}}
	store := fake.NewClientBuilder().WithScheme(clusterScheme).WithObjects(existing).Build()
	var deletions atomic.Int32
	writer := interceptor.NewClient(store, interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if deletions.Add(1) == 1 {
				if err := c.Delete(ctx, obj.DeepCopyObject().(client.Object)); err != nil {
					return err
				}
			}
			return c.Update(ctx, obj, opts...)
		},
	})
	r := New(writer, store, nil, DefaultOptions())
	if err := r.recordScan(t.Context(), name, []ImageRecord{record}); err != nil {
		t.Fatalf("recording into an ImageScan deleted meanwhile failed: %v", err)
	}
	scan := &vigilv1alpha1.ImageScan{}
	if err := store.Get(t.Context(), client.ObjectKey{Name: name}, scan); err != nil {
		t.Fatalf("the ImageScan was not created again: %v", err)
	}
	if len(scan.Spec.References) != 1 || scan.Spec.References[0].Namespace != "jobs" {
		t.Errorf("the ImageScan created again holds %+v, want the record's reference", scan.Spec.References)
	}
}

// TestEveryReplicaForgetsADeletedImageScan deletes ImageScans through the informer that every
// replica's recorder watches: a digest's ImageScan is forgotten, also when the informer missed
// the deletion itself; a reference's own ImageScan, deleted once resolved, is not.
func TestEveryReplicaForgetsADeletedImageScan(t *testing.T) {
	digest := "sha256:" + sha
	running := ImageRecord{Image: "registry.example/shop/api:1.4", Digest: digest, Namespace: "shop"}
	admitted := ImageRecord{Image: "registry.example/shop/api:1.4", Namespace: "shop"}
	digestScan := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: ScanNameOf(running)},
		Spec: vigilv1alpha1.ImageScanSpec{Digest: digest, References: []vigilv1alpha1.ImageReference{{Image: running.Image, Namespace: "shop"}}}}
	referenceScan := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: ScanNameOf(admitted)},
		Spec: vigilv1alpha1.ImageScanSpec{References: []vigilv1alpha1.ImageReference{{Image: admitted.Image, Namespace: "shop"}}}}
	tests := []struct {
		name       string
		deleted    any
		record     ImageRecord
		wantQueued bool
	}{
		{"a digest's ImageScan", digestScan, running, true},
		{"a digest's ImageScan whose deletion the informer missed", toolscache.DeletedFinalStateUnknown{Key: digestScan.Name, Obj: digestScan}, running, true},
		{"a reference's own ImageScan, resolved", referenceScan, admitted, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRecorder(Options{QueueSize: 100, NamespaceQueueSize: 100, NamespaceImages: 1000, BatchSize: 100, RememberFor: time.Hour, RememberMax: 1000})
			r.recent.add(tc.record.key(), tc.record.Namespace, ScanNameOf(tc.record), time.Now())
			informer := &capturingInformer{}
			if err := r.ForgetDeleted(informer); err != nil {
				t.Fatal(err)
			}
			for _, handler := range informer.handlers {
				handler.OnDelete(tc.deleted)
			}
			r.Enqueue(tc.record)
			if queued := len(r.takeBatch()) == 1; queued != tc.wantQueued {
				t.Errorf("queued to be written: %t, want %t", queued, tc.wantQueued)
			}
		})
	}
}

// capturingInformer keeps the event handlers added to it, to call them as an informer does.
type capturingInformer struct {
	controllertest.FakeInformer
	handlers []toolscache.ResourceEventHandler
}

func (i *capturingInformer) AddEventHandler(handler toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	i.handlers = append(i.handlers, handler)
	return nil, nil
}

func newTestRecorder(options Options) *Recorder {
	return New(nil, nil, nil, options)
}

func TestANamespaceCannotCrowdOutTheOthers(t *testing.T) {
	r := newTestRecorder(Options{QueueSize: 100, NamespaceQueueSize: 10, NamespaceImages: 1000, BatchSize: 6, RememberFor: time.Hour, RememberMax: 1000})
	// The attacker floods first; two tenants record one image each afterwards.
	accepted := 0
	for i := range 50 {
		if r.Enqueue(ImageRecord{Image: fmt.Sprintf("attacker.example/x:%d", i), Namespace: "attacker"}) {
			accepted++
		}
	}
	if accepted != 10 {
		t.Errorf("the flooding namespace queued %d records, want its bound 10", accepted)
	}
	if !r.Enqueue(ImageRecord{Image: "shop/api:1", Namespace: "shop"}) || !r.Enqueue(ImageRecord{Image: "jobs/report:1", Namespace: "jobs"}) {
		t.Fatal("another namespace's record was dropped while the flooding namespace was at its bound")
	}
	batch := r.takeBatch()
	namespaces := map[string]int{}
	for _, record := range batch {
		namespaces[record.Namespace]++
	}
	if namespaces["shop"] != 1 || namespaces["jobs"] != 1 {
		t.Errorf("the first round took %v, want the records of shop and jobs in it", namespaces)
	}
}

func TestANamespaceIsBoundedInDistinctImagesPerPeriod(t *testing.T) {
	r := newTestRecorder(Options{QueueSize: 100, NamespaceQueueSize: 100, NamespaceImages: 3, BatchSize: 100, RememberFor: time.Hour, RememberMax: 1000})
	for i := range 3 {
		if !r.Enqueue(ImageRecord{Image: fmt.Sprintf("x:%d", i), Namespace: "attacker"}) {
			t.Fatalf("record %d was dropped below the bound", i)
		}
	}
	for _, record := range r.takeBatch() { // as write does after a successful round
		delete(r.pending, record.key())
		r.recent.add(record.key(), record.Namespace, ScanNameOf(record), time.Now())
	}
	if r.Enqueue(ImageRecord{Image: "x:3", Namespace: "attacker"}) {
		t.Error("a fourth distinct image within the period was queued")
	}
	if !r.Enqueue(ImageRecord{Image: "x:0", Namespace: "attacker"}) {
		t.Error("an image recorded lately was refused instead of being known")
	}
	if !r.Enqueue(ImageRecord{Image: "x:3", Namespace: "shop"}) {
		t.Error("another namespace was bounded by the attacker's images")
	}
}

func TestTheWholeQueueIsBounded(t *testing.T) {
	r := newTestRecorder(Options{QueueSize: 5, NamespaceQueueSize: 100, NamespaceImages: 1000, BatchSize: 100, RememberFor: time.Hour, RememberMax: 1000})
	accepted := 0
	for i := range 20 {
		if r.Enqueue(ImageRecord{Image: fmt.Sprintf("x:%d", i), Namespace: fmt.Sprintf("ns-%d", i)}) {
			accepted++
		}
	}
	if accepted != 5 || len(r.takeBatch()) != 5 {
		t.Errorf("accepted %d records into a queue of 5", accepted)
	}
}
