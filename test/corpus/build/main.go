// Command build writes the images of Vigil's scan corpus as OCI layouts, from the root
// filesystems, npm tree, jars and Go binary that hack/build-corpus.sh prepares under the
// corpus's work folder. An image already written is kept.
package main

import (
	"archive/tar"
	"archive/zip"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/vigil-dev/vigil/test/corpus"
	"github.com/vigil-dev/vigil/test/fixtures/images"
)

func main() {
	dir := flag.String("corpus", corpus.Dir(), "the corpus folder")
	flag.Parse()
	if err := build(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
}

func build(dir string) error {
	work := filepath.Join(dir, "work")
	rootfs := func(name string) string { return filepath.Join(work, "rootfs", name) }
	appDir := filepath.Join(work, "app-layers")
	if err := writeAppLayers(work, appDir); err != nil {
		return err
	}
	// Each image is one layer per folder, each folder the tree of the image's root.
	recipes := map[string][]string{
		"debian-minbase": {rootfs("debian-minbase")},
		"debian-jdk":     {rootfs("debian-jdk")},
		"node-app":       {rootfs("debian-minbase"), filepath.Join(work, "node-app")},
		"python-app":     {rootfs("python-app"), filepath.Join(appDir, "python")},
		"java-app":       {rootfs("debian-jdk"), filepath.Join(appDir, "java")},
		"go-app":         {filepath.Join(appDir, "go")},
	}
	for _, image := range corpus.Images {
		target := corpus.Layout(dir, image.Name)
		if _, err := os.Stat(filepath.Join(target, "index.json")); err == nil {
			continue
		}
		fmt.Printf("Writing %s\n", image.Name)
		var img v1.Image
		var err error
		if image.Name == "synthetic-5000" {
			img, err = images.LargeNodeApp(5000)
		} else {
			img, err = fromFolders(work, recipes[image.Name])
		}
		if err != nil {
			return fmt.Errorf("%s: %w", image.Name, err)
		}
		partial := target + ".partial"
		_ = os.RemoveAll(partial) // a previous run's leftover, rewritten whole
		if err := images.WriteOCILayout(partial, img); err != nil {
			return fmt.Errorf("%s: %w", image.Name, err)
		}
		if err := os.Rename(partial, target); err != nil {
			return err
		}
	}
	return corpus.MarkDone(dir)
}

// writeAppLayers lays out the application layers of the Python, Java and Go images.
func writeAppLayers(work, out string) error {
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	python := filepath.Join(out, "python", "app")
	if err := os.MkdirAll(python, 0o755); err != nil {
		return err
	}
	const app = "# The corpus's Python application, on Debian's python3-* libraries.\n" +
		"import flask, requests, yaml\n\napp = flask.Flask(__name__)\n\n\n@app.get('/')\ndef index():\n    return 'ok'\n"
	if err := os.WriteFile(filepath.Join(python, "app.py"), []byte(app), 0o644); err != nil {
		return err
	}
	java := filepath.Join(out, "java", "app")
	if err := os.MkdirAll(java, 0o755); err != nil {
		return err
	}
	if err := fatJar(filepath.Join(work, "java-libs", "root", "usr", "share", "java"), filepath.Join(java, "app.jar")); err != nil {
		return err
	}
	goApp := filepath.Join(out, "go", "app")
	if err := os.MkdirAll(goApp, 0o755); err != nil {
		return err
	}
	binary, err := os.ReadFile(filepath.Join(work, "go-app", "app"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(goApp, "app"), binary, 0o755)
}

// fatJar writes a Spring Boot style executable jar whose BOOT-INF/lib holds every jar file (not
// the version-less links) of libs, stored uncompressed as Spring Boot stores them.
func fatJar(libs, path string) error {
	entries, err := os.ReadDir(libs)
	if err != nil {
		return fmt.Errorf("reading Debian's jars: %w", err)
	}
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	defer file.Close()
	archive := zip.NewWriter(file)
	manifest := "Manifest-Version: 1.0\r\nMain-Class: org.springframework.boot.loader.JarLauncher\r\n" +
		"Start-Class: com.example.corpus.Application\r\nImplementation-Title: corpus-app\r\nImplementation-Version: 1.0.0\r\n\r\n"
	pom := "groupId=com.example.corpus\nartifactId=corpus-app\nversion=1.0.0\n"
	for name, content := range map[string]string{
		"META-INF/MANIFEST.MF": manifest,
		"META-INF/maven/com.example.corpus/corpus-app/pom.properties": pom,
	} {
		w, err := archive.Create(name)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, content); err != nil {
			return err
		}
	}
	count := 0
	for _, entry := range entries {
		if !entry.Type().IsRegular() || !strings.HasSuffix(entry.Name(), ".jar") {
			continue
		}
		content, err := os.ReadFile(filepath.Join(libs, entry.Name()))
		if err != nil {
			return err
		}
		w, err := archive.CreateHeader(&zip.FileHeader{Name: "BOOT-INF/lib/" + entry.Name(), Method: zip.Store, Modified: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return err
		}
		if _, err := w.Write(content); err != nil {
			return err
		}
		count++
	}
	if count == 0 {
		return fmt.Errorf("no jar in %s", libs)
	}
	return archive.Close()
}

// fromFolders builds a linux/amd64 image of one layer per folder. Each layer is written as a tar
// file under work first (once per folder) and read from there, so that no layer is held in memory.
func fromFolders(work string, folders []string) (v1.Image, error) {
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		Config:       v1.Config{Entrypoint: []string{"/bin/sh"}},
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	for i, folder := range folders {
		if _, err := os.Stat(folder); err != nil {
			return nil, fmt.Errorf("layer %d: %w (hack/build-corpus.sh prepares it)", i, err)
		}
		rel, err := filepath.Rel(work, folder)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(work, "tars", strings.ReplaceAll(rel, string(filepath.Separator), "-")+".tar")
		if _, err := os.Stat(path); err != nil {
			if err := writeTar(folder, path+".partial"); err != nil {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
			if err := os.Rename(path+".partial", path); err != nil {
				return nil, err
			}
		}
		layer, err := tarball.LayerFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return img, nil
}

// writeTar writes the tree at dir as a layer tar at path: regular files, folders, symbolic and
// hard links, with their modes and numeric owners.
func writeTar(dir, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	defer file.Close()
	writer := tar.NewWriter(file)
	var paths []string
	err = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	seen := map[uint64]string{} // inode → first name, for hard links
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if !info.Mode().IsRegular() && !info.IsDir() && info.Mode()&fs.ModeSymlink == 0 {
			continue // sockets, pipes and devices do not belong in a layer
		}
		header, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		header.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			header.Name += "/"
		}
		header.Uname, header.Gname = "", ""
		stat, ok := info.Sys().(*syscall.Stat_t)
		if ok {
			header.Uid, header.Gid = int(stat.Uid), int(stat.Gid)
			if info.Mode().IsRegular() && stat.Nlink > 1 {
				if first, found := seen[stat.Ino]; found {
					header.Typeflag, header.Linkname, header.Size = tar.TypeLink, first, 0
				} else {
					seen[stat.Ino] = header.Name
				}
			}
		}
		if err := writer.WriteHeader(header); err != nil {
			return err
		}
		if header.Typeflag != tar.TypeReg {
			continue
		}
		if err := copyFile(writer, p); err != nil {
			return err
		}
	}
	if err := writer.Close(); err != nil {
		return err
	}
	return file.Close()
}

func copyFile(w io.Writer, path string) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, file)
	return errors.Join(err, file.Close())
}
