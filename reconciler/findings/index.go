package findings

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/match"
)

// Workload is the top-level owner of a pod.
type Workload struct {
	Namespace, Kind, Name string
}

// RunningContainer is a container that runs now, with its image digest and its workload.
type RunningContainer struct {
	Digest    string
	Workload  Workload
	Container string
}

// image is what is known of one image digest: a reference that names it and its findings, as
// its ImageScan lists them.
type image struct {
	reference string
	findings  []vigilv1alpha1.ImageVulnerability
}

// Index joins the containers that run now with the findings of their images. It is a cache of
// the API: the ImageScan watch publishes findings with SetImage and RemoveImage, the pod watch
// running containers with SetPod and RemovePod, and a restarted manager fills it again from its
// informers before it reconciles anything. Every change returns the names of the
// Vulnerabilities it affects. It is safe for concurrent use.
type Index struct {
	mu            sync.RWMutex
	pods          map[types.NamespacedName][]RunningContainer
	podsByDigest  map[string]map[types.NamespacedName]struct{}
	images        map[string]image
	digestsByName map[string]map[string]struct{}
}

// NewIndex returns an empty Index.
func NewIndex() *Index {
	return &Index{
		pods:          map[types.NamespacedName][]RunningContainer{},
		podsByDigest:  map[string]map[types.NamespacedName]struct{}{},
		images:        map[string]image{},
		digestsByName: map[string]map[string]struct{}{},
	}
}

// SetPod records the running containers of a pod (none removes it).
func (x *Index) SetPod(pod types.NamespacedName, containers []RunningContainer) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	affected := x.namesOfPodLocked(pod)
	for _, c := range x.pods[pod] {
		if users := x.podsByDigest[c.Digest]; users != nil {
			delete(users, pod)
			if len(users) == 0 {
				delete(x.podsByDigest, c.Digest)
			}
		}
	}
	if len(containers) == 0 {
		delete(x.pods, pod)
		return affected
	}
	x.pods[pod] = containers
	for _, c := range containers {
		if x.podsByDigest[c.Digest] == nil {
			x.podsByDigest[c.Digest] = map[types.NamespacedName]struct{}{}
		}
		x.podsByDigest[c.Digest][pod] = struct{}{}
	}
	return mergeNames(affected, x.namesOfPodLocked(pod))
}

// RemovePod forgets a pod.
func (x *Index) RemovePod(pod types.NamespacedName) []string {
	return x.SetPod(pod, nil)
}

// RemoveImage forgets the findings of an image digest.
func (x *Index) RemoveImage(digest string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	affected := x.namesOfDigestLocked(digest)
	for _, name := range affected {
		delete(x.digestsByName[name], digest)
		if len(x.digestsByName[name]) == 0 {
			delete(x.digestsByName, name)
		}
	}
	delete(x.images, digest)
	if len(x.podsByDigest[digest]) == 0 {
		return nil
	}
	return affected
}

// SetImage records the findings of an image digest, and a reference that names it.
func (x *Index) SetImage(digest, reference string, findings []vigilv1alpha1.ImageVulnerability) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	affected := x.namesOfDigestLocked(digest)
	for _, name := range affected {
		delete(x.digestsByName[name], digest)
		if len(x.digestsByName[name]) == 0 {
			delete(x.digestsByName, name)
		}
	}
	x.images[digest] = image{reference: reference, findings: findings}
	for _, f := range findings {
		name := vigilv1alpha1.VulnerabilityName(f.ID)
		if x.digestsByName[name] == nil {
			x.digestsByName[name] = map[string]struct{}{}
		}
		x.digestsByName[name][digest] = struct{}{}
	}
	if len(x.podsByDigest[digest]) == 0 {
		return nil // nothing runs the image: no Vulnerability changes
	}
	return mergeNames(affected, x.namesOfDigestLocked(digest))
}

// Names lists every Vulnerability name that some running container has.
func (x *Index) Names() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var names []string
	for name, digests := range x.digestsByName {
		for digest := range digests {
			if len(x.podsByDigest[digest]) > 0 {
				names = append(names, name)
				break
			}
		}
	}
	return names
}

func (x *Index) namesOfPodLocked(pod types.NamespacedName) []string {
	var names []string
	for _, c := range x.pods[pod] {
		names = mergeNames(names, x.namesOfDigestLocked(c.Digest))
	}
	return names
}

func (x *Index) namesOfDigestLocked(digest string) []string {
	var names []string
	for _, f := range x.images[digest].findings {
		names = mergeNames(names, []string{vigilv1alpha1.VulnerabilityName(f.ID)})
	}
	return names
}

func mergeNames(a, b []string) []string {
	for _, name := range b {
		if !slices.Contains(a, name) {
			a = append(a, name)
		}
	}
	return a
}

// Describer reads a vulnerability's details from the vulnerability database.
type Describer interface {
	Describe(primary match.Reference, related []match.Reference) (match.Details, error)
}

// Desired is the status the Vulnerability name should have now, or nil when no running
// container has it. Workloads are detected at now; the details come from describer, or from the
// findings alone when the database cannot tell.
func (x *Index) Desired(name string, now metav1.Time, describer Describer) *vigilv1alpha1.VulnerabilityStatus {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var digests []string
	for digest := range x.digestsByName[name] {
		if len(x.podsByDigest[digest]) > 0 {
			digests = append(digests, digest)
		}
	}
	if len(digests) == 0 {
		return nil
	}
	slices.Sort(digests)

	status := &vigilv1alpha1.VulnerabilityStatus{}
	var findings []vigilv1alpha1.ImageVulnerability
	for _, digest := range digests {
		img := x.images[digest]
		for _, f := range img.findings {
			if vigilv1alpha1.VulnerabilityName(f.ID) == name {
				findings = append(findings, f)
			}
		}
		status.ImageCount++
		if len(status.Images) < vigilv1alpha1.MaxVulnerabilityImages {
			status.Images = append(status.Images, vigilv1alpha1.AffectedImage{Image: vigilv1alpha1.Truncate(img.reference, 512), Digest: digest})
		}
	}
	status.Details = details(findings, describer)

	workloads := map[vigilv1alpha1.AffectedWorkload]struct{}{}
	for _, digest := range digests {
		for pod := range x.podsByDigest[digest] {
			for _, c := range x.pods[pod] {
				if c.Digest != digest {
					continue
				}
				workloads[vigilv1alpha1.AffectedWorkload{
					Namespace: c.Workload.Namespace, Kind: c.Workload.Kind, Name: c.Workload.Name,
					Container: c.Container, Digest: digest, LastDetected: now,
				}] = struct{}{}
			}
		}
	}
	sorted := make([]vigilv1alpha1.AffectedWorkload, 0, len(workloads))
	for w := range workloads {
		sorted = append(sorted, w)
	}
	slices.SortFunc(sorted, compareWorkloads)
	status.WorkloadCount = int32(len(sorted))
	if len(sorted) > vigilv1alpha1.MaxVulnerabilityWorkloads {
		sorted = sorted[:vigilv1alpha1.MaxVulnerabilityWorkloads]
	}
	status.Workloads = sorted
	return status
}

func compareWorkloads(a, b vigilv1alpha1.AffectedWorkload) int {
	return cmp.Or(
		cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.Container, b.Container), cmp.Compare(a.Digest, b.Digest),
	)
}

// details describes the vulnerability: what the database records of it, and the packages of
// its findings (the same ID in one or more packages and images).
func details(findings []vigilv1alpha1.ImageVulnerability, describer Describer) vigilv1alpha1.VulnerabilityDetails {
	first := findings[0]
	described := match.Details{ID: first.ID, Severity: match.Severity(first.Severity)}
	for _, related := range first.Related {
		described.Aliases = append(described.Aliases, related.ID)
	}
	if describer != nil {
		related := make([]match.Reference, 0, len(first.Related))
		for _, r := range first.Related {
			related = append(related, match.Reference{ID: r.ID, Namespace: r.Namespace})
		}
		if found, err := describer.Describe(match.Reference{ID: first.ID, Namespace: first.Namespace}, related); err == nil {
			described = found
		}
	}
	d := vigilv1alpha1.VulnerabilityDetails{
		ID:             vigilv1alpha1.Truncate(first.ID, 128),
		Severity:       vigilv1alpha1.Severity(described.Severity),
		KnownExploited: described.KnownExploited,
		Description:    vigilv1alpha1.Truncate(described.Description, 2048),
	}
	if _, ok := vigilv1alpha1.ParseSeverity(string(d.Severity)); !ok {
		d.Severity = first.Severity
	}
	d.SeverityRank = d.Severity.Rank()
	if described.EPSS != nil {
		d.EPSS = &vigilv1alpha1.EPSS{Score: described.EPSS.Score, Percentile: described.EPSS.Percentile, Date: vigilv1alpha1.Truncate(described.EPSS.Date, 32)}
	}
	for _, alias := range described.Aliases {
		if len(d.Aliases) < 32 {
			d.Aliases = append(d.Aliases, vigilv1alpha1.Truncate(alias, 128))
		}
	}
	for _, link := range described.Links {
		if len(d.Links) < 16 {
			d.Links = append(d.Links, vigilv1alpha1.Truncate(link, 1024))
		}
	}
	for _, c := range described.CVSS {
		if len(d.CVSS) < 8 {
			d.CVSS = append(d.CVSS, vigilv1alpha1.CVSS{
				Source: vigilv1alpha1.Truncate(c.Source, 128), Version: vigilv1alpha1.Truncate(c.Version, 16), Vector: vigilv1alpha1.Truncate(c.Vector, 256), BaseScore: c.BaseScore,
			})
		}
	}
	if score, ok := described.Score(); ok {
		d.Score = &score
	}
	d.Rank = vigilv1alpha1.RankOf(d.Severity, d.Score)
	seen := map[string]bool{}
	for _, f := range findings {
		key := f.Type + "\x00" + f.Package + "\x00" + f.Installed
		if seen[key] {
			continue
		}
		seen[key] = true
		if len(d.Packages) >= vigilv1alpha1.MaxVulnerabilityPackages {
			continue
		}
		pkg := vigilv1alpha1.VulnerablePackage{
			Name: f.Package, Type: f.Type, Installed: f.Installed, FixState: f.FixState, Location: f.Location,
		}
		if f.FixedIn != "" {
			pkg.FixedIn = []string{f.FixedIn}
		}
		d.Packages = append(d.Packages, pkg)
	}
	slices.SortStableFunc(d.Packages, func(a, b vigilv1alpha1.VulnerablePackage) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Installed, b.Installed), cmp.Compare(a.Type, b.Type))
	})
	if len(d.Packages) > 0 {
		d.PackageSummary = vigilv1alpha1.Truncate(d.Packages[0].Name+" "+d.Packages[0].Installed, 280)
		if more := len(seen) - 1; more > 0 {
			d.PackageSummary += fmt.Sprintf(" (+%d)", more)
		}
		if len(d.Packages[0].FixedIn) > 0 {
			d.FixedInSummary = d.Packages[0].FixedIn[0]
		}
	}
	return d
}

// refreshLastDetected keeps each workload's earlier LastDetected unless it is older than
// refresh, so that a steady state writes nothing.
func refreshLastDetected(desired *vigilv1alpha1.VulnerabilityStatus, current []vigilv1alpha1.AffectedWorkload, now time.Time, refresh time.Duration) {
	previous := map[vigilv1alpha1.AffectedWorkload]metav1.Time{}
	for _, w := range current {
		key := w
		key.LastDetected = metav1.Time{}
		previous[key] = w.LastDetected
	}
	for i, w := range desired.Workloads {
		key := w
		key.LastDetected = metav1.Time{}
		if last, ok := previous[key]; ok && now.Sub(last.Time) < refresh {
			desired.Workloads[i].LastDetected = last
		}
	}
}
