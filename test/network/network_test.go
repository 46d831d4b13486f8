// Package network tests Vigil behind an enterprise network: a registry and a database server
// reachable only through an HTTP proxy, with certificates of a private certificate authority.
// The settings are the ones the chart gives the manager and the scan Jobs (HTTPS_PROXY,
// NO_PROXY, SSL_CERT_DIR); Go reads them once per process, so each case runs in a fresh process
// of this test binary.
package network

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/vulndb"
	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/testenv"
)

// The hosts of the company's servers: only the proxy resolves them (Go never proxies loopback
// addresses, and the test's own process cannot resolve these names).
const (
	registryHost = "registry.corp.vigil.test"
	databaseHost = "db.corp.vigil.test"
)

// TestMain runs a child's part when the parent test asks for it.
func TestMain(m *testing.M) {
	if image := os.Getenv("VIGIL_NETWORK_CHILD_IMAGE"); image != "" {
		os.Exit(child(image, os.Getenv("VIGIL_NETWORK_CHILD_LISTING")))
	}
	os.Exit(m.Run())
}

// child resolves and scans image and updates the database from listing, as the manager and a
// scan Job do, and prints what failed.
func child(image, listing string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	failed := 0
	if _, err := sbom.Resolve(ctx, image, sbom.Options{}); err != nil {
		fmt.Printf("resolve: %v\n", err)
		failed++
	}
	if _, err := sbom.Generate(ctx, sbom.Source{Scheme: sbom.SchemeRegistry, Location: image}, sbom.Options{}); err != nil {
		fmt.Printf("scan: %v\n", err)
		failed++
	}
	dir, err := os.MkdirTemp("", "vigil-network-db-")
	if err != nil {
		fmt.Printf("database: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	store, err := vulndb.NewStore(vulndb.Options{Root: dir, ListingURL: listing, Timeout: time.Minute})
	if err == nil {
		defer store.Close()
		_, err = store.Update(ctx)
	}
	if err != nil {
		fmt.Printf("database: %v\n", err)
		failed++
	}
	return min(failed, 1)
}

// proxy is an HTTP CONNECT proxy on loopback that resolves the company's hosts to the server on
// loopback and records the hosts it was asked for.
type proxy struct {
	target string // host:port of the company's server
	mu     sync.Mutex
	hosts  []string
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if r.Method != http.MethodConnect || err != nil || !strings.HasSuffix(host, ".corp.vigil.test") {
		http.Error(w, "this proxy only tunnels to the company's hosts", http.StatusForbidden)
		return
	}
	p.mu.Lock()
	p.hosts = append(p.hosts, host)
	p.mu.Unlock()
	upstream, err := net.Dial("tcp", p.target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer upstream.Close()
	hijacker, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "no hijacking", http.StatusInternalServerError)
		return
	}
	client, buffered, err := hijacker.Hijack()
	if err != nil {
		return
	}
	defer client.Close()
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upstream, buffered); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, upstream); done <- struct{}{} }()
	<-done
}

func (p *proxy) tunnels() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.hosts)
}

func (p *proxy) asked() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	asked := map[string]bool{}
	for _, host := range p.hosts {
		asked[host] = true
	}
	return asked
}

// TestBehindAProxyWithAPrivateCA: the company's registry and vulnerability database mirror are
// reached only through its proxy and serve certificates of its own CA. With the proxy and the
// CA bundle configured as the chart configures them, images resolve and scan and the database
// updates; without the CA bundle every connection is refused as untrusted; without the proxy
// the hosts are not even found.
func TestBehindAProxyWithAPrivateCA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a database and scans an image")
	}
	// The company's server: a registry and a database distribution, behind one certificate.
	certDir := t.TempDir()
	caPEM, err := testenv.WriteServingCertificate(certDir, registryHost, databaseHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	built, err := fixturedb.Build(filepath.Join(t.TempDir(), "build"), time.Now(), filepath.Join(root, "test", "fixtures", "advisories"))
	if err != nil {
		t.Fatal(err)
	}
	distribution := t.TempDir()
	if _, err := built.Package(distribution); err != nil {
		t.Fatal(err)
	}
	registry := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	files := http.FileServer(http.Dir(distribution))
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Host, databaseHost) {
			files.ServeHTTP(w, r)
			return
		}
		registry.ServeHTTP(w, r)
	}))
	certificate, err := loadKeyPair(certDir)
	if err != nil {
		t.Fatal(err)
	}
	server.TLS = certificate
	server.StartTLS()
	defer server.Close()
	_, port, _ := net.SplitHostPort(server.Listener.Addr().String())

	img, err := images.AlpineOpenSSL()
	if err != nil {
		t.Fatal(err)
	}
	// Pushed directly on loopback, as the company's CI would.
	loopbackRef, err := name.ParseReference("127.0.0.1:" + port + "/shop/web:1.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(loopbackRef, img, remote.WithTransport(server.Client().Transport)); err != nil {
		t.Fatal(err)
	}

	proxyHandler := &proxy{target: server.Listener.Addr().String()}
	proxyServer := httptest.NewServer(proxyHandler)
	defer proxyServer.Close()

	caDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(caDir, "ca-bundle.crt"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	image := fmt.Sprintf("%s:%s/shop/web:1.0", registryHost, port)
	listing := fmt.Sprintf("https://%s:%s/%s", databaseHost, port, v6distribution.LatestFileName)
	run := func(env ...string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "VIGIL_NETWORK_CHILD_IMAGE="+image, "VIGIL_NETWORK_CHILD_LISTING="+listing,
			"HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY=", "http_proxy=", "https_proxy=", "no_proxy=", "SSL_CERT_FILE=", "SSL_CERT_DIR=",
			"TMPDIR="+t.TempDir())
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("with the proxy and the CA bundle", func(t *testing.T) {
		// NO_PROXY as the chart sets it: the cluster's own names stay direct.
		out, err := run("HTTPS_PROXY="+proxyServer.URL, "NO_PROXY=.svc,.cluster.local,localhost,127.0.0.1",
			"SSL_CERT_DIR=/etc/ssl/certs:"+caDir)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if asked := proxyHandler.asked(); !asked[registryHost] || !asked[databaseHost] {
			t.Errorf("the proxy tunnelled to %v, want both %s and %s", asked, registryHost, databaseHost)
		}
	})
	t.Run("without the CA bundle", func(t *testing.T) {
		out, err := run("HTTPS_PROXY=" + proxyServer.URL)
		if err == nil || strings.Count(out, "certificate signed by unknown authority") < 3 {
			t.Errorf("every connection should be refused as untrusted: %v\n%s", err, out)
		}
	})
	t.Run("without the proxy", func(t *testing.T) {
		before := proxyHandler.tunnels()
		out, err := run("SSL_CERT_DIR=" + caDir)
		if err == nil || proxyHandler.tunnels() != before {
			t.Errorf("the company's hosts should not be reached without the proxy: %v\n%s", err, out)
		}
	})
}

// loadKeyPair reads the tls.crt and tls.key of dir into a server TLS configuration.
func loadKeyPair(dir string) (*tls.Config, error) {
	certificate, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{certificate}, MinVersion: tls.VersionTLS12}, nil
}
