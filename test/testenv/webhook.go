package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/webhook"
)

// InstallWebhook creates the webhook configuration that controller-gen generates
// (charts/vigil/files/webhook), named name and pointed at a manager's webhook server on
// 127.0.0.1:port whose certificate caPEM signs, and returns it once the API server calls it.
func (e *Environment) InstallWebhook(ctx context.Context, name string, port int, caPEM []byte) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	manifest, err := os.ReadFile(filepath.Join(root, "charts", "vigil", "files", "webhook", "manifests.yaml"))
	if err != nil {
		return nil, fmt.Errorf("reading the generated webhook configuration: %w", err)
	}
	config := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(bytes.TrimPrefix(manifest, []byte("---\n")), config); err != nil {
		return nil, fmt.Errorf("reading the generated webhook configuration: %w", err)
	}
	config.Name = name
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, webhook.Path)
	for i := range config.Webhooks {
		config.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	}
	if err := e.Client.Create(ctx, config); err != nil {
		return nil, fmt.Errorf("creating the webhook configuration: %w", err)
	}
	if err := e.waitForWebhooksInForce(ctx); err != nil {
		return nil, fmt.Errorf("waiting for the webhook configuration %s to be in force: %w", name, err)
	}
	return config, nil
}

// waitForWebhooksInForce returns once the API server calls the webhooks of every configuration
// written before it was called. The API server loads configurations in the order they were
// written, a moment after: it writes a marker configuration, whose webhook is a server of its
// own called for dry-run ConfigMaps with a marker label, and makes such requests until one
// reaches that server; then every earlier configuration is in force too.
func (e *Environment) waitForWebhooksInForce(ctx context.Context) error {
	called := make(chan struct{}, 1)
	server := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		review := admissionv1.AdmissionReview{}
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "not an admission review", http.StatusBadRequest)
			return
		}
		select {
		case called <- struct{}{}:
		default:
		}
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	defer server.Close()

	marker := "marker-" + rand.String(8)
	labels := map[string]string{"vigil.dev/webhook-marker": marker}
	url := server.URL
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw})
	config := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "vigil-test-" + marker},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         "marker.vigil.dev",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: labels},
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if err := e.Client.Create(ctx, config); err != nil {
		return fmt.Errorf("creating the marker webhook configuration: %w", err)
	}
	defer func() { _ = e.Client.Delete(context.Background(), config) }()

	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: marker, Labels: labels}}
		if err := e.Client.Create(ctx, probe, client.DryRunAll); err != nil {
			return fmt.Errorf("making a marker request: %w", err)
		}
		select {
		case <-called:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
