package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process in its own process group, its output in a log file.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string

	done    chan struct{}
	waitErr error
	stopped bool
	mu      sync.Mutex
}

var (
	liveMu sync.Mutex
	live   = map[*Proc]struct{}{}
)

// StartProc starts bin with args, stdout and stderr appended to logPath. The
// process leads a new process group (so Stop reaches its children) and, on
// Linux, is SIGKILLed if this process dies first.
func StartProc(name, logPath string, env []string, bin string, args ...string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "### %s: %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = env
	cmd.SysProcAttr = procAttr()
	if err := startLocked(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	liveMu.Lock()
	live[p] = struct{}{}
	liveMu.Unlock()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has exited, and with what.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs
// the group and waits for the exit. It is safe to call twice.
func (p *Proc) Stop(grace time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	pgid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("%s (pid %d) did not die after SIGKILL", p.Name, pgid)
		}
	}
	// Anything the process forked into its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	liveMu.Lock()
	delete(live, p)
	liveMu.Unlock()
	return nil
}

// Tail returns the last n lines of the process log.
func (p *Proc) Tail(n int) string { return tailFile(p.LogPath, n) }

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// KillLeftovers stops every process this package started that is still
// running and returns an error naming them. TestMain calls it after m.Run so
// a forgotten Stop shows up as a failure rather than a stray process.
func KillLeftovers() error {
	liveMu.Lock()
	var ps []*Proc
	for p := range live {
		ps = append(ps, p)
	}
	liveMu.Unlock()
	var names []string
	for _, p := range ps {
		if exited, _ := p.Exited(); !exited {
			names = append(names, fmt.Sprintf("%s (pid %d)", p.Name, p.Cmd.Process.Pid))
		}
		p.Stop(2 * time.Second)
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return fmt.Errorf("processes left running (now killed): %s", strings.Join(names, ", "))
}

// FreePort returns a TCP port on ip that was free a moment ago.
func FreePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitTCP waits until addr accepts connections, p exits, or ctx ends.
func WaitTCP(ctx context.Context, addr string, p *Proc) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil {
			if exited, werr := p.Exited(); exited {
				return fmt.Errorf("%s exited (%v) before listening on %s; log %s:\n%s", p.Name, werr, addr, p.LogPath, p.Tail(20))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitFor polls check every interval until it returns nil, p exits, or ctx ends.
func waitFor(ctx context.Context, what string, p *Proc, interval time.Duration, check func() error) error {
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if p != nil {
			if exited, werr := p.Exited(); exited {
				return fmt.Errorf("%s exited (%v) while waiting for %s; log %s:\n%s", p.Name, werr, what, p.LogPath, p.Tail(30))
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("waiting for %s: %w", what, ctx.Err()), last)
		case <-time.After(interval):
		}
	}
}
