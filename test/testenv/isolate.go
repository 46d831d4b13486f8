package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// Isolate starts a story with no ImageScan and no Vulnerability, and removes those the story
// leaves when it ends. Both are cluster-scoped and the stories of a suite share the control
// plane: without it, a story would pass or fail by what an earlier one left (a Vulnerability of
// the same ID, an ImageScan of the same digest). Call it first in a story, so that its cleanup
// runs last, after the story's managers have stopped and its pods are gone. Stories that call it
// must not run in parallel.
func (e *Environment) Isolate(t *testing.T) {
	t.Helper()
	if err := e.RemoveScansAndFindings(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.RemoveScansAndFindings(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// RemoveScansAndFindings deletes every ImageScan and Vulnerability and waits until none is left.
func (e *Environment) RemoveScansAndFindings(ctx context.Context) error {
	for _, object := range []client.Object{&vigilv1alpha1.ImageScan{}, &vigilv1alpha1.Vulnerability{}} {
		if err := e.Client.DeleteAllOf(ctx, object); err != nil {
			return fmt.Errorf("deleting every %T: %w", object, err)
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		scans, vulnerabilities := &vigilv1alpha1.ImageScanList{}, &vigilv1alpha1.VulnerabilityList{}
		if err := e.Client.List(ctx, scans); err != nil {
			return false, err
		}
		if err := e.Client.List(ctx, vulnerabilities); err != nil {
			return false, err
		}
		return len(scans.Items) == 0 && len(vulnerabilities.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for every ImageScan and Vulnerability to go: %w", err)
	}
	return nil
}
