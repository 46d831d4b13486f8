package dashboard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/view"
)

// store holds the view's entries as the watch reports them, and tells who waits when they change.
type store struct {
	mu      sync.RWMutex
	entries map[string]*view.Entry
	// sorted is the entries in name order, rebuilt on demand after a change.
	sorted []*view.Entry
	// changed is closed at the next change and replaced.
	changed chan struct{}
}

func newStore() *store {
	return &store{entries: map[string]*view.Entry{}, changed: make(chan struct{})}
}

// set stores a new or changed Vulnerability.
func (s *store) set(v *vigilv1alpha1.Vulnerability) {
	entry := view.NewEntry(v)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[v.Name] = entry
	s.changedLocked()
}

// remove forgets a Vulnerability.
func (s *store) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[name]; !ok {
		return
	}
	delete(s.entries, name)
	s.changedLocked()
}

func (s *store) changedLocked() {
	s.sorted = nil
	close(s.changed)
	s.changed = make(chan struct{})
}

// snapshot is every entry, in name order, and a channel closed at the next change. The slice is
// shared: callers must not modify it.
func (s *store) snapshot() ([]*view.Entry, <-chan struct{}) {
	s.mu.RLock()
	sorted, changed := s.sorted, s.changed
	s.mu.RUnlock()
	if sorted != nil || changed == nil {
		return sorted, changed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sorted == nil {
		s.sorted = make([]*view.Entry, 0, len(s.entries))
		for _, e := range s.entries {
			s.sorted = append(s.sorted, e)
		}
		slices.SortFunc(s.sorted, func(a, b *view.Entry) int { return cmp.Compare(a.Name(), b.Name()) })
	}
	return s.sorted, s.changed
}

// get is the entry of a Vulnerability name, nil when there is none.
func (s *store) get(name string) *view.Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.entries[name]
}

// syncTimeout bounds the wait for the first complete list of Vulnerabilities.
const syncTimeout = time.Minute

// watch fills s from a watch of Vulnerabilities with config's credentials until ctx ends. It
// returns once the first list is in, or with an error that says why it cannot read them.
func (s *store) watch(ctx context.Context, config *rest.Config) error {
	scheme := runtime.NewScheme()
	if err := vigilv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	// One list first, for a clear error when the credentials may not list Vulnerabilities (the
	// watch would only retry and log).
	reader, err := client.New(config, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("connecting to the cluster: %w", err)
	}
	if err := reader.List(ctx, &vigilv1alpha1.VulnerabilityList{}, client.Limit(1)); err != nil {
		return fmt.Errorf("listing vulnerabilities (the dashboard needs to list and watch vulnerabilities.vigil.dev): %w", err)
	}
	informers, err := cache.New(config, cache.Options{
		Scheme: scheme,
		// The view never reads managed fields: not keeping them saves a third of the memory.
		DefaultTransform: cache.TransformStripManagedFields(),
	})
	if err != nil {
		return fmt.Errorf("watching vulnerabilities: %w", err)
	}
	informer, err := informers.GetInformer(ctx, &vigilv1alpha1.Vulnerability{})
	if err != nil {
		return fmt.Errorf("watching vulnerabilities: %w", err)
	}
	if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.setObject(obj) },
		UpdateFunc: func(old, obj any) {
			// A periodic resync repeats what the store holds: nothing changed, nothing to tell.
			if o, ok := old.(*vigilv1alpha1.Vulnerability); ok {
				if n, ok := obj.(*vigilv1alpha1.Vulnerability); ok && o.ResourceVersion == n.ResourceVersion {
					return
				}
			}
			s.setObject(obj)
		},
		DeleteFunc: func(obj any) {
			if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj
			}
			if v, ok := obj.(*vigilv1alpha1.Vulnerability); ok {
				s.remove(v.Name)
			}
		},
	}); err != nil {
		return fmt.Errorf("watching vulnerabilities: %w", err)
	}
	started := make(chan error, 1)
	go func() { started <- informers.Start(ctx) }()
	syncCtx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !informers.WaitForCacheSync(syncCtx) {
		select {
		case err := <-started:
			return fmt.Errorf("watching vulnerabilities: %w", err)
		default:
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errors.New("the list of vulnerabilities did not come within a minute (the dashboard needs to list and watch vulnerabilities.vigil.dev)")
	}
	return nil
}

func (s *store) setObject(obj any) {
	if v, ok := obj.(*vigilv1alpha1.Vulnerability); ok {
		s.set(v)
	}
}
