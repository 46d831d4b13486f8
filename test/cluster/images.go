package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/testenv"
)

// PausePath is the path, inside an image, of the pause binary that WithPause adds.
const PausePath = "/pause"

// pushSystemImages builds the sandbox image and CoreDNS's image and pushes them to the registry.
func (c *Cluster) pushSystemImages(ctx context.Context) error {
	c.log("Building the sandbox and CoreDNS images into %s", c.Registry)
	pause, err := c.pauseBinary()
	if err != nil {
		return err
	}
	img, err := imageOf(images.Layer{PausePath: pause}, []string{PausePath}, "65535:65535")
	if err != nil {
		return err
	}
	if _, err := c.Push(ctx, img, pauseRepository); err != nil {
		return err
	}
	coredns, err := os.ReadFile(c.bin("coredns"))
	if err != nil {
		return fmt.Errorf("reading CoreDNS: %w", err)
	}
	img, err = imageOf(images.Layer{"/coredns": coredns}, []string{"/coredns"}, "0:0")
	if err != nil {
		return err
	}
	_, err = c.Push(ctx, img, corednsRepository)
	return err
}

// pauseBinary builds the pause command (static) and returns its content.
func (c *Cluster) pauseBinary() ([]byte, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return nil, err
	}
	path := c.path("pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", path, "./test/cluster/pause")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the pause command: %w: %s", err, out)
	}
	return os.ReadFile(path)
}

// WithPause returns img with the cluster's pause binary at PausePath as its entrypoint, so that
// an image holding only files (a vulnerable package database, say) runs as a container.
func (c *Cluster) WithPause(img v1.Image) (v1.Image, error) {
	pause, err := os.ReadFile(c.path("pause"))
	if err != nil {
		return nil, fmt.Errorf("reading the pause binary: %w", err)
	}
	img, err = images.Append(img, images.Layer{PausePath: pause})
	if err != nil {
		return nil, err
	}
	return withEntrypoint(img, []string{PausePath}, "")
}

// imageOf is an image of one layer with the given entrypoint and user.
func imageOf(files images.Layer, entrypoint []string, user string) (v1.Image, error) {
	img, err := images.Build(files)
	if err != nil {
		return nil, err
	}
	return withEntrypoint(img, entrypoint, user)
}

func withEntrypoint(img v1.Image, entrypoint []string, user string) (v1.Image, error) {
	config, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image's configuration: %w", err)
	}
	config = config.DeepCopy()
	config.Config.Entrypoint = entrypoint
	config.Config.Cmd = nil
	if user != "" {
		config.Config.User = user
	}
	img, err = mutate.ConfigFile(img, config)
	if err != nil {
		return nil, fmt.Errorf("configuring the image: %w", err)
	}
	return img, nil
}

// Push pushes img to the cluster's registry as repository:tag and returns its reference by
// digest (registry/repository@sha256:...).
func (c *Cluster) Push(ctx context.Context, img v1.Image, repositoryAndTag string) (string, error) {
	return push(ctx, img, c.Registry+"/"+repositoryAndTag, authn.Anonymous)
}

// PushPrivate pushes img to the cluster's private registry, as Push does.
func (c *Cluster) PushPrivate(ctx context.Context, img v1.Image, repositoryAndTag string) (string, error) {
	return push(ctx, img, c.PrivateRegistry+"/"+repositoryAndTag, &authn.Basic{Username: c.PrivateUser, Password: c.PrivatePassword})
}

func push(ctx context.Context, img v1.Image, reference string, auth authn.Authenticator) (string, error) {
	ref, err := name.ParseReference(reference, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("parsing %s: %w", reference, err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuth(auth)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", reference, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("digesting %s: %w", reference, err)
	}
	return ref.Context().Name() + "@" + digest.String(), nil
}
