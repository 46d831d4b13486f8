package chart

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/test/testenv"
)

// Scopes of the permission table in docs/security.md.
const (
	scopeCluster          = "cluster"
	scopeReleaseNamespace = "release namespace"
	scopeScannedNamespace = "each scanned namespace"
)

// permission is one verb on one resource (and resource name) in one scope.
type permission struct {
	scope, group, resource, verb, name string
}

func (p permission) String() string {
	s := p.scope + ": " + p.verb + " " + p.group + "/" + p.resource
	if p.name != "" {
		s += " named " + p.name
	}
	return s
}

// documentedPermissions reads the permission table of docs/security.md.
func documentedPermissions(t *testing.T) sets.Set[permission] {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(filepath.Join(root, "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	permissions := sets.New[permission]()
	inTable := false
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case strings.HasPrefix(line, "<!-- permission-table"):
			inTable = true
			continue
		case strings.HasPrefix(line, "<!-- end of permission-table"):
			inTable = false
			continue
		}
		if !inTable || !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| Scope ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 6 {
			t.Fatalf("permission table row %q has %d cells, want 6", line, len(cells))
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		group := cells[1]
		if group == "core" {
			group = ""
		}
		for verb := range strings.SplitSeq(cells[3], ",") {
			permissions.Insert(permission{scope: cells[0], group: group, resource: cells[2], verb: strings.TrimSpace(verb), name: cells[4]})
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	if permissions.Len() == 0 {
		t.Fatal("docs/security.md has no permission table")
	}
	return permissions
}

// permissionsOf flattens rules into permissions of scope.
func permissionsOf(scope string, rules []rbacv1.PolicyRule) sets.Set[permission] {
	permissions := sets.New[permission]()
	for _, rule := range rules {
		names := rule.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, group := range rule.APIGroups {
			for _, resource := range rule.Resources {
				for _, verb := range rule.Verbs {
					for _, name := range names {
						permissions.Insert(permission{scope: scope, group: group, resource: resource, verb: verb, name: name})
					}
				}
			}
		}
	}
	return permissions
}

func comparePermissions(t *testing.T, what string, got, want sets.Set[permission]) {
	t.Helper()
	for _, extra := range sortedPermissions(got.Difference(want)) {
		t.Errorf("%s grants %s, which docs/security.md's permission table does not list", what, extra)
	}
	for _, missing := range sortedPermissions(want.Difference(got)) {
		t.Errorf("docs/security.md's permission table lists %s, which %s does not grant", missing, what)
	}
}

func sortedPermissions(s sets.Set[permission]) []string {
	list := make([]string, 0, s.Len())
	for p := range s {
		list = append(list, p.String())
	}
	slices.Sort(list)
	return list
}

// The RBAC generated from the code's markers is exactly the documented table (its cluster and
// release namespace scopes; the pull-secret reader is written in the chart's template).
func TestGeneratedRBACMatchesThePermissionTable(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(filepath.Join(root, "charts", "vigil", "files", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := sets.New[permission]()
	for document := range strings.SplitSeq(string(content), "\n---\n") {
		var role struct {
			Kind     string                     `json:"kind"`
			Metadata struct{ Namespace string } `json:"metadata"`
			Rules    []rbacv1.PolicyRule        `json:"rules"`
		}
		if err := yaml.Unmarshal([]byte(document), &role); err != nil {
			t.Fatal(err)
		}
		switch role.Kind {
		case "ClusterRole":
			got = got.Union(permissionsOf(scopeCluster, role.Rules))
		case "Role":
			got = got.Union(permissionsOf(scopeReleaseNamespace, role.Rules))
		case "":
		default:
			t.Errorf("files/rbac/role.yaml holds a %s", role.Kind)
		}
	}
	want := documentedPermissions(t)
	for p := range want {
		if p.scope == scopeScannedNamespace {
			want.Delete(p)
		}
	}
	comparePermissions(t, "files/rbac/role.yaml", got, want)
}

// The chart renders exactly the documented table: the manager's ClusterRole, its Role in the
// release namespace (wherever the release is installed), and the pull-secret reader, each
// bound to the manager's service account alone.
func TestRenderedRBACMatchesThePermissionTable(t *testing.T) {
	for _, namespace := range []string{"vigil-system", "security-tools"} {
		t.Run(namespace, func(t *testing.T) {
			out, err := helm(t, "template", "guard", "charts/vigil", "--namespace", namespace, "--show-only", "templates/rbac.yaml")
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			type object struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
				Rules    []rbacv1.PolicyRule `json:"rules"`
				RoleRef  rbacv1.RoleRef      `json:"roleRef"`
				Subjects []rbacv1.Subject    `json:"subjects"`
			}
			got := sets.New[permission]()
			roles := map[string]string{} // kind/name → scope
			var bindings []object
			for document := range strings.SplitSeq(out, "\n---\n") {
				var o object
				if err := yaml.Unmarshal([]byte(document), &o); err != nil {
					t.Fatal(err)
				}
				switch {
				case o.Kind == "ClusterRole" && strings.Contains(o.Metadata.Name, "pull-secret-reader"):
					got = got.Union(permissionsOf(scopeScannedNamespace, o.Rules))
					roles["ClusterRole/"+o.Metadata.Name] = scopeScannedNamespace
				case o.Kind == "ClusterRole":
					got = got.Union(permissionsOf(scopeCluster, o.Rules))
					roles["ClusterRole/"+o.Metadata.Name] = scopeCluster
				case o.Kind == "Role":
					if o.Metadata.Namespace != namespace {
						t.Errorf("Role %s is in namespace %q, not the release namespace %q", o.Metadata.Name, o.Metadata.Namespace, namespace)
					}
					got = got.Union(permissionsOf(scopeReleaseNamespace, o.Rules))
					roles["Role/"+o.Metadata.Name] = scopeReleaseNamespace
				case o.Kind == "ClusterRoleBinding" || o.Kind == "RoleBinding":
					bindings = append(bindings, o)
				case o.Kind == "ValidatingAdmissionPolicy" || o.Kind == "ValidatingAdmissionPolicyBinding":
					// narrows the manager's RoleBindings; test/integration plays it
				case o.Kind == "":
				default:
					t.Errorf("templates/rbac.yaml renders a %s", o.Kind)
				}
			}
			// the release's own pull-secret reader name is what the manager may bind
			want := sets.New[permission]()
			for p := range documentedPermissions(t) {
				if p.name == "vigil-pull-secret-reader" {
					p.name = "guard-vigil-pull-secret-reader"
				}
				want.Insert(p)
			}
			comparePermissions(t, "the rendered chart", got, want)

			if len(bindings) != 2 {
				t.Fatalf("the chart renders %d bindings, want the ClusterRoleBinding and the RoleBinding of the manager", len(bindings))
			}
			for _, binding := range bindings {
				scope := roles[binding.RoleRef.Kind+"/"+binding.RoleRef.Name]
				if scope != scopeCluster && scope != scopeReleaseNamespace {
					t.Errorf("%s %s binds %s %s, not the manager's role", binding.Kind, binding.Metadata.Name, binding.RoleRef.Kind, binding.RoleRef.Name)
				}
				if binding.Kind == "RoleBinding" && binding.Metadata.Namespace != namespace {
					t.Errorf("RoleBinding %s is in namespace %q, not %q", binding.Metadata.Name, binding.Metadata.Namespace, namespace)
				}
				if len(binding.Subjects) != 1 || binding.Subjects[0].Kind != rbacv1.ServiceAccountKind || binding.Subjects[0].Namespace != namespace {
					t.Errorf("%s %s binds %v, want only the manager's service account in %s", binding.Kind, binding.Metadata.Name, binding.Subjects, namespace)
				}
			}
		})
	}
}
