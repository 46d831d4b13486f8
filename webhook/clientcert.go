package webhook

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// ClientCertificateTLS returns a TLS option for the webhook server that asks every client for a
// certificate and verifies a presented one against the CA bundle in caFile: a certificate of
// another CA ends the handshake. A client may still connect without a certificate, because the
// scan Jobs' reports share the port and authenticate with their bound tokens instead;
// RequireClientCertificate refuses such a client on the admission path.
func ClientCertificateTLS(caFile string) (func(*tls.Config), error) {
	bundle, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the admission client CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return nil, fmt.Errorf("the admission client CA bundle %s holds no PEM certificate", caFile)
	}
	return func(c *tls.Config) {
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}, nil
}

// RequireClientCertificate answers 403, before the body is read, a request whose TLS client
// presented no certificate that the server verified; other requests go to next. It guards the
// admission path of a server configured with ClientCertificateTLS, so that only the API server
// (holding a certificate of the configured CA) is heard there.
func RequireClientCertificate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			requestsTotal.WithLabelValues(outcomeUnauthenticated).Inc()
			http.Error(w, errNoClientCertificate.Error(), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

var errNoClientCertificate = errors.New("admission requests need a client certificate of the configured CA")
