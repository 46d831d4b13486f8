package view

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// listChunk is the number of objects asked for per list request: a large cluster's list comes in
// pieces, as kubectl's does, so that neither the API server nor the client holds one huge response.
const listChunk = 500

// List lists every Vulnerability with the client's credentials, in chunks.
func List(ctx context.Context, c client.Reader) ([]*Entry, error) {
	var entries []*Entry
	list := &vigilv1alpha1.VulnerabilityList{}
	options := []client.ListOption{client.Limit(listChunk)}
	for {
		if err := c.List(ctx, list, options...); err != nil {
			return nil, fmt.Errorf("listing vulnerabilities: %w", err)
		}
		for i := range list.Items {
			entries = append(entries, NewEntry(&list.Items[i]))
		}
		if list.Continue == "" {
			return entries, nil
		}
		options = []client.ListOption{client.Limit(listChunk), client.Continue(list.Continue)}
		list = &vigilv1alpha1.VulnerabilityList{}
	}
}

// ErrNotRunning is the error of Find when no vulnerability of the ID runs in the cluster.
var ErrNotRunning = errors.New("no such vulnerability runs in the cluster")

// Find reads the Vulnerability of id: an ID such as CVE-2021-44228, the Vulnerability's name
// (cve-2021-44228), or an alias such as a GHSA ID, in any letter case. Its error wraps
// ErrNotRunning when there is none.
func Find(ctx context.Context, c client.Reader, id string) (*vigilv1alpha1.Vulnerability, error) {
	id = strings.TrimSpace(id)
	name := vigilv1alpha1.VulnerabilityName(id)
	if name == "" {
		return nil, fmt.Errorf("%q is not a vulnerability ID", id)
	}
	vulnerability := &vigilv1alpha1.Vulnerability{}
	err := c.Get(ctx, client.ObjectKey{Name: name}, vulnerability)
	if err == nil {
		return vulnerability, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading vulnerability %s: %w", id, err)
	}
	entries, err := List(ctx, c)
	if err != nil {
		return nil, err
	}
	if e := FindIn(entries, id); e != nil {
		return e.Vulnerability, nil
	}
	return nil, fmt.Errorf("%s: %w", id, ErrNotRunning)
}

// FindIn is the entry whose ID, name or an alias is id, in any letter case; nil when there is none.
func FindIn(entries []*Entry, id string) *Entry {
	for _, e := range entries {
		details := &e.Vulnerability.Status.Details
		if strings.EqualFold(details.ID, id) || e.Name() == id {
			return e
		}
		for _, alias := range details.Aliases {
			if strings.EqualFold(alias, id) {
				return e
			}
		}
	}
	return nil
}

// ParseWorkload reads a workload written NAMESPACE/KIND/NAME (or KIND/NAME, in defaultNamespace)
// into a query that keeps what runs in it.
func ParseWorkload(text, defaultNamespace string) (Query, error) {
	parts := strings.Split(strings.TrimSpace(text), "/")
	if len(parts) == 2 {
		parts = append([]string{defaultNamespace}, parts...)
	}
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Query{}, fmt.Errorf("%q is not a workload: write NAMESPACE/KIND/NAME, for example shop/Deployment/api", text)
	}
	return Query{Namespace: parts[0], WorkloadKind: parts[1], WorkloadName: parts[2]}, nil
}
