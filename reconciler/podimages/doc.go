// Package podimages holds the reconciler that records the images of every Pod: the path that
// catches what the admission webhook missed (a replica down, a full queue, pods that existed
// before installation) and learns each running container's digest from its status.
package podimages
