package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Ports handed to processes that bind them later are drawn from this range: below the kernel's
// ephemeral range (where every outgoing connection's source port and every ":0" listener of the
// tests lands, and could take a chosen port before its process binds it) and below Kubernetes'
// NodePort range.
const (
	firstChosenPort = 20000
	lastChosenPort  = 29999
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that nothing listens on now, for a process
// that binds them later. They are outside the ephemeral port range, so that no connection of
// this machine takes one meanwhile; the kernel chooses them only when that range overlaps ours.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	outside := !ephemeralRangeOverlaps(firstChosenPort, lastChosenPort)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("finding %d free ports: none free after %d tries", n, tries)
		}
		address := "127.0.0.1:0"
		if outside {
			address = net.JoinHostPort("127.0.0.1", strconv.Itoa(firstChosenPort+rand.IntN(lastChosenPort-firstChosenPort+1)))
		}
		listener, err := net.Listen("tcp", address)
		if err != nil {
			if outside {
				continue // taken: try another
			}
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		// Kept open until all are chosen, so that no port is chosen twice.
		defer listener.Close()
		ports = append(ports, listener.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ephemeralRangeOverlaps tells whether the kernel's ephemeral port range meets [first, last];
// it says yes when the range cannot be read.
func ephemeralRangeOverlaps(first, last int) bool {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return true
	}
	return portRangeOverlaps(string(data), first, last)
}

// portRangeOverlaps tells whether the range written "low high" meets [first, last]; it says yes
// when the text is not such a range.
func portRangeOverlaps(text string, first, last int) bool {
	fields := strings.Fields(text)
	if len(fields) != 2 {
		return true
	}
	low, errLow := strconv.Atoi(fields[0])
	high, errHigh := strconv.Atoi(fields[1])
	if errLow != nil || errHigh != nil {
		return true
	}
	return low <= last && high >= first
}
