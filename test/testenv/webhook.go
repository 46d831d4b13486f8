package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/webhook"
)

// InstallWebhook creates the webhook configuration that controller-gen generates
// (charts/vigil/files/webhook), named name and pointed at a manager's webhook server on
// 127.0.0.1:port whose certificate caPEM signs, and returns it.
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
	return config, nil
}
