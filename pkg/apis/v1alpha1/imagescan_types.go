package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ImageScanPhase is where an image's scan stands.
// +kubebuilder:validation:Enum=Pending;Scanning;Scanned;Failed;TooLarge
type ImageScanPhase string

// The phases of an ImageScan.
const (
	// ImageScanPending: the image is recorded and waits for its digest or for a free scanner.
	ImageScanPending ImageScanPhase = "Pending"
	// ImageScanScanning: the image's SBOM is being generated.
	ImageScanScanning ImageScanPhase = "Scanning"
	// ImageScanScanned: the SBOM is stored and matched against the vulnerability database.
	ImageScanScanned ImageScanPhase = "Scanned"
	// ImageScanFailed: the scan failed for good; the Scanned condition says why.
	ImageScanFailed ImageScanPhase = "Failed"
	// ImageScanTooLarge: the image or its SBOM exceeds the configured maximum size.
	ImageScanTooLarge ImageScanPhase = "TooLarge"
)

// Condition types of an ImageScan.
const (
	// ConditionResolved is true once the image's references are resolved to its digest.
	ConditionResolved = "Resolved"
	// ConditionScanned is true once the image's SBOM is stored and matched.
	ConditionScanned = "Scanned"
	// ConditionSBOMStored is true once the current scan attempt's SBOM is in the SBOM store of
	// the replica that reconciles; it is reset when an attempt starts.
	ConditionSBOMStored = "SBOMStored"
)

// Bounds of an ImageScan's lists, which keep the object far below etcd's size limit.
const (
	// MaxImageReferences is the number of references an ImageScan keeps.
	MaxImageReferences = 32
	// MaxImageScanVulnerabilities is the number of vulnerabilities an ImageScan lists, the most
	// severe first; the severity counts always count all of them.
	MaxImageScanVulnerabilities = 1000
	// MaxRelatedAdvisories is the number of related advisories an ImageVulnerability keeps.
	MaxRelatedAdvisories = 2
)

// ImageScanSpec is the image to scan.
type ImageScanSpec struct {
	// Digest is the image's content digest. It is empty while the ImageScan records a reference
	// whose digest is not known yet.
	// +optional
	// +kubebuilder:validation:Pattern=`^sha256:[a-f0-9]{64}$`
	Digest string `json:"digest,omitempty"`

	// References are the image references admitted or run with this digest, with the namespace
	// whose pull credentials can read each one.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	References []ImageReference `json:"references"`
}

// ImageReference is an image reference as a workload names it.
type ImageReference struct {
	// Image is the reference as written in the pod spec, for example registry.example/shop/api:1.4.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image"`

	// Namespace is the namespace of the workload that uses the reference; its pull credentials are
	// used to resolve and pull the image.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// Workload names the object that uses the reference in Namespace. Vigil reads that object
	// itself to find the pull credentials (its pod spec's service account and pull secrets), and
	// only when its pod spec really names the image: what an admission request claims never
	// selects credentials.
	// +optional
	Workload *WorkloadReference `json:"workload,omitempty"`
}

// WorkloadReference names a workload in the namespace of an ImageReference.
type WorkloadReference struct {
	// Kind is Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob.
	// +kubebuilder:validation:Enum=Pod;Deployment;StatefulSet;DaemonSet;ReplicaSet;Job;CronJob
	Kind string `json:"kind"`

	// Name is the workload's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ImageScanStatus is the state and result of an image's scan.
type ImageScanStatus struct {
	// Phase is where the scan stands: Pending, Scanning, Scanned, Failed or TooLarge.
	// +optional
	Phase ImageScanPhase `json:"phase,omitempty"`

	// Conditions are the Resolved and Scanned conditions, whose reasons explain the phase.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Attempts counts the scan attempts of this digest. An attempt's number is never given to
	// another attempt: it names the attempt's scan Job and the outcome it reports.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Attempts int32 `json:"attempts,omitempty"`

	// FirstAttempt is the first attempt of the current series; the series has the whole budget of
	// attempts. New references after a final failure, or a scan again for an SBOM that the store
	// lost, start a new series. Zero stands for 1.
	// +optional
	// +kubebuilder:validation:Minimum=0
	FirstAttempt int32 `json:"firstAttempt,omitempty"`

	// LastAttemptTime is when the last attempt at resolving or scanning started or failed; retries
	// wait a backoff from it.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`

	// SBOM summarises the image's software bill of materials.
	// +optional
	SBOM *SBOMSummary `json:"sbom,omitempty"`

	// Database is the vulnerability database the SBOM was last matched against.
	// +optional
	Database *DatabaseVersion `json:"database,omitempty"`

	// ScanTime is when the SBOM was generated.
	// +optional
	ScanTime *metav1.Time `json:"scanTime,omitempty"`

	// MatchTime is when the SBOM was last matched against the vulnerability database.
	// +optional
	MatchTime *metav1.Time `json:"matchTime,omitempty"`

	// SeverityCounts counts the image's vulnerabilities by severity.
	// +optional
	SeverityCounts SeverityCounts `json:"severityCounts,omitempty"`

	// Vulnerabilities lists the image's vulnerabilities, most severe first, up to 1,000; the
	// severity counts count all of them. They are the findings of the last successful match and
	// stay while the image is scanned again.
	// +optional
	// +kubebuilder:validation:MaxItems=1000
	// +listType=atomic
	Vulnerabilities []ImageVulnerability `json:"vulnerabilities,omitempty"`

	// MatchAttempts counts the matches of the stored SBOM that started and did not finish; a
	// match that keeps ending its process (too large for the manager's memory) ends TooLarge.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MatchAttempts int32 `json:"matchAttempts,omitempty"`

	// LastRunningTime is when a running container last used the image, renewed at most every
	// few minutes; an image that nothing has run for the retention period is collected.
	// +optional
	LastRunningTime *metav1.Time `json:"lastRunningTime,omitempty"`
}

// SBOMSummary summarises an image's software bill of materials.
type SBOMSummary struct {
	// Distro is the image's operating-system distribution and version, for example "debian 12".
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Distro string `json:"distro,omitempty"`

	// Packages is the number of packages the SBOM lists.
	// +kubebuilder:validation:Minimum=0
	Packages int32 `json:"packages"`

	// ImageSize is the image's compressed size in bytes.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ImageSize int64 `json:"imageSize,omitempty"`
}

// DatabaseVersion identifies a vulnerability database build.
type DatabaseVersion struct {
	// SchemaVersion is the database's schema version, for example v6.1.3.
	// +kubebuilder:validation:MaxLength=32
	SchemaVersion string `json:"schemaVersion"`

	// Built is when the database was built.
	Built metav1.Time `json:"built"`
}

// ImageVulnerability is one vulnerable package of an image. The vulnerability's description,
// CVSS ratings and links are read from the vulnerability database by ID and Namespace.
type ImageVulnerability struct {
	// ID is the vulnerability's identifier, for example CVE-2021-44228.
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`

	// Namespace is the vulnerability database namespace of the record that matched, for example
	// nvd:cpe or debian:distro:debian:12.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Namespace string `json:"namespace,omitempty"`

	// Related are other advisories of the same vulnerability, for example its GHSA, up to 2.
	// +optional
	// +kubebuilder:validation:MaxItems=2
	// +listType=atomic
	Related []AdvisoryReference `json:"related,omitempty"`

	// Severity is the vulnerability's severity.
	Severity Severity `json:"severity"`

	// Package is the vulnerable package's name.
	// +kubebuilder:validation:MaxLength=128
	Package string `json:"package"`

	// Type is the package's ecosystem, for example deb or java-archive.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Type string `json:"type,omitempty"`

	// Installed is the installed version of the package.
	// +kubebuilder:validation:MaxLength=64
	Installed string `json:"installed"`

	// FixedIn is the version that fixes the vulnerability, empty when none is known.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	FixedIn string `json:"fixedIn,omitempty"`

	// FixState says whether a fix is known.
	// +optional
	FixState FixState `json:"fixState,omitempty"`

	// Location is the file in the image that the package was found in.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Location string `json:"location,omitempty"`
}

// AdvisoryReference names an advisory in the vulnerability database.
type AdvisoryReference struct {
	// ID is the advisory's identifier, for example GHSA-jfh8-c2jp-5v3q.
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`

	// Namespace is the advisory's database namespace, for example github:language:java.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Namespace string `json:"namespace,omitempty"`
}

// ImageScan is the scan of one image digest: the references that name it, its SBOM summary and
// the vulnerabilities found in it. Vigil creates one per image that the cluster admits or runs.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=is;iscan,categories=vigil
// +kubebuilder:selectablefield:JSONPath=".spec.digest"
// +kubebuilder:selectablefield:JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=".spec.references[0].image"
// +kubebuilder:printcolumn:name="Digest",type=string,JSONPath=".spec.digest",priority=1
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Distro",type=string,JSONPath=".status.sbom.distro",priority=1
// +kubebuilder:printcolumn:name="Packages",type=integer,JSONPath=".status.sbom.packages"
// +kubebuilder:printcolumn:name="Critical",type=integer,JSONPath=".status.severityCounts.critical"
// +kubebuilder:printcolumn:name="High",type=integer,JSONPath=".status.severityCounts.high"
// +kubebuilder:printcolumn:name="Medium",type=integer,JSONPath=".status.severityCounts.medium",priority=1
// +kubebuilder:printcolumn:name="Low",type=integer,JSONPath=".status.severityCounts.low",priority=1
// +kubebuilder:printcolumn:name="Scanned",type=date,JSONPath=".status.scanTime"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type ImageScan struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ImageScanSpec `json:"spec"`

	// +optional
	Status ImageScanStatus `json:"status,omitempty"`
}

// ImageScanList is a list of ImageScans.
//
// +kubebuilder:object:root=true
type ImageScanList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ImageScan `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ImageScan{}, &ImageScanList{})
}
