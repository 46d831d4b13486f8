package sbom

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseSource(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(archive, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		input   string
		want    Source
		wantErr string
	}{
		{input: "alpine:3.17", want: Source{SchemeRegistry, "alpine:3.17"}},
		{input: "registry:ghcr.io/shop/api:1.4", want: Source{SchemeRegistry, "ghcr.io/shop/api:1.4"}},
		{input: "127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("a", 64), want: Source{SchemeRegistry, "127.0.0.1:5000/shop/api@sha256:" + strings.Repeat("a", 64)}},
		{input: "oci-dir:" + dir, want: Source{SchemeOCIDir, dir}},
		{input: "oci-archive:" + archive, want: Source{SchemeOCIArchive, archive}},
		{input: "docker-archive:" + archive, want: Source{SchemeDockerArchive, archive}},
		{input: "", wantErr: "no image given"},
		{input: "registry:", wantErr: `names no image after "registry:"`},
		{input: "Shop/API:1.4", wantErr: "is not a valid image reference"},
		{input: "shop/api:bad tag", wantErr: "is not a valid image reference"},
		{input: "oci-dir:" + archive, wantErr: "is not a directory"},
		{input: "docker-archive:" + dir, wantErr: "is a directory, not an archive"},
		{input: "oci-archive:/no/such/file.tar", wantErr: "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.input, func(t *testing.T) {
			got, err := ParseSource(tc.input)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSource(%q) error = %v, want one containing %q", tc.input, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSource(%q) = %v, %v; want %v", tc.input, got, err, tc.want)
			}
		})
	}
}

func TestCredentialsFromDockerConfig(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("robot:pa:ss"))
	tests := []struct {
		name    string
		config  string
		want    []Credential
		wantErr string
	}{
		{
			name:   "dockerconfigjson with auth",
			config: `{"auths":{"https://registry.example:5000/v1/":{"auth":"` + auth + `"}}}`,
			want:   []Credential{{Registry: "registry.example:5000", Username: "robot", Password: "pa:ss"}},
		},
		{
			name:   "legacy dockercfg with user name and password",
			config: `{"ghcr.io":{"username":"me","password":"token"}}`,
			want:   []Credential{{Registry: "ghcr.io", Username: "me", Password: "token"}},
		},
		{
			name:   "Docker Hub's many names",
			config: `{"auths":{"https://index.docker.io/v1/":{"identitytoken":"abc"}}}`,
			want:   []Credential{{Registry: "index.docker.io", Token: "abc"}},
		},
		{name: "not JSON", config: `{`, wantErr: "reading the docker config"},
		{name: "auth not base64", config: `{"auths":{"r.example":{"auth":"%%%"}}}`, wantErr: "not base64"},
		{name: "auth without a colon", config: `{"auths":{"r.example":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("robot")) + `"}}}`, wantErr: "not user:password"},
		{name: "no user", config: `{"auths":{"r.example":{}}}`, wantErr: "neither a user name nor a token"},
		{name: "empty", config: `{"auths":{}}`, wantErr: "has no credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CredentialsFromDockerConfig([]byte(tc.config))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) || got[0] != tc.want[0] {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			for _, secret := range []string{got[0].Password, got[0].Token} {
				if secret != "" && strings.Contains(got[0].String(), secret) {
					t.Errorf("String() shows the secret: %s", got[0])
				}
			}
		})
	}
}

func TestTooLargeErrorNamesTheSizes(t *testing.T) {
	tests := []struct {
		err  TooLargeError
		want string
	}{
		{TooLargeError{What: "image", Size: 900, Limit: 100}, "the image is 900 bytes, above the limit of 100 bytes"},
		{TooLargeError{What: "SBOM", Size: 3 << 30, Limit: 64 << 20}, "the SBOM is 3.0 GiB (3221225472 bytes), above the limit of 64.0 MiB (67108864 bytes)"},
		{TooLargeError{What: "image"}, "the image is too large"}, // a bound a scan Job reported, without figures
		{TooLargeError{What: "image", Size: 1024, Limit: 1023}, "the image is 1.0 KiB (1024 bytes), above the limit of 1023 bytes"},
		{TooLargeError{What: "image", Size: 1 << 20, Limit: 1<<20 - 1}, "the image is 1.0 MiB (1048576 bytes), above the limit of 1024.0 KiB (1048575 bytes)"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestCredentialsFromSecret(t *testing.T) {
	config := []byte(`{"auths":{"registry.example":{"username":"robot","password":"pw"}}}`)
	tests := []struct {
		name    string
		secret  corev1.Secret
		wantErr string
	}{
		{"a dockerconfigjson secret", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: config}}, ""},
		{"a legacy dockercfg secret", corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: []byte(`{"registry.example":{"username":"robot","password":"pw"}}`)}}, ""},
		{"an opaque secret", corev1.Secret{Type: corev1.SecretTypeOpaque}, `is of type "Opaque", not a pull secret`},
		{"a pull secret without its key", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson}, "has no .dockerconfigjson"},
		{"a pull secret with bad JSON", corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte("{")}}, "reading the docker config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.secret.Namespace, tc.secret.Name = "shop", "registry-credentials"
			got, err := CredentialsFromSecret(&tc.secret)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "shop/registry-credentials") {
					t.Fatalf("error = %v, want one naming the secret and containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != 1 || got[0] != (Credential{Registry: "registry.example", Username: "robot", Password: "pw"}) {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestRegistryAccessOf(t *testing.T) {
	got := RegistryAccessOf([]string{"mirror.local:5000", "both.local"}, []string{"self-signed.local", "both.local"})
	want := map[string]RegistryAccess{
		"mirror.local:5000": {PlainHTTP: true},
		"self-signed.local": {SkipTLSVerify: true},
		"both.local":        {PlainHTTP: true, SkipTLSVerify: true},
	}
	if len(got) != len(want) {
		t.Fatalf("RegistryAccessOf = %v", got)
	}
	for host, access := range want {
		if got[host] != access {
			t.Errorf("%s: %+v, want %+v", host, got[host], access)
		}
	}
}
