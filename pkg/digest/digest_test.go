package digest

import (
	"strings"
	"testing"
)

func TestFromReference(t *testing.T) {
	sha := "sha256:" + strings.Repeat("0a", 32)
	tests := []struct{ in, want string }{
		{"registry.example/app@" + sha, sha},
		{"registry.example/app:1.2@" + sha, sha},
		{"docker-pullable://registry.example/app@" + sha, sha},
		{"docker.io/library/nginx@" + sha, sha},
		{sha, ""}, // a local image configuration ID
		{"registry.example/app:1.2", ""},
		{"registry.example/app@sha256:short", ""},
		{"registry.example/app@sha256:" + strings.Repeat("0A", 32), ""},
		{"registry.example/app@sha512:" + strings.Repeat("0a", 64), ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := FromReference(tc.in); got != tc.want {
			t.Errorf("FromReference(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
