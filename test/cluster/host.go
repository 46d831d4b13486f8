package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The host settings the cluster changes, restored at the end: forwarding and bridge filtering
// for the pod network, and the kernel settings the kubelet sets at start.
var sysctls = map[string]string{
	"net/ipv4/ip_forward":                 "1",
	"net/bridge/bridge-nf-call-iptables":  "1",
	"net/bridge/bridge-nf-call-ip6tables": "1",
	"vm/overcommit_memory":                "",
	"vm/panic_on_oom":                     "",
	"kernel/panic":                        "",
	"kernel/panic_on_oops":                "",
	"kernel/keys/root_maxkeys":            "",
	"kernel/keys/root_maxbytes":           "",
}

// saveSysctls records the current values of the settings above into dir/sysctls (once: a
// leftover record of a killed run is the original) and sets the ones the cluster needs.
func saveSysctls(dir string) error {
	record := filepath.Join(dir, "sysctls")
	if _, err := os.Stat(record); errors.Is(err, os.ErrNotExist) {
		var saved strings.Builder
		for key := range sysctls {
			value, err := os.ReadFile(filepath.Join("/proc/sys", key))
			if err != nil {
				continue
			}
			fmt.Fprintf(&saved, "%s=%s\n", key, strings.TrimSpace(string(value)))
		}
		if err := os.WriteFile(record, []byte(saved.String()), 0o600); err != nil {
			return fmt.Errorf("recording the host's settings: %w", err)
		}
	}
	for key, value := range sysctls {
		if value == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("setting %s: %w", key, err)
		}
	}
	return nil
}

// restoreSysctls writes back what saveSysctls recorded.
func restoreSysctls(dir string) error {
	content, err := os.ReadFile(filepath.Join(dir, "sysctls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the host's recorded settings: %w", err)
	}
	var errs []error
	for line := range strings.Lines(string(content)) {
		key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		path := filepath.Join("/proc/sys", key)
		if current, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(current)) == value {
			continue
		}
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// linkExists reports whether the network interface exists.
func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// addNodeInterface creates the interface that holds the node's address: a bridge without ports,
// which serves as a dummy interface does (kernels without the dummy module, as in containers,
// have the bridge).
func addNodeInterface(name, address string) error {
	if !linkExists(name) {
		if err := run("ip", "link", "add", name, "type", "bridge"); err != nil {
			return err
		}
	}
	if err := run("ip", "addr", "replace", address+"/32", "dev", name); err != nil {
		return err
	}
	return run("ip", "link", "set", name, "up")
}

// deleteLinks deletes the interfaces that exist among names.
func deleteLinks(names ...string) error {
	var errs []error
	for _, name := range names {
		if linkExists(name) {
			errs = append(errs, run("ip", "link", "delete", name))
		}
	}
	return errors.Join(errs...)
}

// The iptables chains the cluster's components create: kube-proxy's and kubelet's KUBE-*, the
// CNI plugins' CNI-*, and the cluster's own VIGIL-CLUSTER.
var chainPrefixes = []string{"KUBE-", "CNI-", "VIGIL-CLUSTER"}

func ownedChain(chain string) bool {
	for _, prefix := range chainPrefixes {
		if strings.HasPrefix(chain, prefix) {
			return true
		}
	}
	return false
}

// removeChains deletes, in every table of iptables and ip6tables, the rules that jump to or live
// in a chain the cluster's components create, then those chains.
func removeChains() error {
	var errs []error
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool + "-save"); err != nil {
			continue
		}
		out, err := exec.Command(tool + "-save").Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s-save: %w", tool, err))
			continue
		}
		table := ""
		var rules [][]string
		chains := map[string][]string{}
		scanner := bufio.NewScanner(bytes.NewReader(out))
		for scanner.Scan() {
			line := scanner.Text()
			switch {
			case strings.HasPrefix(line, "*"):
				table = line[1:]
			case strings.HasPrefix(line, ":"):
				chain := strings.Fields(line[1:])[0]
				if ownedChain(chain) {
					chains[table] = append(chains[table], chain)
				}
			case strings.HasPrefix(line, "-A "):
				fields := strings.Fields(line)
				owned := ownedChain(fields[1])
				for i, field := range fields {
					if (field == "-j" || field == "-g") && i+1 < len(fields) && ownedChain(fields[i+1]) {
						owned = true
					}
				}
				// Rules inside owned chains go with their chain; only the jumps into them from
				// the built-in chains are deleted one by one.
				if owned && !ownedChain(fields[1]) {
					rules = append(rules, append([]string{tool, "-w", "-t", table, "-D"}, splitRule(line[3:])...))
				}
			}
		}
		for _, rule := range rules {
			errs = append(errs, run(rule[0], rule[1:]...))
		}
		for table, names := range chains {
			for _, chain := range names {
				errs = append(errs, run(tool, "-w", "-t", table, "-F", chain))
			}
			for _, chain := range names {
				errs = append(errs, run(tool, "-w", "-t", table, "-X", chain))
			}
		}
	}
	return errors.Join(errs...)
}

// splitRule splits an iptables-save rule into arguments, keeping quoted comments whole.
func splitRule(rule string) []string {
	var args []string
	var current strings.Builder
	quoted, inArg := false, false
	for _, r := range rule {
		switch {
		case r == '"':
			quoted = !quoted
			inArg = true
		case r == ' ' && !quoted:
			if inArg {
				args = append(args, current.String())
				current.Reset()
				inArg = false
			}
		default:
			current.WriteRune(r)
			inArg = true
		}
	}
	if inArg {
		args = append(args, current.String())
	}
	return args
}

// unmountUnder unmounts every mount point under one of prefixes, deepest first.
func unmountUnder(prefixes ...string) error {
	content, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading the mount table: %w", err)
	}
	var points []string
	for line := range strings.Lines(string(content)) {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		point := strings.ReplaceAll(fields[4], `\040`, " ")
		for _, prefix := range prefixes {
			if strings.HasPrefix(point, prefix) {
				points = append(points, point)
				break
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, point := range points {
		if err := syscall.Unmount(point, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", point, err))
		}
	}
	return errors.Join(errs...)
}

// cgroupDirs are the folders of the named cgroup in every mounted hierarchy.
func cgroupDirs(name string) []string {
	var dirs []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, entry := range entries {
		dir := filepath.Join("/sys/fs/cgroup", entry.Name(), name)
		if _, err := os.Stat(dir); err == nil {
			dirs = append(dirs, dir)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", name)); err == nil {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", name))
	}
	return dirs
}

// killCgroup kills every process in the named cgroup tree, in every hierarchy, and removes the
// cgroups, deepest first.
func killCgroup(name string) error {
	var errs []error
	for _, dir := range cgroupDirs(name) {
		var tree []string
		_ = filepath.WalkDir(dir, func(path string, entry os.DirEntry, err error) error {
			if err == nil && entry.IsDir() {
				tree = append(tree, path)
			}
			return nil
		})
		for _, cgroup := range tree {
			procs, err := os.ReadFile(filepath.Join(cgroup, "cgroup.procs"))
			if err != nil {
				continue
			}
			for field := range strings.FieldsSeq(string(procs)) {
				var pid int
				if _, err := fmt.Sscan(field, &pid); err == nil {
					errs = append(errs, killAndWait(pid))
				}
			}
		}
		sort.Slice(tree, func(i, j int) bool { return len(tree[i]) > len(tree[j]) })
		for _, cgroup := range tree {
			// A killed process leaves its cgroup busy until its parent (a shim) reaps it.
			var err error
			for range 50 {
				if err = syscall.Rmdir(cgroup); err == nil || errors.Is(err, syscall.ENOENT) || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", cgroup, err))
			}
		}
	}
	return errors.Join(errs...)
}
