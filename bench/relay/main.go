// Command relay is the baseline of DESIGN.md §10: a minimal fetch-then-push
// relay. Each of -concurrency workers loops over the targets round robin:
// GET http://TARGET/debug/pprof/TYPE, then POST the body as is to profefe's
// /api/0/profiles. It runs for -seconds (after -warmup) and prints one JSON
// line: profiles pushed, errors, bytes, elapsed seconds and profiles/s.
//
//	relay -targets 127.1.1.2:6060,127.1.1.3:6060 -profefe http://127.0.0.1:10100 -type heap -seconds 20
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Type        string  `json:"type"`
	Targets     int     `json:"targets"`
	Concurrency int     `json:"concurrency"`
	OK          int64   `json:"ok"`
	Errors      int64   `json:"errors"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"rate"`
	LastError   string  `json:"last_error,omitempty"`
}

func main() {
	targets := flag.String("targets", "", "comma-separated host:port of pprof servers (127.0.0.0/8 only)")
	profefe := flag.String("profefe", "", "profefe base URL, e.g. http://127.0.0.1:10100")
	typ := flag.String("type", "heap", "profile type: heap, goroutine, allocs, ...")
	conc := flag.Int("concurrency", 4, "workers")
	secs := flag.Float64("seconds", 20, "measurement window")
	warm := flag.Float64("warmup", 2, "warm-up before the window (not counted)")
	service := flag.String("service", "bench-relay", "profefe service name")
	flag.Parse()
	if *targets == "" || *profefe == "" {
		fmt.Fprintln(os.Stderr, "relay: -targets and -profefe are required")
		os.Exit(2)
	}
	ts := strings.Split(*targets, ",")
	for _, t := range append(append([]string{}, ts...), strings.TrimPrefix(strings.TrimPrefix(*profefe, "http://"), "https://")) {
		host, _, err := net.SplitHostPort(strings.TrimSuffix(t, "/"))
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			fmt.Fprintf(os.Stderr, "relay: %q is not a 127.0.0.0/8 host:port\n", t)
			os.Exit(2)
		}
	}

	tr := &http.Transport{MaxIdleConnsPerHost: *conc * 2, MaxConnsPerHost: 0, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	pushURL := strings.TrimSuffix(*profefe, "/") + "/api/0/profiles?"

	var counting atomic.Bool
	var ok, errs, nbytes, next atomic.Int64
	var lastErr atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration((*warm+*secs+60)*float64(time.Second)))
	defer cancel()
	stop := make(chan struct{})

	one := func(target string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+"/debug/pprof/"+*typ, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: HTTP %d", target, resp.StatusCode)
		}
		q := url.Values{"service": {*service}, "type": {*typ}, "labels": {"instance=" + target}}
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, pushURL+q.Encode(), bytes.NewReader(body))
		resp, err = client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST profefe: HTTP %d", resp.StatusCode)
		}
		if counting.Load() {
			nbytes.Add(int64(len(body)))
		}
		return nil
	}

	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t := ts[int(next.Add(1)-1)%len(ts)]
				err := one(t)
				if !counting.Load() {
					continue
				}
				if err != nil {
					errs.Add(1)
					lastErr.Store(err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Duration(*warm * float64(time.Second)))
	counting.Store(true)
	start := time.Now()
	time.Sleep(time.Duration(*secs * float64(time.Second)))
	counting.Store(false)
	el := time.Since(start).Seconds()
	close(stop)
	wg.Wait()

	r := result{Type: *typ, Targets: len(ts), Concurrency: *conc, OK: ok.Load(), Errors: errs.Load(),
		Bytes: nbytes.Load(), Seconds: el, Rate: float64(ok.Load()) / el}
	if v, _ := lastErr.Load().(string); v != "" {
		r.LastError = v
	}
	json.NewEncoder(os.Stdout).Encode(r)
}
