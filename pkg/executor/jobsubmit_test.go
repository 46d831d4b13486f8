package executor

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/vigil-dev/vigil/pkg/sbom"
)

func TestSubmittingAScanJob(t *testing.T) {
	request := Request{Digest: testDigest, ScanUID: testScanUID, Attempt: 2, Images: []PinnedImage{
		{Reference: "registry.example/shop/api@" + testDigest, Credentials: []sbom.Credential{
			{Registry: "registry.example", Username: "shop", Password: "s3cret"},
			{Registry: "mirror.example", Token: "identity"},
		}},
		{Reference: "mirror.example/shop/api@" + testDigest},
	}}
	name := JobName(testDigest, testScanUID, 2)
	tests := []struct {
		name       string
		existing   bool
		secretErr  error
		deleteErr  error
		patchErr   error
		wantErr    []string // what the error says; nil for no error
		wantJob    bool
		wantSecret bool
		// wantSuspended says the Job is left suspended: Check finds it lost
		wantSuspended bool
	}{
		{name: "the Job and its credentials, the Job released", wantJob: true, wantSecret: true},
		{name: "an attempt submitted before is left as it is", existing: true, wantJob: true, wantSuspended: true},
		{name: "a Job that cannot be released stays suspended", patchErr: errors.New("etcd timeout"), wantErr: []string{"releasing scan Job", "etcd timeout"},
			wantJob: true, wantSecret: true, wantSuspended: true},
		{name: "credentials that cannot be stored take the Job away", secretErr: errors.New("quota exceeded"), wantErr: []string{"quota exceeded"}},
		{name: "a Job that cannot be taken away is said too", secretErr: errors.New("quota exceeded"), deleteErr: errors.New("etcd timeout"),
			wantErr: []string{"quota exceeded", "etcd timeout"}, wantJob: true, wantSuspended: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			builder := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).
				WithInterceptorFuncs(interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
					if _, ok := obj.(*corev1.Secret); ok && tc.secretErr != nil {
						return tc.secretErr
					}
					return c.Create(ctx, obj, opts...)
				}, Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
					if tc.deleteErr != nil {
						return tc.deleteErr
					}
					return c.Delete(ctx, obj, opts...)
				}, Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
					if tc.patchErr != nil {
						return tc.patchErr
					}
					return c.Patch(ctx, obj, patch, opts...)
				}})
			if tc.existing {
				existing := NewJobs(nil, nil, JobOptions{Namespace: "vigil-system", Timeout: time.Minute}, nil).job(name, request, nil)
				builder = fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(existing)
			}
			c := builder.Build()
			jobs := NewJobs(c, c, JobOptions{Namespace: "vigil-system", Image: "vigil:1", Timeout: time.Minute}, &recordedOutcomes{})
			err := jobs.Submit(context.Background(), request)
			if (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("Submit = %v, want an error saying %q", err, tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Submit = %v, want it to say %q", err, want)
				}
			}
			job := &batchv1.Job{}
			if err := c.Get(context.Background(), client.ObjectKey{Namespace: "vigil-system", Name: name}, job); (err == nil) != tc.wantJob {
				t.Fatalf("the Job exists %v, want %v", err == nil, tc.wantJob)
			}
			if suspended := job.Spec.Suspend != nil && *job.Spec.Suspend; tc.wantJob && suspended != tc.wantSuspended {
				t.Errorf("the Job is suspended %v, want %v", suspended, tc.wantSuspended)
			}
			secret := &corev1.Secret{}
			err = c.Get(context.Background(), client.ObjectKey{Namespace: "vigil-system", Name: name}, secret)
			if (err == nil) != tc.wantSecret {
				t.Fatalf("the credentials Secret exists %v, want %v", err == nil, tc.wantSecret)
			}
			if !tc.wantSecret {
				return
			}
			if len(secret.OwnerReferences) != 1 || secret.OwnerReferences[0].Name != name || secret.OwnerReferences[0].Kind != "Job" {
				t.Errorf("the Secret's owners are %+v, want the Job, so that it goes with it", secret.OwnerReferences)
			}
			if secret.Labels[ComponentLabel] != ComponentValue {
				t.Errorf("the Secret's labels are %v", secret.Labels)
			}
			var first dockerConfig
			if err := json.Unmarshal(secret.Data["0.json"], &first); err != nil {
				t.Fatal(err)
			}
			want := map[string]dockerAuth{"registry.example": {Username: "shop", Password: "s3cret"}, "mirror.example": {IdentityToken: "identity"}}
			if len(first.Auths) != 2 || first.Auths["registry.example"] != want["registry.example"] || first.Auths["mirror.example"] != want["mirror.example"] {
				t.Errorf("the first image's credentials are %+v, want %+v", first.Auths, want)
			}
			if string(secret.Data["1.json"]) != `{"auths":{}}` {
				t.Errorf("the second image's credentials are %s, want none", secret.Data["1.json"])
			}
			args := job.Spec.Template.Spec.Containers[0].Args
			for _, image := range request.Images {
				if i := slices.Index(args, image.Reference); i < 1 || args[i-1] != "--image" {
					t.Errorf("the Job's arguments %v do not name %s", args, image.Reference)
				}
			}
		})
	}
}

func TestTheScanJobsArguments(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		scan    sbom.Options
		want    []string
		wantNot []string
	}{
		{name: "defaults name no bound", scan: sbom.Options{},
			wantNot: []string{"--platform", "--max-image-size", "--max-sbom-size", "--timeout", "--plain-http", "--insecure-skip-tls-verify"}},
		{name: "every setting",
			scan: sbom.Options{Platform: "linux/arm64", MaxImageSize: 1, MaxSBOMSize: 2, Timeout: 90 * time.Second, Registries: map[string]sbom.RegistryAccess{
				"registry.local:5000": {PlainHTTP: true}, "self-signed.example": {SkipTLSVerify: true},
			}},
			want: []string{"--platform linux/arm64", "--max-image-size 1", "--max-sbom-size 2", "--timeout 1m30s",
				"--plain-http registry.local:5000", "--insecure-skip-tls-verify self-signed.example"},
			wantNot: []string{"--plain-http self-signed.example", "--insecure-skip-tls-verify registry.local:5000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			jobs := NewJobs(nil, nil, JobOptions{Namespace: "vigil-system", Image: "vigil:1", Timeout: time.Minute, Scan: tc.scan}, nil)
			args := strings.Join(jobs.job(JobName(digest, testScanUID, 1), Request{Digest: digest, Attempt: 1}, nil).Spec.Template.Spec.Containers[0].Args, " ")
			for _, want := range tc.want {
				if !strings.Contains(args, want) {
					t.Errorf("the arguments %q lack %q", args, want)
				}
			}
			for _, unwanted := range tc.wantNot {
				if strings.Contains(args, unwanted) {
					t.Errorf("the arguments %q have %q", args, unwanted)
				}
			}
		})
	}
}

func TestTheScanJobsSandbox(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	storage := resource.MustParse("8Gi")
	tests := []struct {
		name          string
		options       JobOptions
		wantHostUsers *bool
		wantScratch   *resource.Quantity
	}{
		{name: "host users and an unbounded scratch volume by default", options: JobOptions{Timeout: 10 * time.Minute}},
		{name: "a user namespace and the storage limit as the scratch bound", wantHostUsers: new(bool), wantScratch: &storage,
			options: JobOptions{Timeout: 10 * time.Minute, UserNamespace: true, Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceEphemeralStorage: storage},
			}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job := NewJobs(nil, nil, tc.options, nil).job(JobName(digest, testScanUID, 1), Request{Digest: digest, Attempt: 1}, nil)
			spec := job.Spec.Template.Spec
			if (spec.HostUsers == nil) != (tc.wantHostUsers == nil) || (spec.HostUsers != nil && *spec.HostUsers != *tc.wantHostUsers) {
				t.Errorf("hostUsers %v, want %v", spec.HostUsers, tc.wantHostUsers)
			}
			scratch := spec.Volumes[0].EmptyDir.SizeLimit
			if (scratch == nil) != (tc.wantScratch == nil) || (scratch != nil && !scratch.Equal(*tc.wantScratch)) {
				t.Errorf("scratch size limit %v, want %v", scratch, tc.wantScratch)
			}
			if got := *job.Spec.ActiveDeadlineSeconds; got != 600 {
				t.Errorf("active deadline %d s, want the scan timeout of 600 s", got)
			}
		})
	}
}
