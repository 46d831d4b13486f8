package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/vigil-dev/vigil/pkg/executor"
)

// dockerfile is what the Dockerfile's final stage says of the image.
type dockerfile struct {
	binaries   map[string]string // path in the image -> main package
	user       string
	entrypoint []string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	content, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(content), "\\\n", " ")
	built := map[string]string{} // /out/name -> package
	for _, match := range regexp.MustCompile(`go build [^&\n]*-o (\S+) (\./cmd/\S+)`).FindAllStringSubmatch(text, -1) {
		built[match[1]] = match[2]
	}
	d := dockerfile{binaries: map[string]string{}}
	final := text[strings.LastIndex(text, "\nFROM "):]
	for line := range strings.Lines(final) {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 4 && fields[0] == "COPY" && fields[1] == "--from=build":
			pkg, ok := built[fields[2]]
			if !ok {
				t.Fatalf("the Dockerfile copies %s, which its build stage does not build", fields[2])
			}
			d.binaries[fields[3]] = pkg
		case len(fields) == 2 && fields[0] == "USER":
			d.user = fields[1]
		case len(fields) > 1 && fields[0] == "ENTRYPOINT":
			if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "ENTRYPOINT ")), &d.entrypoint); err != nil {
				t.Fatalf("reading the ENTRYPOINT: %v", err)
			}
		}
	}
	return d
}

// TestTheImageHasWhatTheDockerfileDescribes keeps the engine-free image and the Dockerfile in
// step: the same binaries from the same packages, the same user and entrypoint, on a base with
// the nonroot user and the CA certificates that distroless' static image gives.
func TestTheImageHasWhatTheDockerfileDescribes(t *testing.T) {
	d := readDockerfile(t)
	if len(d.binaries) == 0 || d.user == "" || len(d.entrypoint) == 0 {
		t.Fatalf("the Dockerfile's final stage was not understood: %+v", d)
	}
	if !strings.Contains(mustRead(t, "../../Dockerfile"), "distroless/static-debian12:nonroot") {
		t.Fatal("the Dockerfile's base changed: check that Build still gives what it holds")
	}
	for path, pkg := range d.binaries {
		if Binaries[path] != pkg {
			t.Errorf("the Dockerfile puts %s at %s; the image tool puts %q there", pkg, path, Binaries[path])
		}
	}
	for path := range Binaries {
		if _, ok := d.binaries[path]; !ok {
			t.Errorf("the image tool adds %s, which the Dockerfile does not", path)
		}
	}
	if d.user != User {
		t.Errorf("the Dockerfile's user is %s, the image's %s", d.user, User)
	}
	if strings.Join(d.entrypoint, " ") != strings.Join(Entrypoint, " ") {
		t.Errorf("the Dockerfile's entrypoint is %v, the image's %v", d.entrypoint, Entrypoint)
	}

	binaries := map[string][]byte{}
	for path := range Binaries {
		binaries[path] = []byte("\x7fELF " + path)
	}
	img, err := Build(binaries, []byte("-----BEGIN CERTIFICATE-----\n"))
	if err != nil {
		t.Fatal(err)
	}
	config, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if config.Config.User != d.user || strings.Join(config.Config.Entrypoint, " ") != strings.Join(d.entrypoint, " ") {
		t.Errorf("the built image runs %v as %s", config.Config.Entrypoint, config.Config.User)
	}
	files := map[string]*tar.Header{}
	contents := map[string]string{}
	reader := tar.NewReader(mutate.Extract(img))
	for {
		header, err := reader.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		content, _ := io.ReadAll(reader)
		files["/"+strings.TrimSuffix(header.Name, "/")] = header
		contents["/"+strings.TrimSuffix(header.Name, "/")] = string(content)
	}
	for path := range Binaries {
		header, ok := files[path]
		if !ok || header.Mode&0o111 == 0 || header.Uid != 0 {
			t.Errorf("%s is missing, not executable or not root's: %+v", path, header)
		}
	}
	if !strings.Contains(contents["/etc/passwd"], "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd lacks the nonroot user: %q", contents["/etc/passwd"])
	}
	if !strings.HasPrefix(contents["/etc/ssl/certs/ca-certificates.crt"], "-----BEGIN CERTIFICATE-----") {
		t.Error("the CA certificates are missing")
	}
	if header := files["/tmp"]; header == nil || header.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp is not a sticky world-writable folder: %+v", header)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(content)
}

// TestTheImageHoldsEveryCommandThatVigilRuns checks the commands that run from the image: the
// scan Jobs' command that the manager sets, and the commands of the chart's containers.
func TestTheImageHoldsEveryCommandThatVigilRuns(t *testing.T) {
	if Binaries[executor.ScannerCommand] != "./cmd/vigil-scanner" {
		t.Errorf("the scan Jobs run %s, which the image holds as %q", executor.ScannerCommand, Binaries[executor.ScannerCommand])
	}
	commands := map[string]bool{}
	for _, template := range []string{"deployment.yaml", "dashboard.yaml"} {
		content := mustRead(t, "../../charts/vigil/templates/"+template)
		for _, match := range regexp.MustCompile(`command: \[(/[^,\]]+)`).FindAllStringSubmatch(content, -1) {
			commands[match[1]] = true
		}
	}
	if !commands["/vigil-manager"] || !commands["/vigil"] {
		t.Fatalf("the chart's commands were not understood: %v", commands)
	}
	for command := range commands {
		if _, ok := Binaries[command]; !ok {
			t.Errorf("the chart runs %s, which the image does not hold", command)
		}
	}
}
