package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"profefe-operator/e2e/harness"
)

// TestPprofTarget checks that pproftarget does what its flags claim, so the
// operator tests built on it prove what they say. Every check is bounded.
func TestPprofTarget(t *testing.T) {
	t.Parallel()
	t.Run("normal", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-goroutines=50")
		code, body := fetch(t, tg.URL+"/healthz", 5*time.Second)
		if code != 200 || strings.TrimSpace(string(body)) != "ok" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		_, heap := fetchProfile(t, tg.URL+"/debug/pprof/heap")
		if got := sampleTypes(heap); strings.Join(got, ",") != "alloc_objects,alloc_space,inuse_objects,inuse_space" {
			t.Errorf("heap sample types %v", got)
		}
		_, g := fetchProfile(t, tg.URL+"/debug/pprof/goroutine")
		if n := sumValues(g, 0); n < 50 {
			t.Errorf("goroutine profile counts %d goroutines, want >= 50", n)
		}
		// Without -mutex / -block those profiles are empty (DESIGN section 4).
		for _, typ := range []string{"mutex", "block"} {
			if _, p := fetchProfile(t, tg.URL+"/debug/pprof/"+typ); len(p.Sample) != 0 {
				t.Errorf("%s profile has %d samples without -%s", typ, len(p.Sample), typ)
			}
		}
		_, cpu := fetchProfile(t, tg.URL+"/debug/pprof/profile?seconds=1")
		if got := sampleTypes(cpu); len(got) != 2 || got[1] != "cpu" {
			t.Errorf("cpu profile sample types %v", got)
		}
	})

	t.Run("mutex-block", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-mutex", "-block")
		for _, typ := range []string{"mutex", "block"} {
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, p := fetchProfile(t, tg.URL+"/debug/pprof/"+typ)
				if len(p.Sample) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s profile still empty with -%s", typ, typ)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	})

	t.Run("path", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-path=/internal/pprof")
		fetchProfile(t, tg.URL+"/internal/pprof/heap")
		fetchProfile(t, tg.URL+"/internal/pprof/goroutine")
		if code, _ := fetch(t, tg.URL+"/debug/pprof/heap", 5*time.Second); code != 404 {
			t.Errorf("/debug/pprof/heap with -path=/internal/pprof: HTTP %d, want 404", code)
		}
	})

	t.Run("cpu-limits", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-write-timeout=5s", "-legacy-write-timeout")
		// seconds >= WriteTimeout: Go <= 1.22's pprof answers 400 at once.
		code, body := fetch(t, tg.URL+"/debug/pprof/profile?seconds=5", 5*time.Second)
		if code != 400 || !strings.Contains(string(body), "exceeds server's WriteTimeout") {
			t.Errorf("seconds=5 with WriteTimeout 5s (legacy): %d %q, want 400", code, body)
		}
		// Two CPU profiles at once: the second gets 500. The second starts
		// once the target's goroutine dump shows the first one profiling.
		var wg sync.WaitGroup
		codes := make([]int, 2)
		bodies := make([][]byte, 2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[0], bodies[0] = fetch(t, tg.URL+"/debug/pprof/profile?seconds=2", 5*time.Second)
		}()
		eventually(t, 5*time.Second, "the first CPU profile runs", func() error {
			if _, dump := fetch(t, tg.URL+"/debug/pprof/goroutine?debug=2", 5*time.Second); !strings.Contains(string(dump), "net/http/pprof.Profile(") {
				return fmt.Errorf("no net/http/pprof.Profile in the goroutine dump")
			}
			return nil
		})
		codes[1], bodies[1] = fetch(t, tg.URL+"/debug/pprof/profile?seconds=1", 5*time.Second)
		wg.Wait()
		if codes[0] != 200 || codes[1] != 500 || !strings.Contains(string(bodies[1]), "cpu profiling already in use") {
			t.Errorf("concurrent CPU profiles: %d then %d %q; want 200 then 500", codes[0], codes[1], bodies[1])
		}
	})

	// Go 1.26's net/http/pprof extends the write deadline by the profile's
	// duration instead of refusing (DESIGN section 4 describes Go <= 1.22).
	t.Run("write-timeout-modern-go", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-write-timeout=1s")
		_, p := fetchProfile(t, tg.URL+"/debug/pprof/profile?seconds=2")
		if p.DurationNanos < int64(time.Second) {
			t.Errorf("cpu profile of %v, want ~2s", time.Duration(p.DurationNanos))
		}
	})

	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-mode=slow", "-slow-rate=32")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", tg.URL+"/debug/pprof/heap", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("slow: no response headers within 3s: %v", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !errors.Is(err, context.DeadlineExceeded) || len(b) == 0 || len(b) > 200 {
			t.Errorf("slow: status %d, read %d bytes, err %v; want 200, a trickle, then the deadline", resp.StatusCode, len(b), err)
		}
		if !isGzip(b) {
			t.Errorf("slow: the trickle is not the start of the real (gzipped) profile")
		}
	})

	t.Run("hung", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-mode=hung")
		c := &http.Client{Timeout: time.Second}
		start := time.Now()
		resp, err := c.Get(tg.URL + "/debug/pprof/heap")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("hung: got HTTP %d, want no answer", resp.StatusCode)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) > 10*time.Second {
			t.Errorf("hung: %v after %v, want a client timeout after 1s", err, time.Since(start))
		}
	})

	t.Run("garbage", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-mode=garbage")
		code, b := fetch(t, tg.URL+"/debug/pprof/heap", 5*time.Second)
		if code != 200 || len(b) != 4096 || isGzip(b) {
			t.Errorf("garbage: HTTP %d, %d bytes, gzip=%v; want 200, 4096 non-gzip bytes", code, len(b), isGzip(b))
		}
		if _, err := profile.Parse(bytes.NewReader(b)); err == nil {
			t.Errorf("garbage: the body parses as a profile")
		}
	})

	t.Run("huge", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-mode=huge")
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(tg.URL + "/debug/pprof/heap")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		const limit = 80 << 20 // past the operator's default 64 MiB cap
		n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, limit))
		if resp.StatusCode != 200 || err != nil || n != limit {
			t.Errorf("huge: HTTP %d, read %d bytes (%v); want 200 and at least %d", resp.StatusCode, n, err, limit)
		}
	})

	t.Run("500", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060, "-mode=500")
		code, b := fetch(t, tg.URL+"/debug/pprof/heap", 5*time.Second)
		if code != 500 || !strings.Contains(string(b), "injected failure") {
			t.Errorf("500: HTTP %d %q", code, b)
		}
	})

	// A target whose parent dies exits by itself (no strays burning CPU).
	t.Run("exit-with-parent", func(t *testing.T) {
		t.Parallel()
		bin, err := harness.PprofTargetBinary()
		if err != nil {
			t.Fatal(err)
		}
		addr := harness.AllocIP() + ":6060"
		// The parent shell lives a second, so the target sees it before it dies.
		out, err := exec.Command("bash", "-c", `"$0" -addr "$1" >/dev/null 2>&1 & echo $!; sleep 1`, bin, addr).Output()
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil || strings.Contains(string(st), ") Z ") {
				break // gone, or a zombie waiting for init to reap it
			}
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("orphaned pproftarget (pid %d) still running after 10s", pid)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("wrong-port", func(t *testing.T) {
		t.Parallel()
		tg := harness.TestTarget(t, harness.AllocIP(), 6060)
		_, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", tg.IP, 6061), 2*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dialing a port nothing listens on: %v, want connection refused", err)
		}
	})
}
