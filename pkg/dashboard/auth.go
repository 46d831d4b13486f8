package dashboard

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// tokenCookie holds the bearer token that a user gave on the login page.
const tokenCookie = "vigil-token"

// KubernetesAuthorizer asks the API server who a bearer token is (TokenReview) and whether they
// may list vulnerabilities (SubjectAccessReview), and remembers the answer for a few seconds so
// that a page and its event stream do not ask twice.
type KubernetesAuthorizer struct {
	// Client creates the reviews: it needs to create tokenreviews and subjectaccessreviews.
	Client client.Client
	// TTL is how long an answer is remembered; a revoked permission ends within it.
	TTL time.Duration

	mu      sync.Mutex
	answers map[[sha256.Size]byte]answer
}

type answer struct {
	user    string
	allowed bool
	expires time.Time
}

// maxAnswers bounds the remembered answers: anyone may send tokens.
const maxAnswers = 4096

// Authorize implements Authorizer.
func (a *KubernetesAuthorizer) Authorize(ctx context.Context, token string) (string, bool, error) {
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	a.mu.Lock()
	if cached, ok := a.answers[key]; ok && now.Before(cached.expires) {
		a.mu.Unlock()
		return cached.user, cached.allowed, nil
	}
	a.mu.Unlock()

	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}
	if err := a.Client.Create(ctx, review); err != nil {
		return "", false, fmt.Errorf("reviewing the token: %w", err)
	}
	result := answer{expires: now.Add(a.TTL)}
	if review.Status.Authenticated {
		user := review.Status.User
		extra := map[string]authorizationv1.ExtraValue{}
		for k, v := range user.Extra {
			extra[k] = authorizationv1.ExtraValue(v)
		}
		access := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user.Username, Groups: user.Groups, UID: user.UID, Extra: extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: vigilv1alpha1.GroupVersion.Group, Version: vigilv1alpha1.GroupVersion.Version, Resource: "vulnerabilities", Verb: "list",
			},
		}}
		if err := a.Client.Create(ctx, access); err != nil {
			return "", false, fmt.Errorf("reviewing the access of %s: %w", user.Username, err)
		}
		result.user, result.allowed = user.Username, access.Status.Allowed
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.answers == nil || len(a.answers) >= maxAnswers {
		for k, v := range a.answers {
			if !now.Before(v.expires) {
				delete(a.answers, k)
			}
		}
		if a.answers == nil || len(a.answers) >= maxAnswers {
			a.answers = map[[sha256.Size]byte]answer{}
		}
	}
	a.answers[key] = result
	return result.user, result.allowed, nil
}

type userKey struct{}

// user is the name of the request's authorized user; empty for the local dashboard.
func user(r *http.Request) string {
	name, _ := r.Context().Value(userKey{}).(string)
	return name
}

// tokenOf is the request's bearer token: its Authorization header, or else the login cookie.
func tokenOf(r *http.Request) string {
	if value, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(value)
	}
	if cookie, err := r.Cookie(tokenCookie); err == nil {
		return cookie.Value
	}
	return ""
}

// authorize lets the request through when its token may list vulnerabilities, with the user's
// name in its context; otherwise it answers the request itself.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	token := tokenOf(r)
	if token == "" {
		if r.Method == http.MethodGet && r.URL.Path != "/events" && r.URL.Path != "/vulnerabilities.csv" {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
		} else {
			http.Error(w, "Log in with a Kubernetes bearer token.", http.StatusUnauthorized)
		}
		return r, false
	}
	name, allowed, err := s.authorizer.Authorize(r.Context(), token)
	switch {
	case err != nil:
		http.Error(w, "The API server could not check the token; try again.", http.StatusServiceUnavailable)
		return r, false
	case name == "":
		http.Error(w, "The token is not valid: log in again.", http.StatusUnauthorized)
		return r, false
	case !allowed:
		http.Error(w, name+" may not list vulnerabilities.vigil.dev.", http.StatusForbidden)
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), userKey{}, name)), true
}

type loginPage struct {
	Error string
	User  string
	Login bool
}

func (s *Server) loginPage(w http.ResponseWriter, _ *http.Request) {
	s.render(w, http.StatusOK, "login.html", loginPage{})
}

// login checks the token given in the form and keeps it in a cookie that scripts cannot read.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		s.render(w, http.StatusBadRequest, "login.html", loginPage{Error: "Paste a bearer token, for example from kubectl create token."})
		return
	}
	name, allowed, err := s.authorizer.Authorize(r.Context(), token)
	switch {
	case err != nil:
		s.render(w, http.StatusServiceUnavailable, "login.html", loginPage{Error: "The API server could not check the token; try again."})
		return
	case name == "":
		s.render(w, http.StatusUnauthorized, "login.html", loginPage{Error: "The API server does not accept this token."})
		return
	case !allowed:
		s.render(w, http.StatusForbidden, "login.html", loginPage{Error: name + " may not list vulnerabilities.vigil.dev."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
