package imagescan

import (
	"context"
	"sync"
)

// Gate bounds the matches that run at once. A first match of a new image goes before every
// re-match that waits: a re-match waits while any first match waits,
// so that re-matching after a database swap delays a new image by one re-match at most.
type Gate struct {
	mu          sync.Mutex
	free        int
	highWaiting int
	changed     chan struct{}
}

// NewGate returns a Gate of slots slots.
func NewGate(slots int) *Gate {
	return &Gate{free: slots, changed: make(chan struct{})}
}

// Acquire takes a slot, first matches (high) before re-matches, and returns the function that
// gives it back; it fails only when ctx ends.
func (g *Gate) Acquire(ctx context.Context, high bool) (func(), error) {
	g.mu.Lock()
	if high {
		g.highWaiting++
	}
	for g.free == 0 || (!high && g.highWaiting > 0) {
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			g.mu.Lock()
			if high {
				g.highWaiting--
				g.broadcastLocked()
			}
			g.mu.Unlock()
			return nil, ctx.Err()
		case <-changed:
		}
		g.mu.Lock()
	}
	g.free--
	if high {
		g.highWaiting--
		g.broadcastLocked()
	}
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.free++
			g.broadcastLocked()
			g.mu.Unlock()
		})
	}, nil
}

// broadcastLocked wakes every waiter to look again.
func (g *Gate) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}
