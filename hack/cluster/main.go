// Command cluster starts Vigil's real single-node cluster (test/cluster) for a person: it prints
// the KUBECONFIG to use and the registry to push images to, and removes everything it created on
// Ctrl-C. With --remove it removes what a killed run left behind.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vigil-dev/vigil/test/cluster"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--remove" {
		if err := cluster.Remove(cluster.Options{}); err != nil {
			fmt.Fprintf(os.Stderr, "Error: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "Usage: cluster [--remove]  (--remove: remove what a killed run left)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	c, err := cluster.Start(ctx, cluster.Options{Log: logf})
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("export KUBECONFIG=%s\n", c.KubeconfigPath)
	fmt.Printf("Registry (plain HTTP, no authentication): %s\n", c.Registry)
	fmt.Printf("Private registry: %s (user %s, password %s)\n", c.PrivateRegistry, c.PrivateUser, c.PrivatePassword)
	fmt.Printf("Logs: %s\n", c.LogDir)
	fmt.Println("Press Ctrl-C to stop the cluster and remove everything it created.")
	<-ctx.Done()
	logf("Stopping the cluster")
	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}
