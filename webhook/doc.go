// Package webhook is Vigil's observe-only admission webhook. Every manager replica serves it.
// It answers every request Allowed at once, never patches, and hands the images of admitted Pods
// and workload templates to a Recorder, which records them as ImageScans off the request path so
// that the leader schedules their scans before the first pod pulls them.
package webhook
