// Package conflicts lets a reconciler treat a write that conflicts with another writer's as
// what it is: the object changed since the cache's copy was read, and the reconciler should look
// at its newer copy, not log an error and back off.
package conflicts

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// RetryAfter is when an object whose write conflicted is looked at again, unless the newer
// copy's own event brings it back sooner, as it does as soon as the cache has it.
const RetryAfter = time.Second

// Reconcile runs reconcile for req. When it returns a conflict, the conflict is logged at
// V(1) with kind, the object's kind, and the object is requeued after RetryAfter without an
// error; any other result and error are returned as they are.
func Reconcile(ctx context.Context, req ctrl.Request, kind string, reconcile func(context.Context, ctrl.Request) (ctrl.Result, error)) (ctrl.Result, error) {
	result, err := reconcile(ctx, req)
	if apierrors.IsConflict(err) {
		log.FromContext(ctx).V(1).Info("The object changed meanwhile; looking at it again", "kind", kind, "reason", err.Error())
		return ctrl.Result{RequeueAfter: RetryAfter}, nil
	}
	return result, err
}
