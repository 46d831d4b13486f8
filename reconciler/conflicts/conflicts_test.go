package conflicts

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
)

func TestReconcile(t *testing.T) {
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "vigil.dev", Resource: "imagescans"}, "x", errors.New("changed"))
	tests := []struct {
		name       string
		result     ctrl.Result
		err        error
		wantResult ctrl.Result
		wantErr    bool
	}{
		{name: "a conflict is looked at again after a second, with no error to log",
			result: ctrl.Result{RequeueAfter: time.Hour}, err: conflict, wantResult: ctrl.Result{RequeueAfter: RetryAfter}},
		{name: "a wrapped conflict too",
			err: fmt.Errorf("writing ImageScan x: %w", conflict), wantResult: ctrl.Result{RequeueAfter: RetryAfter}},
		{name: "another error is returned as it is",
			result: ctrl.Result{RequeueAfter: time.Minute}, err: errors.New("connection refused"), wantResult: ctrl.Result{RequeueAfter: time.Minute}, wantErr: true},
		{name: "a success is returned as it is",
			result: ctrl.Result{RequeueAfter: time.Minute}, wantResult: ctrl.Result{RequeueAfter: time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			result, err := Reconcile(t.Context(), ctrl.Request{}, "ImageScan", func(context.Context, ctrl.Request) (ctrl.Result, error) {
				return tc.result, tc.err
			})
			if result != tc.wantResult || (err != nil) != tc.wantErr {
				t.Errorf("Reconcile = %+v, %v; want %+v, error %t", result, err, tc.wantResult, tc.wantErr)
			}
		})
	}
}
