package app

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(*Options) bool
		wantErr string
	}{
		{
			name: "secure defaults",
			args: nil,
			check: func(o *Options) bool {
				return o.SecureMetrics && !o.EnableHTTP2 && !o.LeaderElect && o.MetricsBindAddress == ":8443" &&
					o.WebhookPort == 9443 && o.GracefulShutdownTimeout == 30*time.Second && !o.Zap.Development &&
					len(o.PodSecurity) == 0 && o.WebhookClientCAFile == ""
			},
		},
		{
			name: "leader election and ports",
			args: []string{"--leader-elect", "--webhook-port=10250", "--leader-election-namespace=vigil-system"},
			check: func(o *Options) bool {
				return o.LeaderElect && o.WebhookPort == 10250 && o.LeaderElectionNamespace == "vigil-system"
			},
		},
		{
			name: "hostile-image bounds and registry policy on by default",
			args: nil,
			check: func(o *Options) bool {
				return o.MaxImageSize == 2<<30 && o.MaxUncompressedSize == 8<<30 && o.MaxImageLayers == 256 && o.MaxImageFiles == 200_000 &&
					networks(o.RegistryPolicy.DenyNetworks) == "169.254.0.0/16,fe80::/10" && len(o.RegistryPolicy.Allow) == 0
			},
		},
		{
			name: "denied networks replace the default, allowed ones carve exceptions",
			args: []string{"--registry-deny-network=10.96.0.0/12", "--registry-deny-network=169.254.0.0/16,127.0.0.0/8", "--registry-allow-network=10.96.0.20",
				"--registry-allow=ghcr.io", "--registry-deny=*.internal.example"},
			check: func(o *Options) bool {
				p := o.RegistryPolicy
				return networks(p.DenyNetworks) == "10.96.0.0/12,169.254.0.0/16,127.0.0.0/8" && networks(p.AllowNetworks) == "10.96.0.20/32" &&
					strings.Join(p.Allow, ",") == "ghcr.io" && strings.Join(p.Deny, ",") == "*.internal.example"
			},
		},
		{
			name:  "an empty denied network denies none",
			args:  []string{"--registry-deny-network="},
			check: func(o *Options) bool { return len(o.RegistryPolicy.DenyNetworks) == 0 },
		},
		{name: "a bad network", args: []string{"--registry-deny-network=10.96.0.0/33"}, wantErr: "is not a CIDR range"},
		{name: "a negative bound", args: []string{"--max-image-files=-1"}, wantErr: "must not be negative"},
		{name: "a bad ephemeral storage", args: []string{"--scanner-limits-ephemeral-storage=lots"}, wantErr: "is not a quantity"},
		{name: "a port out of range", args: []string{"--webhook-port=70000"}, wantErr: "--webhook-port 70000 is not a port number"},
		{name: "an unknown Pod Security level", args: []string{"--pod-security-enforce=strict"}, wantErr: `"strict" is not a Pod Security level`},
		{
			name: "Pod Security levels of Vigil's namespace",
			args: []string{"--pod-security-enforce=restricted", "--pod-security-warn=baseline", "--pod-security-audit="},
			check: func(o *Options) bool {
				return o.PodSecurity["enforce"] == "restricted" && o.PodSecurity["warn"] == "baseline" && o.PodSecurity["audit"] == ""
			},
		},
		{
			name:  "the admission client CA",
			args:  []string{"--webhook-client-ca-file=/etc/vigil/admission-client-ca/ca.crt"},
			check: func(o *Options) bool { return o.WebhookClientCAFile == "/etc/vigil/admission-client-ca/ca.crt" },
		},
		{name: "a negative shutdown timeout", args: []string{"--graceful-shutdown-timeout=-1s"}, wantErr: "must not be negative"},
		{name: "an unknown flag", args: []string{"--no-such-flag"}, wantErr: "flag provided but not defined: -no-such-flag"},
		{name: "a stray argument", args: []string{"serve"}, wantErr: "unexpected arguments: [serve]"},
		{
			name: "no CPU limit for the scan Jobs, ephemeral storage instead",
			args: []string{"--scanner-limits-cpu=", "--scanner-limits-ephemeral-storage=8Gi"},
			check: func(o *Options) bool {
				r := o.scannerResources()
				_, cpu := r.Limits[corev1.ResourceCPU]
				return !cpu && r.Limits.StorageEphemeral().String() == "8Gi" && r.Limits.Memory().String() == "1Gi" && r.Requests.Cpu().String() == "100m"
			},
		},
		{name: "a bad ephemeral-storage quantity", args: []string{"--scanner-requests-ephemeral-storage=big"}, wantErr: `--scanner-requests-ephemeral-storage "big" is not a quantity`},
		{name: "a negative series limit", args: []string{"--metrics-workload-series-limit=-1"}, wantErr: "must not be negative"},
		{
			name:  "cloud credentials on by default",
			check: func(o *Options) bool { return o.CloudRegistryCredentials && o.MetricsWorkloadSeriesLimit == 0 },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			options, err := parse(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parse(%v) error = %v, want one containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%v): %v", tc.args, err)
			}
			if !tc.check(options) {
				t.Errorf("parse(%v) = %+v", tc.args, options)
			}
		})
	}
}

// networks is prefixes as a comma-separated list.
func networks(prefixes []netip.Prefix) string {
	values := make([]string, len(prefixes))
	for i, prefix := range prefixes {
		values[i] = prefix.String()
	}
	return strings.Join(values, ",")
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	options := &Options{}
	fs := newFlagSet(options)
	var help bytes.Buffer
	fs.SetOutput(&help)
	if err := fs.Parse([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help returned %v, want flag.ErrHelp", err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help.String(), "-"+f.Name) {
			t.Errorf("--help does not list -%s", f.Name)
		}
		if strings.TrimSpace(f.Usage) == "" {
			t.Errorf("-%s has no description", f.Name)
		}
	})
	for _, name := range []string{"metrics-bind-address", "metrics-secure", "leader-elect", "webhook-cert-dir", "enable-http2", "zap-log-level"} {
		if fs.Lookup(name) == nil {
			t.Errorf("no -%s flag", name)
		}
	}
}

func TestThePodTemplateResourcesReplaceTheFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pod-template.yaml")
	if err := os.WriteFile(path, []byte("resources: {requests: {memory: 256Mi}}\npriorityClassName: low\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	options, err := parse([]string{"--scanner-pod-template=" + path})
	if err != nil {
		t.Fatal(err)
	}
	resources, template, err := options.scannerJobShape()
	if err != nil {
		t.Fatal(err)
	}
	if len(resources.Limits) != 0 || resources.Requests.Memory().String() != "256Mi" || template.PriorityClassName != "low" {
		t.Errorf("resources %v, template %+v", resources, template)
	}
	options.ScannerPodTemplate = filepath.Join(t.TempDir(), "missing.yaml")
	if _, _, err := options.scannerJobShape(); err == nil {
		t.Error("a missing pod template was accepted")
	}
}

func TestACommandLineErrorPrintsOneLineAndTheUsage(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"--no-such-flag"}, {"--webhook-port=x"}} {
		read, write, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := os.Stderr
		os.Stderr = write
		code := Main(args)
		os.Stderr = stderr
		_ = write.Close()
		var out bytes.Buffer
		_, _ = out.ReadFrom(read)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], "vigil-manager: ") || lines[1] != usageLine {
			t.Errorf("vigil-manager %v: exit code %d, stderr:\n%s", args, code, out.String())
		}
	}
}
