// Package testlog records what the code under test logs as errors through its context's
// logger, for unit tests that check a failure is logged, or that nothing is.
package testlog

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// Errors keeps the errors logged through a context's logger, from any goroutine.
type Errors struct {
	mu       sync.Mutex
	messages []string
}

// Into returns ctx with a logger that records its errors into e.
func (e *Errors) Into(ctx context.Context) context.Context {
	return logr.NewContext(ctx, funcr.New(func(_, args string) {
		if strings.Contains(args, `"error"=`) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.messages = append(e.messages, args)
		}
	}, funcr.Options{}))
}

// Messages are the errors logged so far, each in funcr's form: `"msg"="..." "error"="..."`.
func (e *Errors) Messages() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.messages)
}
