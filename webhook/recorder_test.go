package webhook

import (
	"fmt"
	"testing"
	"time"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

func TestScanNameOf(t *testing.T) {
	digest := "sha256:" + sha
	tests := []struct{ image, want string }{
		{"registry.example/mesh/proxy@" + digest, "sha256-" + sha},
		{"registry.example/mesh/proxy:1.2@" + digest, "sha256-" + sha},
		{"registry.example/shop/api:1.4", vigilv1alpha1.ReferenceScanName("registry.example/shop/api:1.4")},
		{"docker-pullable://registry.example/mesh/proxy@" + digest, "sha256-" + sha},
		{"registry.example/shop/api@sha256:short", vigilv1alpha1.ReferenceScanName("registry.example/shop/api@sha256:short")},
		{"registry.example/shop/api@sha256:" + sha[:63] + "X", vigilv1alpha1.ReferenceScanName("registry.example/shop/api@sha256:" + sha[:63] + "X")},
	}
	for _, tc := range tests {
		if got := scanNameOf(ImageRecord{Image: tc.image}); got != tc.want {
			t.Errorf("scanNameOf(%q) = %q, want %q", tc.image, got, tc.want)
		}
	}
	if got := scanNameOf(ImageRecord{Image: "registry.example/shop/api:1.4", Digest: digest}); got != "sha256-"+sha {
		t.Errorf("a record with a digest is recorded as %q", got)
	}
}

func TestMergeReferences(t *testing.T) {
	existing := []vigilv1alpha1.ImageReference{{Image: "app:1", Namespace: "shop", ServiceAccountName: "default"}}
	tests := []struct {
		name        string
		records     []ImageRecord
		wantLen     int
		wantChanged bool
	}{
		{"the same reference", []ImageRecord{{Image: "app:1", Namespace: "shop", ServiceAccountName: "default"}}, 1, false},
		{"new credentials for it", []ImageRecord{{Image: "app:1", Namespace: "shop", ServiceAccountName: "api", ImagePullSecrets: []string{"creds"}}}, 1, true},
		{"another namespace", []ImageRecord{{Image: "app:1", Namespace: "jobs", ServiceAccountName: "default"}}, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			merged, changed := mergeReferences(existing, tc.records)
			if len(merged) != tc.wantLen || changed != tc.wantChanged {
				t.Errorf("merged %+v changed %v", merged, changed)
			}
			if len(existing) != 1 || existing[0].ServiceAccountName != "default" {
				t.Errorf("the existing references were modified: %+v", existing)
			}
		})
	}

	var many []ImageRecord
	for i := range vigilv1alpha1.MaxImageReferences + 10 {
		many = append(many, ImageRecord{Image: "app:1", Namespace: fmt.Sprintf("ns-%d", i), ServiceAccountName: "default"})
	}
	if merged, _ := mergeReferences(nil, many); len(merged) != vigilv1alpha1.MaxImageReferences {
		t.Errorf("merged %d references, want the bound %d", len(merged), vigilv1alpha1.MaxImageReferences)
	}
}

func TestRecentSet(t *testing.T) {
	now := time.Now()
	set := newRecentSet(2, time.Minute)
	set.add("a", now)
	set.add("b", now)
	if !set.contains("a", now) || !set.contains("b", now) {
		t.Fatal("added keys are not remembered")
	}
	set.add("c", now) // evicts the oldest, a
	if set.contains("a", now) || !set.contains("c", now) {
		t.Error("the oldest key was not evicted")
	}
	if set.contains("b", now.Add(2*time.Minute)) {
		t.Error("an expired key is remembered")
	}
}
