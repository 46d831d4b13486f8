package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Binaries are the image's programs by path, each built from its main package: the manager that
// the chart's Deployment runs, the scan engine that the scan Jobs run, and the vigil command
// whose dashboard the chart runs.
var Binaries = map[string]string{
	"/vigil-manager": "./cmd/manager",
	"/vigil-scanner": "./cmd/vigil-scanner",
	"/vigil":         "./cmd/vigil",
}

// User is the image's user and group, distroless' "nonroot".
const User = "65532:65532"

// Entrypoint is the image's entrypoint.
var Entrypoint = []string{"/vigil"}

// The files a distroless static base holds that Vigil needs: the users (the manager and the scan
// Jobs run as nonroot), the CA certificates (registries and database downloads over HTTPS).
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group  = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
)

// Build returns Vigil's image: one layer of the base files and one of the binaries, owned by
// root, with User and Entrypoint.
func Build(binaries map[string][]byte, caCertificates []byte) (v1.Image, error) {
	base, err := layer([]entry{
		{path: "etc/", mode: 0o755, dir: true},
		{path: "etc/passwd", mode: 0o644, content: []byte(passwd)},
		{path: "etc/group", mode: 0o644, content: []byte(group)},
		{path: "etc/ssl/", mode: 0o755, dir: true},
		{path: "etc/ssl/certs/", mode: 0o755, dir: true},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, content: caCertificates},
		{path: "home/", mode: 0o755, dir: true},
		{path: "home/nonroot/", mode: 0o700, dir: true, uid: 65532, gid: 65532},
		{path: "tmp/", mode: 0o1777, dir: true},
	})
	if err != nil {
		return nil, err
	}
	var programs []entry
	for path, content := range binaries {
		programs = append(programs, entry{path: path[1:], mode: 0o755, content: content})
	}
	apps, err := layer(programs)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, base, apps)
	if err != nil {
		return nil, fmt.Errorf("adding the layers: %w", err)
	}
	config, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	config = config.DeepCopy()
	config.Architecture, config.OS = "amd64", "linux"
	config.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	config.Config.User = User
	config.Config.Entrypoint = Entrypoint
	config.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	config.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, config)
}

type entry struct {
	path     string
	mode     int64
	dir      bool
	uid, gid int
	content  []byte
}

// layer is a reproducible layer of entries (sorted, fixed times).
func layer(entries []entry) (v1.Layer, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })
	var buf bytes.Buffer
	writer := tar.NewWriter(&buf)
	for _, e := range entries {
		header := &tar.Header{Name: e.path, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if e.dir {
			header.Typeflag = tar.TypeDir
		} else {
			header.Typeflag, header.Size = tar.TypeReg, int64(len(e.content))
		}
		if err := writer.WriteHeader(header); err != nil {
			return nil, fmt.Errorf("writing %s: %w", e.path, err)
		}
		if _, err := writer.Write(e.content); err != nil {
			return nil, fmt.Errorf("writing %s: %w", e.path, err)
		}
	}
	if err := writer.Close(); err != nil {
		return nil, err
	}
	content := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(content)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
