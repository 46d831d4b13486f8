package testenv

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
)

// Balancer stands for a Kubernetes Service in front of several replicas: it accepts TCP
// connections on loopback and forwards each to one of its backends, picked at random, as
// kube-proxy does. Backends can be changed while it runs.
type Balancer struct {
	// Addr is the address it listens on.
	Addr string

	listener net.Listener
	mu       sync.Mutex
	backends []string
	wg       sync.WaitGroup
}

// NewBalancer listens on a free loopback port and forwards to backends.
func NewBalancer(backends ...string) (*Balancer, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{Addr: listener.Addr().String(), listener: listener, backends: backends}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

// SetBackends replaces the backends; connections open stay where they are.
func (b *Balancer) SetBackends(backends ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = backends
}

func (b *Balancer) serve() {
	defer b.wg.Done()
	for {
		conn, err := b.listener.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		backends := b.backends
		b.mu.Unlock()
		if len(backends) == 0 {
			_ = conn.Close()
			continue
		}
		go forward(conn, backends[rand.IntN(len(backends))]) //nolint:gosec // picking a replica, not a secret
	}
}

func forward(client net.Conn, backend string) {
	defer client.Close()
	server, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer server.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(server, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, server); done <- struct{}{} }()
	<-done
}

// Close stops accepting connections.
func (b *Balancer) Close() error {
	err := b.listener.Close()
	b.wg.Wait()
	return err
}
