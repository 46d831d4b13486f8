// Package imagescan holds the scan reconciler: it resolves recorded image references to
// digests, scans each digest once through an Executor, matches the stored SBOM against the
// vulnerability database (again after every database swap) and records the result on the
// digest's ImageScan.
package imagescan
