package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one of the cluster's components, run as a child process with its output in
// <log dir>/<name>.log and its process ID in <dir>/pids/<name>, so that a later run can stop it
// when this one was killed before it cleaned up.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// logPath is the log file of the component name.
func (c *Cluster) logPath(name string) string {
	return filepath.Join(c.LogDir, name+".log")
}

// spawn starts binary with args as the component name.
func (c *Cluster) spawn(name, binary string, args []string, env ...string) (*process, error) {
	logFile, err := os.OpenFile(c.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s: %w", name, err)
	}
	defer logFile.Close()
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	// The component dies with the process that started it, and gets its own process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := os.WriteFile(filepath.Join(c.Dir, "pids", name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("recording the process of %s: %w", name, err), p.stop(time.Second))
	}
	c.processes = append(c.processes, p)
	return p, nil
}

// exited reports whether the process has ended, with its log's tail when it has.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v", p.name, p.err)
	default:
		return nil
	}
}

// stop sends SIGTERM, and SIGKILL after grace.
func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// killRecorded kills the processes a previous run recorded in dir/pids whose command line still
// names dir (so that a reused process ID of somebody else's process is left alone).
func killRecorded(dir string) error {
	entries, err := os.ReadDir(filepath.Join(dir, "pids"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the recorded processes: %w", err)
	}
	var errs []error
	for _, entry := range entries {
		content, err := os.ReadFile(filepath.Join(dir, "pids", entry.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(content)))
		if err != nil {
			continue
		}
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmdline), dir) {
			errs = append(errs, killAndWait(pid))
		}
	}
	return errors.Join(errs...)
}

// killAndWait sends SIGKILL to pid and waits until it is gone.
func killAndWait(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("killing process %d: %w", pid, err)
	}
	for range 100 {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		// A killed child of ours stays a zombie until reaped; it holds nothing.
		if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(status), ") Z ") {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("process %d outlived SIGKILL", pid)
}

// processesMatching returns the IDs of the processes whose command line holds every one of parts.
func processesMatching(parts ...string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", entry.Name(), "cmdline"))
		if err != nil {
			continue
		}
		matches := true
		for _, part := range parts {
			if !strings.Contains(string(cmdline), part) {
				matches = false
				break
			}
		}
		if matches {
			pids = append(pids, pid)
		}
	}
	return pids
}
