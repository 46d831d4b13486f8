package app

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/test/testenv"
)

func TestUnknownArgumentsAreRejectedBeforeAnythingStarts(t *testing.T) {
	for _, args := range [][]string{{"scan", "--help"}, {"--once", "now"}} {
		var stdout, stderr bytes.Buffer
		if code := Main(args, &stdout, &stderr); code != 2 {
			t.Errorf("demo %v: exit code %d, want 2", args, code)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "demo: unexpected arguments: ") || lines[1] != "Usage: demo [--once]" {
			t.Errorf("demo %v: stderr %q, want an error line and the usage line", args, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("demo %v started: %s", args, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"--help"}, &stdout, &stderr); code != 0 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "-once") {
		t.Errorf("demo --help: exit code %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestCtrlCWhileTheDemoStarts: a user presses Ctrl-C while the control plane starts; the demo
// stops before the next step and removes everything it started.
func TestCtrlCWhileTheDemoStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	if dir, err := testenv.AssetsDir(); err != nil || !exists(filepath.Join(dir, "kube-apiserver")) {
		t.Skip("the control plane is not built; run 'make tools'")
	}
	reader, writer := io.Pipe()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- Main(nil, writer, &stderr)
		_ = writer.Close()
	}()
	var output strings.Builder
	workDir := ""
	lines := bufio.NewScanner(reader)
	for lines.Scan() {
		line := lines.Text()
		output.WriteString(line + "\n")
		if m := regexp.MustCompile(`work folder: (.+)\)$`).FindStringSubmatch(line); m != nil {
			workDir = m[1]
		}
		if strings.Contains(line, "Starting etcd and kube-apiserver") {
			break
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&output, reader); close(copied) }()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after Ctrl-C, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the demo did not stop within 2 minutes of Ctrl-C")
	}
	<-copied
	if workDir == "" || exists(workDir) {
		t.Errorf("work folder %q not removed:\n%s", workDir, output.String())
	}
	if strings.Contains(output.String(), "Starting a registry") {
		t.Errorf("the demo went on after Ctrl-C:\n%s", output.String())
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
