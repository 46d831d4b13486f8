package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var (
	builtMu sync.Mutex
	built   = map[string]string{}
)

// BuildBinary builds the main package at pkg (relative to the module root, for example
// "./cmd/manager") once per test process, and returns the binary's path. The binary lives in a
// folder that the test process removes with RemoveBinaries.
func BuildBinary(pkg string) (string, error) {
	builtMu.Lock()
	defer builtMu.Unlock()
	if path, ok := built[pkg]; ok {
		return path, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "vigil-bin-")
	if err != nil {
		return "", fmt.Errorf("creating a folder for %s: %w", pkg, err)
	}
	path := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("building %s: %w: %s", pkg, err, out)
	}
	built[pkg] = path
	return path, nil
}

// RemoveBinaries removes every binary BuildBinary built.
func RemoveBinaries() {
	builtMu.Lock()
	defer builtMu.Unlock()
	for pkg, path := range built {
		_ = os.RemoveAll(filepath.Dir(path))
		delete(built, pkg)
	}
}
