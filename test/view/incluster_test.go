package view

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/pkg/dashboard"
)

// serviceAccountToken creates a service account in namespace and returns a token for it.
func serviceAccountToken(t *testing.T, namespace, name string) string {
	t.Helper()
	g := NewWithT(t)
	ctx := t.Context()
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}})).To(Succeed())
	clientset, err := kubernetes.NewForConfig(env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	token, err := clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	return token.Status.Token
}

func TestTheInClusterDashboardLetsInOnlyTokensAllowedToListVulnerabilities(t *testing.T) {
	env.Isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	createCatalogue(t)
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "security-team"}})).To(Succeed())
	reader := serviceAccountToken(t, "security-team", "reader")
	stranger := serviceAccountToken(t, "security-team", "stranger")
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "vulnerability-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"vigil.dev"}, Resources: []string{"vulnerabilities"}, Verbs: []string{"list"}}},
	}
	g.Expect(env.Client.Create(ctx, role)).To(Succeed())
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vulnerability-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "security-team", Name: "reader"}},
	}
	g.Expect(env.Client.Create(ctx, binding)).To(Succeed())
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), binding)
		_ = env.Client.Delete(context.Background(), role)
	})

	// The dashboard as the chart runs it: its own credentials read, the API server judges tokens.
	reviewer, err := client.New(env.Config, client.Options{Scheme: clientgoscheme.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	server, err := dashboard.New(ctx, dashboard.Options{
		Config: env.Config, Authorizer: &dashboard.KubernetesAuthorizer{Client: reviewer, TTL: time.Second},
	})
	g.Expect(err).NotTo(HaveOccurred())
	httpServer := httptest.NewServer(server)
	t.Cleanup(httpServer.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, token string) (int, string) {
		request, err := http.NewRequestWithContext(ctx, http.MethodGet, httpServer.URL+path, nil)
		g.Expect(err).NotTo(HaveOccurred())
		if token != "" {
			request.Header.Set("Authorization", "Bearer "+token)
		}
		response, err := noRedirect.Do(request)
		g.Expect(err).NotTo(HaveOccurred())
		defer response.Body.Close()
		body, err := io.ReadAll(response.Body)
		g.Expect(err).NotTo(HaveOccurred())
		return response.StatusCode, string(body)
	}

	// Without a token: the login page. With a forged one: refused.
	code, _ := get("/", "")
	g.Expect(code).To(Equal(http.StatusSeeOther))
	code, body := get("/", "eyJhbGciOiJSUzI1NiJ9.forged.token")
	g.Expect(code).To(Equal(http.StatusUnauthorized))
	g.Expect(body).NotTo(ContainSubstring("CVE-2022-22965"))

	// A service account that may not list vulnerabilities: refused, by name.
	code, body = get("/vulnerabilities.csv", stranger)
	g.Expect(code).To(Equal(http.StatusForbidden))
	g.Expect(body).To(ContainSubstring("system:serviceaccount:security-team:stranger may not list vulnerabilities"))
	g.Expect(body).NotTo(ContainSubstring("CVE-2022-22965"))

	// One that may: the view. The API server's authorizer may take a moment to see the binding.
	g.Eventually(func() int { code, _ := get("/", reader); return code }, 10*time.Second, 200*time.Millisecond).Should(Equal(http.StatusOK))
	code, body = get("/?q=spring", reader)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(body).To(ContainSubstring("CVE-2022-22965"))
	g.Expect(body).To(ContainSubstring("system:serviceaccount:security-team:reader"))

	// The permission is revoked: the token is refused once the remembered answer expires.
	g.Expect(env.Client.Delete(ctx, binding)).To(Succeed())
	g.Eventually(func() int { code, _ := get("/", reader); return code }, 15*time.Second, 200*time.Millisecond).Should(Equal(http.StatusForbidden))
	_, body = get("/?q=spring", reader)
	g.Expect(strings.Contains(body, "CVE-2022-22965")).To(BeFalse())
}
