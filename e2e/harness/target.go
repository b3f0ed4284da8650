package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Target is a running pproftarget process: a Go program serving
// net/http/pprof on Addr (ip:port), normally a loopback "pod IP".
type Target struct {
	IP   string
	Port int
	Addr string // ip:port
	URL  string // http://ip:port
	Proc *Proc
}

var (
	ptOnce sync.Once
	ptPath string
	ptErr  error
)

// PprofTargetBinary builds cmd/pproftarget once per process (into the cache
// folder, atomically) and returns its path. $PPOP_PPROFTARGET overrides.
func PprofTargetBinary() (string, error) {
	ptOnce.Do(func() {
		if p := os.Getenv("PPOP_PPROFTARGET"); p != "" {
			ptPath = p
			return
		}
		dir, err := E2EDir()
		if err != nil {
			ptErr = err
			return
		}
		bin := filepath.Join(CacheDir(), "bin")
		if ptErr = os.MkdirAll(bin, 0o755); ptErr != nil {
			return
		}
		tmp := filepath.Join(bin, fmt.Sprintf(".pproftarget.%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-buildvcs=false", "-o", tmp, "./cmd/pproftarget")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			ptErr = fmt.Errorf("go build ./cmd/pproftarget: %v\n%s", err, out)
			return
		}
		ptPath = filepath.Join(bin, "pproftarget")
		ptErr = os.Rename(tmp, ptPath)
	})
	return ptPath, ptErr
}

// StartTarget starts pproftarget listening on ip:port with extra flags (e.g.
// "-mutex", "-mode=hung") and waits until it accepts connections. Its log goes
// to dir/pproftarget-IP-PORT.log (dir "" = the system temp folder).
func StartTarget(ctx context.Context, dir, ip string, port int, flags ...string) (*Target, error) {
	bin, err := PprofTargetBinary()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		dir = os.TempDir()
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	tg := &Target{IP: ip, Port: port, Addr: addr, URL: "http://" + addr}
	logPath := filepath.Join(dir, fmt.Sprintf("pproftarget-%s-%d.log", ip, port))
	args := append([]string{"-addr", addr}, flags...)
	tg.Proc, err = StartProc("pproftarget "+addr, logPath, os.Environ(), bin, args...)
	if err != nil {
		return nil, err
	}
	if err := WaitTCP(ctx, addr, tg.Proc); err != nil {
		tg.Stop()
		return nil, err
	}
	return tg, nil
}

// TestTarget starts a target for t and stops it in t.Cleanup.
func TestTarget(t testing.TB, ip string, port int, flags ...string) *Target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tg, err := StartTarget(ctx, t.TempDir(), ip, port, flags...)
	if err != nil {
		t.Fatalf("start pproftarget on %s:%d: %v", ip, port, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- tail of %s (%s):\n%s", tg.Proc.Name, tg.Proc.LogPath, tg.Proc.Tail(10))
		}
		if err := tg.Stop(); err != nil {
			t.Errorf("stop %s: %v", tg.Proc.Name, err)
		}
	})
	return tg
}

// Stop stops the target.
func (tg *Target) Stop() error { return tg.Proc.Stop(5 * time.Second) }

var (
	ipMu   sync.Mutex
	ipNext uint32
)

// AllocIP returns a loopback address not handed out before by this process,
// usable as a pod IP: 127.X.Y.Z with X.Y derived from the process id, so
// test binaries running side by side do not collide, and never 127.0.0.x
// (where the control plane and profefe listen). Linux routes all of
// 127.0.0.0/8 to the loopback interface, so nothing needs configuring.
func AllocIP() string {
	ipMu.Lock()
	defer ipMu.Unlock()
	// 250 blocks of 250 addresses per process slot; slot from the pid.
	slot := uint32(os.Getpid()%200) + 1 // second octet 1..200
	n := ipNext
	ipNext++
	third := 1 + (n/250)%250
	fourth := 2 + n%250
	return fmt.Sprintf("127.%d.%d.%d", slot, third, fourth)
}
