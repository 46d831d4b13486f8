// Command image builds Vigil's container image without a container engine, with the content the
// Dockerfile describes: the manager at /vigil-manager and the vigil command at /vigil (static
// binaries built as the Dockerfile builds them), the CA certificates, a non-root user 65532 and
// a writable /tmp, on no base image. It writes the image as an OCI layout, pushes it to a
// registry, or both.
//
// Usage: go run ./hack/image [--oci-layout DIR] [--push REGISTRY/REPOSITORY:TAG] [--plain-http]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/vigil-dev/vigil/test/fixtures/images"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	flags := flag.NewFlagSet("image", flag.ContinueOnError)
	layoutDir := flags.String("oci-layout", "", "write the image as an OCI image layout in this folder (replaced)")
	pushTo := flags.String("push", "", "push the image to this reference (registry/repository:tag)")
	plainHTTP := flags.Bool("plain-http", false, "reach the --push registry over plain HTTP")
	caFile := flags.String("ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "the CA certificates bundle to install")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flags.Arg(0))
	}
	if *layoutDir == "" && *pushTo == "" {
		return errors.New("give --oci-layout DIR, --push REFERENCE or both")
	}
	caCertificates, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("reading the CA certificates (Debian's ca-certificates package): %w", err)
	}
	work, err := os.MkdirTemp("", "vigil-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	binaries := map[string][]byte{}
	for path, pkg := range Binaries {
		out := filepath.Join(work, filepath.Base(path))
		// As the Dockerfile builds them.
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s: %w", pkg, err)
		}
		if binaries[path], err = os.ReadFile(out); err != nil {
			return err
		}
	}
	img, err := Build(binaries, caCertificates)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if *layoutDir != "" {
		if err := os.RemoveAll(*layoutDir); err != nil {
			return err
		}
		if err := images.WriteOCILayout(*layoutDir, img); err != nil {
			return err
		}
		fmt.Printf("Wrote %s (%s)\n", *layoutDir, digest)
	}
	if *pushTo != "" {
		var options []name.Option
		if *plainHTTP {
			options = append(options, name.Insecure)
		}
		ref, err := name.ParseReference(*pushTo, options...)
		if err != nil {
			return fmt.Errorf("--push %q: %w", *pushTo, err)
		}
		if err := remote.Write(ref, img); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Printf("Pushed %s@%s\n", ref.Context(), digest)
	}
	return nil
}
