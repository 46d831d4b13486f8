// Package retention collects what no running container has used for the retention period:
// digest ImageScans and their SBOMs, ImageScans of references that never resolved, and SBOMs
// that no ImageScan names. It renews each running image's lastRunningTime, at most once per
// refresh interval, so that a steady cluster writes little.
package retention
