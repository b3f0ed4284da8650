package e2e

// Probes always answer (issue 12, finding 4): clients that connect to the
// operator's listeners and then send nothing, or send a request head a byte
// at a time, must not keep the kubelet's /healthz and /readyz out, or the
// liveness probe restarts a healthy operator. The probe listener
// (--health-probe-bind-address) is a socket of its own, apart from
// /metrics (--metrics-bind-address), so scrapers cannot starve probes
// either. Only flags every operator version knows are used, so the test
// also runs against older builds (PPOP_BUILD_DIR) to show what it catches.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	probeHogsPerAddr = 48                     // per listener; the finding used 40
	probeSlowHogs    = 8                      // of those, how many trickle a partial head
	probeEvery       = 250 * time.Millisecond // as often as a tight kubelet probe
	probeFor         = 10 * time.Second
	probeLimit       = 1 * time.Second // a probe answered later than this fails
)

// hog holds one connection to addr open for as long as ctx lives, and
// reconnects 100 ms after the server closes it, as a hostile client would.
// With slow set it trickles "GET /healthz HTTP/1.1\r\nX: " a byte every
// 300 ms and never ends the head; otherwise it sends nothing. It returns
// once its first connection is established, so the caller knows the
// operator's backlog holds it ahead of any probe.
func hog(ctx context.Context, wg *sync.WaitGroup, addr string, slow bool, dials *atomic.Int64) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	dials.Add(1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		head := []byte("GET /healthz HTTP/1.1\r\nHost: probes\r\nX-Slow: ")
		for {
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			if slow {
				for i := 0; ctx.Err() == nil; i++ {
					if _, err := conn.Write(head[i%len(head) : i%len(head)+1]); err != nil {
						break
					}
					select {
					case <-ctx.Done():
					case <-time.After(300 * time.Millisecond):
					}
				}
			} else {
				io.Copy(io.Discard, conn) // returns when the server closes it
			}
			stop()
			conn.Close()
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			for conn = nil; conn == nil; {
				if conn, err = d.DialContext(ctx, "tcp", addr); err != nil {
					conn = nil
					select {
					case <-ctx.Done():
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
			dials.Add(1)
		}
	}()
	return nil
}

func TestProbesAnswerDespiteIdleClients(t *testing.T) {
	e := newEnv(t)
	op := e.startOperator("probes")

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var dials atomic.Int64
	for _, addr := range []string{op.healthAddr, op.metricsAddr} {
		for i := 0; i < probeHogsPerAddr; i++ {
			if err := hog(ctx, &wg, addr, i < probeSlowHogs, &dials); err != nil {
				t.Fatalf("idle client %d to %s: %v", i, addr, err)
			}
		}
	}
	t.Logf("%d idle clients on each of %s (probes) and %s (metrics), %d of each trickling a partial head",
		probeHogsPerAddr, op.healthAddr, op.metricsAddr, probeSlowHogs)

	// A new connection per probe, as the kubelet makes.
	client := &http.Client{Timeout: probeLimit, Transport: &http.Transport{DisableKeepAlives: true}}
	probe := func(path string) error {
		start := time.Now()
		resp, err := client.Get("http://" + op.healthAddr + path)
		if err != nil {
			return fmt.Errorf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("HTTP %d after %v", resp.StatusCode, time.Since(start).Round(time.Millisecond))
		}
		return nil
	}
	var fails []string
	sent, slowest := 0, time.Duration(0)
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for end := time.Now().Add(probeFor); time.Now().Before(end); <-tick.C {
		for _, path := range []string{"/healthz", "/readyz"} {
			start := time.Now()
			err := probe(path)
			sent++
			if d := time.Since(start); d > slowest {
				slowest = d
			}
			if err != nil {
				fails = append(fails, fmt.Sprintf("%6.2fs %s: %v", time.Since(end.Add(-probeFor)).Seconds(), path, err))
			}
		}
	}
	t.Logf("%d probes, %d answered 200 within %v, slowest %v; idle clients connected %d times",
		sent, sent-len(fails), probeLimit, slowest.Round(time.Millisecond), dials.Load())
	if len(fails) > 0 {
		for _, f := range fails {
			t.Log(f)
		}
		t.Errorf("%d of %d probes failed while idle clients held the listeners", len(fails), sent)
	}
	if exited, err := op.proc.Exited(); exited {
		t.Errorf("the operator exited under idle clients: %v", err)
	}
}
