package executor

import (
	"context"
	"errors"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// recordedOutcomes records outcomes; err, when set, is what RecordOutcome answers instead.
type recordedOutcomes struct {
	recorded []Outcome
	err      error
}

func (o *recordedOutcomes) RecordOutcome(_ context.Context, outcome Outcome) error {
	if o.err != nil {
		return o.err
	}
	o.recorded = append(o.recorded, outcome)
	return nil
}

func TestTheStateOfAScanJob(t *testing.T) {
	const attempt = 2
	name := JobName(testDigest, testScanUID, attempt)
	jobWith := func(conditions ...batchv1.JobCondition) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: name}, Status: batchv1.JobStatus{Conditions: conditions}}
	}
	podOf := func(reason string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: name + "-x", Labels: map[string]string{"batch.kubernetes.io/job-name": name}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "scan", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: 137},
			}}}},
		}
	}
	suspended := jobWith()
	suspended.Spec.Suspend = ptr.To(true)
	failed := batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded", Message: "Job was active longer than specified deadline"}
	tests := []struct {
		name        string
		objects     []client.Object
		recordErr   error
		getErr      error
		deleteErr   error
		want        State
		wantGone    bool // the Job is removed
		wantErr     bool
		wantOutcome string // the recorded failure's text, when one is recorded
		wantOOM     bool
	}{
		{name: "no Job: the attempt is lost", want: Lost},
		{name: "a Job without conditions runs", objects: []client.Object{jobWith()}, want: Running},
		{name: "a condition that is not true is not an end",
			objects: []client.Object{jobWith(batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionFalse}, batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionUnknown})},
			want:    Running},
		{name: "a complete Job has ended; its report recorded the outcome",
			objects: []client.Object{jobWith(batchv1.JobCondition{Type: batchv1.JobSuspended, Status: corev1.ConditionTrue}, batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue})},
			want:    Ended},
		{name: "a failed Job's failure is recorded with its reason",
			objects: []client.Object{jobWith(failed), podOf("Error")}, want: Ended,
			wantOutcome: "scan Job " + name + " failed: DeadlineExceeded: Job was active longer than specified deadline"},
		{name: "a Job killed for its memory leaves the image too large",
			objects: []client.Object{jobWith(failed), podOf("OOMKilled")}, want: Ended, wantOOM: true},
		{name: "a failure recorded already is no error",
			objects: []client.Object{jobWith(failed)}, recordErr: ErrStaleAttempt, want: Ended},
		{name: "a failure that cannot be recorded is an error to retry",
			objects: []client.Object{jobWith(failed)}, recordErr: errors.New("conflict"), want: Ended, wantErr: true},
		{name: "a Job that cannot be read is an error", getErr: errors.New("connection refused"), want: Lost, wantErr: true},
		{name: "a Job never released is lost and removed", objects: []client.Object{suspended}, want: Lost, wantGone: true},
		{name: "a Job never released that cannot be removed is an error",
			objects: []client.Object{suspended}, deleteErr: errors.New("etcd timeout"), want: Lost, wantErr: true},
		{name: "a released Job runs", objects: []client.Object{func() client.Object {
			released := jobWith()
			released.Spec.Suspend = ptr.To(false)
			return released
		}()}, want: Running},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(tc.objects...).
				WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					if tc.getErr != nil {
						return tc.getErr
					}
					return c.Get(ctx, key, obj, opts...)
				}, Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
					if tc.deleteErr != nil {
						return tc.deleteErr
					}
					return c.Delete(ctx, obj, opts...)
				}}).Build()
			recorder := &recordedOutcomes{err: tc.recordErr}
			memory := resource.MustParse("1536Mi")
			jobs := NewJobs(c, c, JobOptions{Namespace: "vigil-system", Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceMemory: memory},
			}}, recorder)
			state, err := jobs.Check(context.Background(), testDigest, testScanUID, attempt)
			if state != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("Check = %v, %v; want %v and an error %v", state, err, tc.want, tc.wantErr)
			}
			if len(tc.objects) > 0 {
				gone := apierrors.IsNotFound(c.Get(context.Background(), client.ObjectKey{Namespace: "vigil-system", Name: name}, &batchv1.Job{}))
				if gone != tc.wantGone {
					t.Errorf("the Job is removed %v, want %v", gone, tc.wantGone)
				}
			}
			switch {
			case tc.wantOutcome != "" || tc.wantOOM:
				if len(recorder.recorded) != 1 {
					t.Fatalf("recorded %v, want one failure", recorder.recorded)
				}
				got := recorder.recorded[0]
				if got.Digest != testDigest || got.Attempt != attempt || got.Err == nil {
					t.Fatalf("recorded %+v, want a failure of attempt %d of %s", got, attempt, testDigest)
				}
				var oom *OOMKilledError
				if errors.As(got.Err, &oom) != tc.wantOOM {
					t.Errorf("recorded %v, OOM killed %v", got.Err, tc.wantOOM)
				}
				if tc.wantOOM && !strings.Contains(got.Err.Error(), "1536Mi") {
					t.Errorf("the OOM failure does not name the memory limit: %v", got.Err)
				}
				if tc.wantOutcome != "" && got.Err.Error() != tc.wantOutcome {
					t.Errorf("recorded %q, want %q", got.Err, tc.wantOutcome)
				}
			default:
				if len(recorder.recorded) != 0 {
					t.Errorf("recorded %v, want nothing", recorder.recorded)
				}
			}
		})
	}
}

func TestAFailedScanJobWhosePodsCannotBeListedIsCheckedAgain(t *testing.T) {
	name := JobName(testDigest, testScanUID, 1)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: name},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}}}
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(job).
		WithInterceptorFuncs(interceptor.Funcs{List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return errors.New("connection refused")
		}}).Build()
	recorder := &recordedOutcomes{}
	state, err := NewJobs(c, c, JobOptions{Namespace: "vigil-system"}, recorder).Check(context.Background(), testDigest, testScanUID, 1)
	if err == nil || state != Running {
		t.Errorf("Check = %v, %v; want Running with the error, to look again", state, err)
	}
	if len(recorder.recorded) != 0 {
		t.Errorf("recorded %v without knowing why the Job failed", recorder.recorded)
	}
}

// TestAnImageScanRecordedAgainDoesNotInheritTheJobsOfTheOneBefore deletes an ImageScan whose
// scan Job was killed for its memory (the Job is kept a while once finished) and records it
// again, as an administrator does after raising the scanner's memory limit: the new ImageScan's
// first attempt is its own Job, not the old one's outcome.
func TestAnImageScanRecordedAgainDoesNotInheritTheJobsOfTheOneBefore(t *testing.T) {
	const deletedScanUID = "0d6e4a8b-1f3c-4e2d-b7a9-6c5f8e1d2a30"
	killed := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: JobName(testDigest, deletedScanUID, 1)},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}}}
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(killed).Build()
	recorder := &recordedOutcomes{}
	jobs := NewJobs(c, c, JobOptions{Namespace: "vigil-system"}, recorder)

	if JobName(testDigest, testScanUID, 1) == killed.Name {
		t.Fatalf("two ImageScans of a digest name their first attempts' Jobs alike: %s", killed.Name)
	}
	state, err := jobs.Check(context.Background(), testDigest, testScanUID, 1)
	if err != nil || state != Lost || len(recorder.recorded) != 0 {
		t.Errorf("the new ImageScan's attempt 1 before its Job exists: %v, %v, recorded %v; want Lost and nothing recorded", state, err, recorder.recorded)
	}
	request := Request{Digest: testDigest, ScanUID: testScanUID, Attempt: 1, Images: []PinnedImage{{Reference: "registry.example/app@" + testDigest}}}
	if err := jobs.Submit(context.Background(), request); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "vigil-system", Name: JobName(testDigest, testScanUID, 1)}, &batchv1.Job{}); err != nil {
		t.Errorf("the new ImageScan's attempt has no Job of its own: %v", err)
	}
}
