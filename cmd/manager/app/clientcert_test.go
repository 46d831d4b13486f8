package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/webhook"
)

// TestOnlyTheAPIServersCertificateReachesTheAdmissionPath plays clients of the webhook port on a
// real TLS server on loopback, built as the manager builds it: with --webhook-client-ca-file, an
// admission request without a client certificate, or with one of another CA, is refused, one
// with a certificate of the configured CA (the API server's) is served, and the scan reports on
// the same port still need no certificate (their token is checked by their handler).
func TestOnlyTheAPIServersCertificateReachesTheAdmissionPath(t *testing.T) {
	dir := t.TempDir()
	servingCA := newTestCA(t, "serving-ca")
	servingCA.issue(t, dir, "tls", &x509.Certificate{
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	apiServerCA := newTestCA(t, "admission-client-ca")
	otherCA := newTestCA(t, "tenant-ca")
	caFile := filepath.Join(dir, "admission-client-ca.crt")
	if err := os.WriteFile(caFile, apiServerCA.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clientCertificate := func(ca *testCA) tls.Certificate {
		name := strings.ReplaceAll(ca.cert.Subject.CommonName, "-", "")
		ca.issue(t, dir, name, &x509.Certificate{
			Subject: pkix.Name{CommonName: "kube-apiserver-admission"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	fromAPIServer, fromTenant := clientCertificate(apiServerCA), clientCertificate(otherCA)

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	_ = listener.Close()

	tests := []struct {
		name     string
		clientCA string
		cert     *tls.Certificate
		path     string
		want     int // 0: the connection fails
	}{
		{name: "admission without a certificate", clientCA: caFile, path: webhook.Path, want: http.StatusForbidden},
		{name: "admission with a certificate of another CA", clientCA: caFile, cert: &fromTenant, path: webhook.Path, want: 0},
		{name: "admission with the API server's certificate", clientCA: caFile, cert: &fromAPIServer, path: webhook.Path, want: http.StatusOK},
		{name: "a scan report needs no certificate", clientCA: caFile, path: executor.ReportPath, want: http.StatusOK},
		{name: "without the flag admission needs no certificate", path: webhook.Path, want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			options := &Options{WebhookHost: "127.0.0.1", WebhookPort: port, WebhookCertDir: dir, WebhookClientCAFile: tt.clientCA}
			server, err := newWebhookServer(options, nil)
			if err != nil {
				t.Fatal(err)
			}
			served := func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }
			server.Register(webhook.Path, admissionHandler(options, http.HandlerFunc(served)))
			server.Register(executor.ReportPath, http.HandlerFunc(served))
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- server.Start(ctx) }()
			defer func() { cancel(); <-done }()
			waitStarted(t, server.StartedChecker())

			config := &tls.Config{RootCAs: servingCA.pool(), MinVersion: tls.VersionTLS12}
			if tt.cert != nil {
				// Sent whatever CAs the server names, as an attacker would.
				config.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tt.cert, nil }
			}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: config}}
			defer client.CloseIdleConnections()
			response, err := client.Post(fmt.Sprintf("https://127.0.0.1:%d%s", port, tt.path), "application/json", strings.NewReader(`{}`))
			if tt.want == 0 {
				if err == nil {
					_ = response.Body.Close()
					t.Fatalf("the server answered %d; want the handshake refused", response.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_ = response.Body.Close()
			if response.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", response.StatusCode, tt.want)
			}
		})
	}
}

func TestABadClientCABundleStopsTheManager(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.crt")
	if err := os.WriteFile(empty, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{empty, filepath.Join(dir, "missing.crt")} {
		if _, err := newWebhookServer(&Options{WebhookClientCAFile: file}, nil); err == nil {
			t.Errorf("%s: no error", filepath.Base(file))
		}
	}
}

func waitStarted(t *testing.T, check func(*http.Request) error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for check(nil) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the webhook server did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testCA is a certificate authority for the tests' serving and client certificates.
type testCA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// issue signs template and writes name.crt and name.key into dir.
func (ca *testCA) issue(t *testing.T, dir, name string, template *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber = big.NewInt(time.Now().UnixNano())
	template.NotBefore, template.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	template.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{
		name + ".crt": {Type: "CERTIFICATE", Bytes: der}, name + ".key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
