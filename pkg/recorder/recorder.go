// Package recorder records the images that workloads use as ImageScans. The admission webhook
// and the pod watch share one Recorder per replica, so that an image is recorded once whichever
// path sees it first. Records are queued per namespace and written in rounds that take from
// every namespace in turn, so that one namespace cannot crowd out the others.
package recorder

import (
	"container/list"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/digest"
)

// ImageRecord is one image reference that a workload in a namespace uses. It is a hint: the
// scan reconciler reads the workload itself before it uses any credential of the namespace.
type ImageRecord struct {
	// Image is the reference as written in the pod spec.
	Image string
	// Digest is the image's digest when it is known, from a running container's imageID or a
	// reference that pins it; empty otherwise.
	Digest string
	// Namespace is the workload's namespace.
	Namespace string
	// WorkloadKind and WorkloadName name the object whose pod spec names the image, when known.
	WorkloadKind, WorkloadName string
}

// key identifies a record for de-duplication: the same image in the same namespace.
func (r ImageRecord) key() string {
	return r.Namespace + "\x00" + r.Image + "\x00" + r.Digest
}

// ReasonNamespaceLimit is the reason of the Event on a namespace whose records were dropped at
// its limit.
const ReasonNamespaceLimit = "ImageRecordLimit"

// Options configure a Recorder.
type Options struct {
	// QueueSize bounds the records waiting to be written, all namespaces together.
	QueueSize int
	// NamespaceQueueSize bounds the records of one namespace waiting to be written.
	NamespaceQueueSize int
	// NamespaceImages bounds the distinct images recorded for one namespace within RememberFor;
	// beyond it, the namespace's new images are dropped (counted, and an Event says so).
	NamespaceImages int
	// BatchSize is the most records written in one round.
	BatchSize int
	// FlushInterval is the longest a record waits for its round.
	FlushInterval time.Duration
	// RememberFor is how long a written record is not written again.
	RememberFor time.Duration
	// RememberMax bounds the records remembered.
	RememberMax int
}

// DefaultOptions are the options the manager runs with unless its flags say otherwise.
func DefaultOptions() Options {
	return Options{
		QueueSize: 10000, NamespaceQueueSize: 1000, NamespaceImages: 500, BatchSize: 200,
		FlushInterval: 100 * time.Millisecond, RememberFor: time.Hour, RememberMax: 100000,
	}
}

// Recorder records image references as ImageScans, off the admission request path: Enqueue
// never blocks, and a background loop writes batches of de-duplicated records. It runs on every
// replica, as the webhook does.
type Recorder struct {
	writer  client.Client
	reader  client.Reader
	events  events.EventRecorder
	options Options
	// wake tells the writing loop that records wait.
	wake chan struct{}

	mu sync.Mutex
	// queues holds each namespace's waiting records; order lists the namespaces that have some,
	// in the order they are served.
	queues map[string][]ImageRecord
	order  []string
	queued int
	// pending holds the key of every record queued or being written.
	pending map[string]bool
	recent  *recentSet
	// writingScan is the ImageScan being written, if any; writingForgotten tells that it was
	// deleted meanwhile.
	writingScan      string
	writingForgotten bool
	// lastWarned is when each namespace was last told that it reached its limit.
	lastWarned map[string]time.Time
}

// New returns a Recorder that writes with writer and reads current ImageScans with reader,
// which should read from the API server rather than a cache; eventRecorder (may be nil) tells
// namespaces that reach their limits.
func New(writer client.Client, reader client.Reader, eventRecorder events.EventRecorder, options Options) *Recorder {
	return &Recorder{
		writer: writer, reader: reader, events: eventRecorder, options: options,
		wake:       make(chan struct{}, 1),
		queues:     map[string][]ImageRecord{},
		pending:    map[string]bool{},
		recent:     newRecentSet(options.RememberMax, options.RememberFor),
		lastWarned: map[string]time.Time{},
	}
}

// Enqueue queues record unless it is queued or was recorded lately. It never blocks: a record
// beyond the queue's, its namespace's queue's or its namespace's image limit is dropped,
// counted, and false returned.
func (r *Recorder) Enqueue(record ImageRecord) bool {
	key := record.key()
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending[key] || r.recent.contains(key, now) {
		return true
	}
	switch {
	case r.queued >= r.options.QueueSize:
		imagesDropped.WithLabelValues(dropQueueFull).Inc()
		return false
	case len(r.queues[record.Namespace]) >= r.options.NamespaceQueueSize:
		imagesDropped.WithLabelValues(dropNamespaceQueue).Inc()
		r.warnLocked(record.Namespace, now, "its queue of images to record is full")
		return false
	case r.options.NamespaceImages > 0 && r.recent.countOf(record.Namespace)+len(r.queues[record.Namespace]) >= r.options.NamespaceImages:
		imagesDropped.WithLabelValues(dropNamespaceImages).Inc()
		r.warnLocked(record.Namespace, now, fmt.Sprintf("it used more than %d distinct images within %s", r.options.NamespaceImages, r.options.RememberFor))
		return false
	}
	if len(r.queues[record.Namespace]) == 0 {
		r.order = append(r.order, record.Namespace)
	}
	r.queues[record.Namespace] = append(r.queues[record.Namespace], record)
	r.queued++
	r.pending[key] = true
	imagesQueued.Inc()
	queueDepth.Set(float64(r.queued))
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

// Forget forgets that records were written to scan, an ImageScan that was deleted: every
// record written to it, and with or without the digest every reference it lists, is written
// again rather than skipped as recorded lately, so that an ImageScan deleted by hand or collected
// comes back as soon as a workload uses its image again. A write to it in flight may have
// reached the deleted ImageScan, and the records that came meanwhile were left to it: its
// records are written again once it returns.
func (r *Recorder) Forget(scan *vigilv1alpha1.ImageScan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The records with its digest were written to it; an admission's record, without the
	// digest, was written to its reference's own ImageScan and moved to it once resolved.
	r.recent.forgetScan(scan.Name)
	for _, reference := range scan.Spec.References {
		r.recent.forget(ImageRecord{Image: reference.Image, Namespace: reference.Namespace}.key())
	}
	if r.writingScan == scan.Name {
		r.writingForgotten = true
	}
}

// ForgetDeleted makes the Recorder forget each digest's ImageScan that informer reports deleted.
// Every replica registers it, so that the webhook of any replica, not only the leader whose pod
// watch records the running pods again, writes the next admission of the deleted ImageScan's
// images.
func (r *Recorder) ForgetDeleted(informer cache.Informer) error {
	_, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tombstone.Obj
		}
		// a reference's own ImageScan goes once it is resolved: its records stay remembered
		if scan, ok := obj.(*vigilv1alpha1.ImageScan); ok && scan.Spec.Digest != "" {
			r.Forget(scan)
		}
	}})
	if err != nil {
		return fmt.Errorf("watching ImageScan deletions: %w", err)
	}
	return nil
}

// warnLocked records, at most once a minute per namespace, an Event on the namespace that its
// images are no longer recorded.
func (r *Recorder) warnLocked(namespace string, now time.Time, why string) {
	if r.events == nil || now.Sub(r.lastWarned[namespace]) < time.Minute {
		return
	}
	r.lastWarned[namespace] = now
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	r.events.Eventf(ns, nil, corev1.EventTypeWarning, ReasonNamespaceLimit, "Record",
		"Vigil does not record new images of namespace %s for now: %s", namespace, why)
}

// NeedLeaderElection is false: every replica records what its webhook sees.
func (r *Recorder) NeedLeaderElection() bool {
	return false
}

// Start writes queued records until ctx ends, then writes what is still queued within a second.
func (r *Recorder) Start(ctx context.Context) error {
	ticker := time.NewTicker(r.options.FlushInterval)
	defer ticker.Stop()
	for {
		select {
		case <-r.wake:
		case <-ticker.C:
		case <-ctx.Done():
			drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			for batch := r.takeBatch(); len(batch) > 0 && drainCtx.Err() == nil; batch = r.takeBatch() {
				r.write(drainCtx, batch)
			}
			return nil
		}
		for batch := r.takeBatch(); len(batch) > 0 && ctx.Err() == nil; batch = r.takeBatch() {
			r.write(ctx, batch)
		}
	}
}

// takeBatch takes up to BatchSize records, one from each namespace in turn.
func (r *Recorder) takeBatch() []ImageRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	var batch []ImageRecord
	for len(batch) < r.options.BatchSize && len(r.order) > 0 {
		namespace := r.order[0]
		queue := r.queues[namespace]
		batch = append(batch, queue[0])
		r.queued--
		if len(queue) == 1 {
			delete(r.queues, namespace)
			r.order = r.order[1:]
			continue
		}
		r.queues[namespace] = queue[1:]
		r.order = append(r.order[1:], namespace)
	}
	queueDepth.Set(float64(r.queued))
	return batch
}

// write records a batch: one write per ImageScan however many records it gathers.
func (r *Recorder) write(ctx context.Context, batch []ImageRecord) {
	byScan := map[string][]ImageRecord{}
	var names []string
	for _, record := range batch {
		name := ScanNameOf(record)
		if _, ok := byScan[name]; !ok {
			names = append(names, name)
		}
		byScan[name] = append(byScan[name], record)
	}
	now := time.Now()
	for _, name := range names {
		records := byScan[name]
		r.mu.Lock()
		r.writingScan, r.writingForgotten = name, false
		r.mu.Unlock()
		err := r.recordScan(ctx, name, records)
		var again []ImageRecord
		r.mu.Lock()
		forgotten := r.writingForgotten
		r.writingScan, r.writingForgotten = "", false
		for _, record := range records {
			key := record.key()
			delete(r.pending, key)
			switch {
			case forgotten:
				again = append(again, record)
			case err == nil:
				r.recent.add(key, record.Namespace, name, now)
			}
		}
		r.mu.Unlock()
		for _, record := range again {
			r.Enqueue(record)
		}
		if err != nil {
			recordErrors.Inc()
			log.FromContext(ctx).Error(err, "Recording admitted images failed; the pod watch records them when their pods run",
				"imageScan", name)
			continue
		}
		imagesRecorded.Add(float64(len(records)))
	}
}

// ScanNameOf is the ImageScan that records a record: its digest's when the digest is known,
// else the reference's own until the digest is resolved.
func ScanNameOf(record ImageRecord) string {
	if digest := recordDigest(record); digest != "" {
		return vigilv1alpha1.ImageScanName(digest)
	}
	return vigilv1alpha1.ReferenceScanName(record.Image)
}

// recordDigest is the record's digest, or the one its reference pins, or empty.
func recordDigest(record ImageRecord) string {
	if record.Digest != "" {
		return record.Digest
	}
	return digest.FromReference(record.Image)
}

// recordScan creates the ImageScan name with the records' references, or adds them to it; an
// ImageScan deleted while it is written is created again.
func (r *Recorder) recordScan(ctx context.Context, name string, records []ImageRecord) error {
	create := func() error {
		scan := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name}}
		scan.Spec.Digest = recordDigest(records[0])
		scan.Spec.References, _ = mergeReferences(nil, records)
		if err := r.writer.Create(ctx, scan); err != nil {
			return fmt.Errorf("creating ImageScan %s: %w", name, err)
		}
		return nil
	}
	err := create()
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	raced := func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err)
	}
	return retry.OnError(retry.DefaultBackoff, raced, func() error {
		current := &vigilv1alpha1.ImageScan{}
		if err := r.reader.Get(ctx, client.ObjectKey{Name: name}, current); apierrors.IsNotFound(err) {
			return create()
		} else if err != nil {
			return fmt.Errorf("reading ImageScan %s: %w", name, err)
		}
		merged, changed := mergeReferences(current.Spec.References, records)
		if !changed {
			return nil
		}
		current.Spec.References = merged
		if err := r.writer.Update(ctx, current); err != nil {
			return fmt.Errorf("updating ImageScan %s: %w", name, err)
		}
		return nil
	})
}

// mergeReferences adds the records to references (see ImageScanSpec.AddReference) and tells
// whether they changed.
func mergeReferences(references []vigilv1alpha1.ImageReference, records []ImageRecord) ([]vigilv1alpha1.ImageReference, bool) {
	spec := vigilv1alpha1.ImageScanSpec{References: slices.Clone(references)}
	changed := false
	for _, record := range records {
		reference := vigilv1alpha1.ImageReference{Image: record.Image, Namespace: record.Namespace}
		if record.WorkloadKind != "" && record.WorkloadName != "" {
			reference.Workload = &vigilv1alpha1.WorkloadReference{Kind: record.WorkloadKind, Name: record.WorkloadName}
		}
		changed = spec.AddReference(reference) || changed
	}
	return spec.References, changed
}

// recentSet remembers keys for a while, the least recently added evicted first beyond max,
// counts the keys of each namespace and knows the keys written to each ImageScan.
type recentSet struct {
	max         int
	ttl         time.Duration
	order       *list.List
	entries     map[string]*list.Element
	byNamespace map[string]int
	byScan      map[string]map[string]struct{}
}

type recentEntry struct {
	key, namespace, scan string
	added                time.Time
}

func newRecentSet(max int, ttl time.Duration) *recentSet {
	return &recentSet{max: max, ttl: ttl, order: list.New(), entries: map[string]*list.Element{},
		byNamespace: map[string]int{}, byScan: map[string]map[string]struct{}{}}
}

func (s *recentSet) contains(key string, now time.Time) bool {
	s.expire(now)
	_, ok := s.entries[key]
	return ok
}

// countOf is the number of keys of namespace remembered.
func (s *recentSet) countOf(namespace string) int {
	return s.byNamespace[namespace]
}

// add remembers key, of namespace, written to the ImageScan scan.
func (s *recentSet) add(key, namespace, scan string, now time.Time) {
	s.forget(key)
	s.entries[key] = s.order.PushBack(recentEntry{key: key, namespace: namespace, scan: scan, added: now})
	s.byNamespace[namespace]++
	if s.byScan[scan] == nil {
		s.byScan[scan] = map[string]struct{}{}
	}
	s.byScan[scan][key] = struct{}{}
	for s.order.Len() > s.max {
		s.remove(s.order.Front())
	}
}

// forget forgets key, if it is remembered.
func (s *recentSet) forget(key string) {
	if element, ok := s.entries[key]; ok {
		s.remove(element)
	}
}

// forgetScan forgets every key written to the ImageScan scan.
func (s *recentSet) forgetScan(scan string) {
	for key := range s.byScan[scan] {
		s.forget(key)
	}
}

// expire forgets the keys older than the set's time to live, oldest first.
func (s *recentSet) expire(now time.Time) {
	for oldest := s.order.Front(); oldest != nil && now.Sub(oldest.Value.(recentEntry).added) > s.ttl; oldest = s.order.Front() {
		s.remove(oldest)
	}
}

func (s *recentSet) remove(element *list.Element) {
	entry := element.Value.(recentEntry)
	s.order.Remove(element)
	delete(s.entries, entry.key)
	if s.byNamespace[entry.namespace]--; s.byNamespace[entry.namespace] <= 0 {
		delete(s.byNamespace, entry.namespace)
	}
	if delete(s.byScan[entry.scan], entry.key); len(s.byScan[entry.scan]) == 0 {
		delete(s.byScan, entry.scan)
	}
}

// The recorder creates ImageScans and adds references to them, and tells namespaces that reach
// their limits.
// +kubebuilder:rbac:groups=vigil.dev,resources=imagescans,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
