package testenv

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePortsAreDistinctUnboundAndOutsideTheEphemeralRange(t *testing.T) {
	if ephemeralRangeOverlaps(firstChosenPort, lastChosenPort) {
		t.Skip("The ephemeral port range of this machine overlaps the chosen range")
	}
	ports, err := FreePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, port := range ports {
		if port < firstChosenPort || port > lastChosenPort {
			t.Errorf("Port %d is outside [%d, %d]", port, firstChosenPort, lastChosenPort)
		}
		if seen[port] {
			t.Errorf("Port %d is chosen twice", port)
		}
		seen[port] = true
		listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Errorf("Port %d is not free: %v", port, err)
			continue
		}
		listener.Close()
	}
	if len(ports) != 50 {
		t.Errorf("Got %d ports, want 50", len(ports))
	}
}

func TestPortRangeOverlaps(t *testing.T) {
	tests := []struct {
		text string
		want bool
	}{
		{text: "32768\t60999\n", want: false},
		{text: "1024 65535", want: true},
		{text: "25000 26000", want: true},
		{text: "10000 20000", want: true},
		{text: "29999 40000", want: true},
		{text: "10000 19999", want: false},
		{text: "30000 40000", want: false},
		{text: "", want: true},
		{text: "a b", want: true},
	}
	for _, tt := range tests {
		if got := portRangeOverlaps(tt.text, 20000, 29999); got != tt.want {
			t.Errorf("portRangeOverlaps(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}
