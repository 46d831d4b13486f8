package sbom

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Reasons of scan and resolution failures, as Explain names them.
const (
	ReasonTooLarge             = "TooLarge"
	ReasonAuthenticationFailed = "AuthenticationFailed"
	ReasonImageNotFound        = "ImageNotFound"
	ReasonRegistryUnreachable  = "RegistryUnreachable"
	ReasonRegistryDenied       = "RegistryDenied"
	ReasonRegistryError        = "RegistryError"
)

// maxExplanation bounds the message Explain returns.
const maxExplanation = 300

// Explain maps a scan or resolution error to a condition reason and a short message that is safe
// to write into a status or an Event: it is built from the error's types (a registry's HTTP
// status and error codes, the network error, Vigil's own errors), never from a body that a
// registry sent, which can be megabytes of HTML or terminal escape sequences chosen by whoever
// runs the registry. otherwise is the reason of an error of no known kind, whose text is then
// cleaned of control characters and cut short.
func Explain(err error, otherwise string) (reason, message string) {
	if err == nil {
		return otherwise, ""
	}
	var (
		tooLarge   *TooLargeError
		denied     *RegistryDeniedError
		registry   *transport.Error
		dnsErr     *net.DNSError
		opErr      *net.OpError
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		timeoutErr interface{ Timeout() bool }
	)
	switch {
	case errors.As(err, &tooLarge) && tooLarge.Limit == 0:
		// a TooLargeError without figures stands for a bound that a scan Job reported
		return ReasonTooLarge, Sanitize(err.Error(), maxExplanation)
	case errors.As(err, &tooLarge):
		return ReasonTooLarge, tooLarge.Error()
	case errors.As(err, &denied):
		return ReasonRegistryDenied, denied.Error()
	case errors.As(err, &registry):
		return explainStatus(registry)
	case errors.Is(err, ErrUnauthorized):
		return ReasonAuthenticationFailed, "the registry refused access"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return ReasonRegistryUnreachable, "the registry's host name does not resolve"
		}
		return ReasonRegistryUnreachable, "the registry's host name could not be resolved"
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verifyErr):
		return ReasonRegistryUnreachable, "the registry's TLS certificate is not trusted"
	case errors.As(err, &recordErr):
		return ReasonRegistryUnreachable, "the registry does not speak TLS (configure it as a plain-HTTP registry if it is one)"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &timeoutErr) && timeoutErr.Timeout():
		return ReasonRegistryUnreachable, "the registry did not answer in time"
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRegistryUnreachable, "the registry refused the connection"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ReasonRegistryUnreachable, "the registry closed the connection"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return ReasonRegistryUnreachable, "the registry's network is unreachable"
	case errors.As(err, &opErr):
		return ReasonRegistryUnreachable, fmt.Sprintf("the registry could not be reached (%s)", opErr.Op)
	}
	return otherwise, Sanitize(err.Error(), maxExplanation)
}

// registryErrorCode is the form of a registry error code (OCI distribution spec: MANIFEST_UNKNOWN,
// NAME_UNKNOWN, DENIED, TOOMANYREQUESTS, ...); anything else a registry sends is dropped.
var registryErrorCode = regexp.MustCompile(`^[A-Z][A-Z_]{0,39}$`)

func explainStatus(err *transport.Error) (reason, message string) {
	var codes []string
	for _, diagnostic := range err.Errors {
		code := string(diagnostic.Code)
		if registryErrorCode.MatchString(code) && len(codes) < 3 {
			codes = append(codes, code)
		}
	}
	message = fmt.Sprintf("the registry answered %d %s", err.StatusCode, http.StatusText(err.StatusCode))
	if len(codes) > 0 {
		message += " (" + strings.Join(codes, ", ") + ")"
	}
	switch {
	case err.StatusCode == http.StatusUnauthorized || err.StatusCode == http.StatusForbidden:
		return ReasonAuthenticationFailed, message
	case err.StatusCode == http.StatusNotFound || hasCode(err, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode):
		return ReasonImageNotFound, message
	case err.StatusCode == http.StatusTooManyRequests || err.StatusCode >= 500:
		return ReasonRegistryUnreachable, message
	}
	return ReasonRegistryError, message
}

func hasCode(err *transport.Error, codes ...transport.ErrorCode) bool {
	for _, diagnostic := range err.Errors {
		for _, code := range codes {
			if diagnostic.Code == code {
				return true
			}
		}
	}
	return false
}

// ansiSequence matches terminal escape sequences (CSI and OSC), which are removed whole.
var ansiSequence = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])`)

// Sanitize makes text fit for a status or an Event: terminal escape sequences removed, every
// other control character and invalid byte replaced by a space, whitespace folded into single
// spaces, and at most n bytes kept, cut on a character boundary.
func Sanitize(text string, n int) string {
	text = ansiSequence.ReplaceAllString(text, "")
	text = strings.ToValidUTF8(text, " ")
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, text)
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > n {
		cut := n
		for cut > 0 && !isRuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
	}
	return text
}

func isRuneStart(b byte) bool {
	return b&0xc0 != 0x80
}
