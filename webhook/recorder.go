package webhook

import (
	"container/list"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/digest"
)

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	// QueueSize bounds the records waiting to be written; a full queue drops new records.
	QueueSize int
	// BatchSize is the most records written in one round.
	BatchSize int
	// FlushInterval is the longest a record waits for its round.
	FlushInterval time.Duration
	// RememberFor is how long a written record is not written again.
	RememberFor time.Duration
	// RememberMax bounds the records remembered.
	RememberMax int
}

// DefaultRecorderOptions are the options the manager runs with.
func DefaultRecorderOptions() RecorderOptions {
	return RecorderOptions{
		QueueSize: 10000, BatchSize: 200, FlushInterval: 100 * time.Millisecond,
		RememberFor: time.Hour, RememberMax: 100000,
	}
}

// Recorder records image references as ImageScans, off the admission request path: Enqueue
// never blocks, and a background loop writes batches of de-duplicated records. It runs on every
// replica, as the webhook does.
type Recorder struct {
	writer  client.Client
	reader  client.Reader
	options RecorderOptions
	queue   chan ImageRecord

	mu      sync.Mutex
	pending map[string]bool
	recent  *recentSet
}

// NewRecorder returns a Recorder that writes with writer and reads current ImageScans with
// reader, which should read from the API server rather than a cache.
func NewRecorder(writer client.Client, reader client.Reader, options RecorderOptions) *Recorder {
	return &Recorder{
		writer: writer, reader: reader, options: options,
		queue:   make(chan ImageRecord, options.QueueSize),
		pending: map[string]bool{},
		recent:  newRecentSet(options.RememberMax, options.RememberFor),
	}
}

// Enqueue queues record unless it is queued or was recorded lately. It never blocks: when the
// queue is full the record is dropped, counted, and false returned.
func (r *Recorder) Enqueue(record ImageRecord) bool {
	key := record.key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending[key] || r.recent.contains(key, time.Now()) {
		return true
	}
	select {
	case r.queue <- record:
		r.pending[key] = true
		imagesQueued.Inc()
		return true
	default:
		imagesDropped.Inc()
		return false
	}
}

// NeedLeaderElection is false: every replica records what its webhook sees.
func (r *Recorder) NeedLeaderElection() bool {
	return false
}

// Start writes queued records until ctx ends, then writes what is still queued within a second.
func (r *Recorder) Start(ctx context.Context) error {
	ticker := time.NewTicker(r.options.FlushInterval)
	defer ticker.Stop()
	batch := make([]ImageRecord, 0, r.options.BatchSize)
	for {
		select {
		case record := <-r.queue:
			batch = append(batch, record)
			if len(batch) < r.options.BatchSize {
				continue
			}
		case <-ticker.C:
		case <-ctx.Done():
			drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			for len(r.queue) > 0 {
				batch = append(batch, <-r.queue)
			}
			r.write(drainCtx, batch)
			return nil
		}
		if len(batch) > 0 {
			r.write(ctx, batch)
			batch = batch[:0]
		}
	}
}

// write records a batch: one write per ImageScan however many records it gathers.
func (r *Recorder) write(ctx context.Context, batch []ImageRecord) {
	byScan := map[string][]ImageRecord{}
	var names []string
	for _, record := range batch {
		name := scanNameOf(record)
		if _, ok := byScan[name]; !ok {
			names = append(names, name)
		}
		byScan[name] = append(byScan[name], record)
	}
	now := time.Now()
	for _, name := range names {
		records := byScan[name]
		err := r.recordScan(ctx, name, records)
		r.mu.Lock()
		for _, record := range records {
			delete(r.pending, record.key())
			if err == nil {
				r.recent.add(record.key(), now)
			}
		}
		r.mu.Unlock()
		if err != nil {
			recordErrors.Inc()
			log.FromContext(ctx).Error(err, "Recording admitted images failed; the pod watch records them when their pods run",
				"imageScan", name)
			continue
		}
		imagesRecorded.Add(float64(len(records)))
	}
}

// scanNameOf is the ImageScan that records a record: its digest's when the digest is known,
// else the reference's own until the digest is resolved.
func scanNameOf(record ImageRecord) string {
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

// recordScan creates the ImageScan name with the records' references, or adds them to it.
func (r *Recorder) recordScan(ctx context.Context, name string, records []ImageRecord) error {
	scan := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name}}
	scan.Spec.Digest = recordDigest(records[0])
	scan.Spec.References, _ = mergeReferences(nil, records)
	err := r.writer.Create(ctx, scan)
	if !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("creating ImageScan %s: %w", name, err)
		}
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		current := &vigilv1alpha1.ImageScan{}
		if err := r.reader.Get(ctx, client.ObjectKey{Name: name}, current); err != nil {
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
		changed = spec.AddReference(vigilv1alpha1.ImageReference{
			Image: record.Image, Namespace: record.Namespace,
			ServiceAccountName: record.ServiceAccountName, ImagePullSecrets: record.ImagePullSecrets,
		}) || changed
	}
	return spec.References, changed
}

// recentSet remembers keys for a while, the least recently added evicted first beyond max.
type recentSet struct {
	max     int
	ttl     time.Duration
	order   *list.List
	entries map[string]*list.Element
}

type recentEntry struct {
	key   string
	added time.Time
}

func newRecentSet(max int, ttl time.Duration) *recentSet {
	return &recentSet{max: max, ttl: ttl, order: list.New(), entries: map[string]*list.Element{}}
}

func (s *recentSet) contains(key string, now time.Time) bool {
	element, ok := s.entries[key]
	if !ok {
		return false
	}
	if now.Sub(element.Value.(recentEntry).added) > s.ttl {
		s.order.Remove(element)
		delete(s.entries, key)
		return false
	}
	return true
}

func (s *recentSet) add(key string, now time.Time) {
	if element, ok := s.entries[key]; ok {
		s.order.Remove(element)
	}
	s.entries[key] = s.order.PushBack(recentEntry{key: key, added: now})
	for s.order.Len() > s.max {
		oldest := s.order.Front()
		s.order.Remove(oldest)
		delete(s.entries, oldest.Value.(recentEntry).key)
	}
}

// The recorder creates ImageScans and adds references to them.
// +kubebuilder:rbac:groups=vigil.dev,resources=imagescans,verbs=get;list;watch;create;update;patch
