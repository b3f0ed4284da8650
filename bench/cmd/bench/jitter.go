package main

// The jitter run (-types jitter; issue 11): how late captures start when
// many pods and policies share one round boundary.
//
// One policy on "@every 1s" takes goroutine profiles of -jitter-pods pods;
// -jitter-others more policies on the same schedule take threadcreate
// profiles of -jitter-other-pods pods each (another cheap type, so the
// operator's histogram, labelled by type only, keeps the main policy
// apart). "@every 1s" rounds fall on whole wall-clock seconds, so all the
// policies fire together; each pod's capture is planned at the round plus
// its spread offset (rec_spread_offset_ms: a hash of its uid, modulo the
// window, which is --spread-window 1s capped at half the period: 500 ms).
//
// Two figures:
//   - the operator's histogram profefe_operator_capture_start_delay_seconds,
//     read from /metrics before and after the window: from the planned slot
//     to the request being sent. Its percentiles are interpolated linearly
//     within the buckets (1, 5, 10, 25, 50, 100, 250, 500 ms, 1 s, 5 s);
//   - with -jitter-mode own, the pods' side: every pod gets its own IP,
//     answered by a listener in this driver (serving the driver's own
//     goroutine/threadcreate profile, taken once at start) that notes each
//     request's arrival. A goroutine of the driver sleeping 5 ms at a time
//     measures the driver's own scheduling lateness in the same window: the
//     pods' figure cannot be finer than that.
//     The delay is arrival - (second boundary + the pod's offset, computed
//     here as the operator does). Exact percentiles, no buckets.
//
// -jitter-mode shared puts the pod objects on the pproftarget processes'
// IPs, as the throughput runs do. The fetcher runs one non-CPU capture per
// host:port at a time (max_per_target 1), so there the pods of one process
// wait for each other: that queueing is part of the figure, and is an
// artefact of sharing, which a cluster of distinct pods does not have.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"regexp"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"profefe-operator/e2e/harness"
)

const (
	jitMainType  = "goroutine"
	jitOtherType = "threadcreate"
	jitGoalMs    = 50.0
	jitWindowMs  = 500 // --spread-window 1s, capped at half of "@every 1s"
	delayMetric  = "profefe_operator_capture_start_delay_seconds"
)

type jitPod struct {
	name, uid, ip, group string // group: "main" or "o-N"
	offMs                int64
}

// spreadOffsetMs is reconcile/pod.c's rec_spread_offset_ms: FNV-1a 64 of
// the uid, a murmur-style finaliser, modulo the window.
func spreadOffsetMs(uid string, window uint64) int64 {
	if window == 0 {
		return 0
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(uid); i++ {
		h = (h ^ uint64(uid[i])) * 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return int64(h % window)
}

// podEndpoints are the pods' own listeners (-jitter-mode own): one
// http.Server per pod IP, each noting request arrivals while recording.
type podEndpoints struct {
	mu        sync.Mutex
	recording bool
	arrivals  map[int][]arrival // pod index -> arrivals
	srvs      []*http.Server
}

type arrival struct {
	ms  int64 // unix ms, as the operator's loop_wall_ms
	typ string
}

func startPodEndpoints(ips []string) (*podEndpoints, error) {
	e := &podEndpoints{arrivals: map[int][]arrival{}}
	// One real profile of this process per type, taken once and served
	// as is: the pods answer at once, so their arrival times are not
	// skewed by the driver's own profiling (a goroutine profile stops
	// the world).
	bodies := map[string][]byte{}
	for _, typ := range []string{jitMainType, jitOtherType} {
		var buf bytes.Buffer
		if err := pprof.Lookup(typ).WriteTo(&buf, 0); err != nil {
			return nil, err
		}
		bodies[typ] = buf.Bytes()
	}
	for i, ip := range ips {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(podPort)))
		if err != nil {
			e.stop()
			return nil, err
		}
		mux := http.NewServeMux()
		for _, typ := range []string{jitMainType, jitOtherType} {
			body := bodies[typ]
			mux.HandleFunc("/debug/pprof/"+typ, func(w http.ResponseWriter, r *http.Request) {
				t := time.Now().UnixMilli()
				e.mu.Lock()
				if e.recording {
					e.arrivals[i] = append(e.arrivals[i], arrival{t, typ})
				}
				e.mu.Unlock()
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Write(body)
			})
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		e.srvs = append(e.srvs, srv)
		go srv.Serve(ln)
	}
	return e, nil
}

func (e *podEndpoints) record(on bool) {
	e.mu.Lock()
	e.recording = on
	e.mu.Unlock()
}

func (e *podEndpoints) stop() {
	for _, s := range e.srvs {
		s.Close()
	}
}

// runJitter runs one jitter window per -jitter-mode.
func (s *b) runJitter() error {
	for _, mode := range s.o.jitModes {
		if err := s.runJitterMode(mode); err != nil {
			return fmt.Errorf("jitter (%s): %w", mode, err)
		}
	}
	return nil
}

func (s *b) runJitterMode(mode string) (err error) {
	o := s.o
	ns := "bench-jit-" + mode
	if err := s.cp.CreateNamespace(s.ctx, ns, nil); err != nil {
		return err
	}
	n := o.jitPods + o.jitOthers*o.jitOtherPods
	pods := make([]jitPod, n)
	ips := make([]string, n)
	for i := range pods {
		p := &pods[i]
		p.group = "main"
		if i >= o.jitPods {
			p.group = fmt.Sprintf("o-%d", (i-o.jitPods)/o.jitOtherPods)
		}
		p.name = fmt.Sprintf("jit-%s-%03d", p.group, i)
		if mode == "own" {
			p.ip = harness.AllocIP()
		} else {
			p.ip = s.targets[i%len(s.targets)].IP
		}
		ips[i] = p.ip
	}
	var ep *podEndpoints
	if mode == "own" {
		if ep, err = startPodEndpoints(ips); err != nil {
			return err
		}
		defer ep.stop()
	}
	t0 := time.Now()
	err = parallel(s.ctx, "pods created", s.o.workers, n, func(i int) error {
		p := &pods[i]
		obj, err := s.cp.CreatePod(s.ctx, harness.Pod{Namespace: ns, Name: p.name, Port: podPort,
			Labels:      map[string]string{"app": "jit", "jit": p.group},
			Annotations: map[string]string{"profefe.com/enable": "true"}})
		if err != nil {
			return err
		}
		meta, _ := obj["metadata"].(map[string]any)
		uid, _ := meta["uid"].(string)
		if uid == "" {
			return fmt.Errorf("pod %s: no uid in %v", p.name, meta)
		}
		p.uid = uid
		p.offMs = spreadOffsetMs(uid, jitWindowMs)
		return s.cp.SetPodStatusOf(s.ctx, obj, harness.PodStatus{Phase: "Running", Ready: true, IP: p.ip})
	})
	if err != nil {
		return err
	}
	where := fmt.Sprintf("sharing %d pproftarget processes' IPs", len(s.targets))
	if mode == "own" {
		where = "each on its own IP, answered by this driver"
	}
	log.Printf("jitter %s: %d pods created in %v, %s", mode, n, time.Since(t0).Round(time.Millisecond), where)

	op, err := s.startOperator("operator-jit-"+mode, append([]string{"--namespace", ns}, o.opFlags...)...)
	if err != nil {
		return err
	}
	defer op.stop()
	var y strings.Builder
	y.WriteString(policyYAML(ns, "jit-main", map[string]string{"jit": "main"}, "@every 1s", jitMainType, false))
	for i := 0; i < o.jitOthers; i++ {
		g := fmt.Sprintf("o-%d", i)
		y.WriteString(policyYAML(ns, "jit-"+g, map[string]string{"jit": g}, "@every 1s", jitOtherType, false))
	}
	if _, err := s.cp.KubectlStdin(s.ctx, y.String(), "apply", "-f", "-"); err != nil {
		return err
	}
	defer func() {
		if _, e := s.cp.Kubectl(s.ctx, "delete", "ppol", "--all", "-n", ns, "--wait=false"); e != nil && err == nil {
			err = e
		}
	}()
	// Warm-up: from the first observed capture on.
	cnt := fmt.Sprintf(`%s_count{type="%s"}`, delayMetric, jitMainType)
	err = poll(s.ctx, 60*time.Second, "the first goroutine capture", func() error {
		m, err := scrape(op.metrics)
		if err != nil {
			return err
		}
		if m[cnt] == 0 {
			return errors.New("no capture yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w; log tail:\n%s", err, op.proc.Tail(20))
	}
	if err := sleep(s.ctx, o.warmup); err != nil {
		return err
	}
	m0, err := scrape(op.metrics)
	if err != nil {
		return err
	}
	c0, _ := procCPU(op.pid())
	if ep != nil {
		ep.record(true)
	}
	w0 := time.Now()
	probeCtx, probeStop := context.WithCancel(s.ctx)
	defer probeStop()
	probe := make(chan []float64, 1)
	go func() { probe <- sleepLateness(probeCtx) }()
	var prof *perfRec
	if o.perfDir != "" {
		if prof, err = s.startPerf(op.pid(), "jitter-"+mode); err != nil {
			return err
		}
		defer prof.wait()
	}
	if err := sleep(s.ctx, o.seconds); err != nil {
		return err
	}
	if ep != nil {
		ep.record(false)
	}
	w1 := time.Now()
	probeStop()
	late := <-probe
	m1, err := scrape(op.metrics)
	if err != nil {
		return err
	}
	c1, _ := procCPU(op.pid())
	secs := w1.Sub(w0).Seconds()

	lbl := "jitter " + mode
	goal := func(p99 float64, inf bool) string {
		if !inf && p99 <= jitGoalMs {
			return "goal p99 <= 50 ms: met"
		}
		return "goal p99 <= 50 ms: NOT met"
	}
	for _, g := range []struct {
		typ, what string
		pods      int
	}{{jitMainType, fmt.Sprintf("1 policy, %d pods", o.jitPods), o.jitPods},
		{jitOtherType, fmt.Sprintf("%d other policies, %d pods", o.jitOthers, o.jitOthers*o.jitOtherPods), o.jitOthers * o.jitOtherPods}} {
		if g.pods == 0 {
			continue
		}
		h := histDiff(m0, m1, delayMetric, g.typ)
		if h.count == 0 {
			s.row(fmt.Sprintf("%s: %s start delay (metric)", lbl, g.typ), "n/a", "no observation in the window")
			continue
		}
		p50, _ := h.quantile(0.5)
		p90, _ := h.quantile(0.9)
		p99, inf := h.quantile(0.99)
		s.row(fmt.Sprintf("%s: %s start delay p50/p90/p99 (metric)", lbl, g.typ),
			fmt.Sprintf("%s / %s / %s ms", fmtMs(p50, false), fmtMs(p90, false), fmtMs(p99, inf)),
			fmt.Sprintf("%s; %.0f captures in %.1fs (offered %.0f); interpolated within buckets; <= 50 ms: %.1f%%; %s",
				g.what, h.count, secs, float64(g.pods)*secs, 100*h.atMost(0.05)/float64(h.count), goal(p99, inf)))
	}
	if ep != nil {
		all := map[string][]float64{}
		early, earliest := 0, 0.0
		for i, as := range ep.arrivals {
			p := pods[i]
			k := "others"
			if p.group == "main" {
				k = "main"
			}
			for _, a := range as {
				// The round is the second boundary before arrival - offset;
				// a request up to 100 ms early counts as early, not late.
				d := float64(((a.ms-p.offMs)%1000 + 1000) % 1000)
				if d >= 900 {
					d -= 1000
				}
				if d <= -2 { // -1: both clocks are truncated to ms
					early++
					earliest = min(earliest, d)
				}
				all[k] = append(all[k], d)
			}
		}
		for _, g := range []struct{ k, typ string }{{"main", jitMainType}, {"others", jitOtherType}} {
			ds := all[g.k]
			if len(ds) == 0 {
				continue
			}
			sort.Float64s(ds)
			p99 := exactQ(ds, 0.99)
			s.row(fmt.Sprintf("%s: %s start delay p50/p90/p99 (pods' side)", lbl, g.typ),
				fmt.Sprintf("%.0f / %.0f / %.0f ms", exactQ(ds, 0.5), exactQ(ds, 0.9), p99),
				fmt.Sprintf("arrival - (second + the pod's spread offset); %d requests, max %.0f ms, min %.0f ms; %s",
					len(ds), ds[len(ds)-1], ds[0], goal(p99, false)))
		}
		if early > 0 {
			s.notes = append(s.notes, fmt.Sprintf("%s: %d requests arrived 2 ms or more before their slot (the earliest %.0f ms)", lbl, early, earliest))
		}
	}
	if len(late) > 0 {
		s.row(lbl+": the driver's own lateness p50/p99/max", fmt.Sprintf("%.1f / %.1f / %.1f ms", exactQ(late, 0.5), exactQ(late, 0.99), late[len(late)-1]),
			fmt.Sprintf("a goroutine of the driver sleeping 5 ms, %d times: how late this process (and the pods' listeners in it) gets the CPU", len(late)))
	}
	stall0, stall1 := m0["profefe_operator_loop_max_stall_seconds"], m1["profefe_operator_loop_max_stall_seconds"]
	busy := 0.0
	ok := m1[`profefe_operator_deliveries_total{result="ok"}`] - m0[`profefe_operator_deliveries_total{result="ok"}`]
	for k, v := range m1 {
		if strings.HasPrefix(k, "profefe_operator_captures_total{") && strings.Contains(k, `result="busy"`) {
			busy += v - m0[k]
		}
	}
	s.row(lbl+": operator over the window", fmt.Sprintf("%.2f CPU-s", c1-c0),
		fmt.Sprintf("%.0f delivered, %.0f captures skipped as busy; longest loop stall since start %.1f ms (%.1f ms before the window)",
			ok, busy, stall1*1000, stall0*1000))
	if prof != nil {
		prof.wait()
		s.perf = append(s.perf, prof.summary(fmt.Sprintf("operator jitter %s, %d pods, %d policies @every 1s: %.2f CPU-s",
			mode, n, 1+o.jitOthers, c1-c0)))
	}
	return nil
}

func fmtMs(v float64, inf bool) string {
	if inf {
		return fmt.Sprintf(">%.0f", v)
	}
	if v < 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// exactQ is the q-quantile of sorted xs (nearest rank).
func exactQ(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// hist is a Prometheus histogram's buckets over a window.
type hist struct {
	le    []float64 // upper bounds, seconds, ascending; the last is +Inf
	cum   []float64 // cumulative counts
	count float64
}

var leRe = regexp.MustCompile(`le="([^"]+)"`)

// histDiff is name{type=typ}'s buckets in m1 minus those in m0.
func histDiff(m0, m1 map[string]float64, name, typ string) hist {
	var h hist
	type bk struct{ le, n float64 }
	var bs []bk
	for k, v := range m1 {
		if !strings.HasPrefix(k, name+"_bucket{") || !strings.Contains(k, `type="`+typ+`"`) {
			continue
		}
		mm := leRe.FindStringSubmatch(k)
		if mm == nil {
			continue
		}
		le, err := strconv.ParseFloat(mm[1], 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		bs = append(bs, bk{le, v - m0[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	for _, x := range bs {
		h.le = append(h.le, x.le)
		h.cum = append(h.cum, x.n)
	}
	if len(bs) > 0 {
		h.count = bs[len(bs)-1].n
	}
	return h
}

// quantile interpolates linearly within the bucket holding rank q*count
// (from 0 for the first bucket), in ms. inf: the rank is in the +Inf
// bucket, and the value is the largest finite bound.
func (h hist) quantile(q float64) (ms float64, inf bool) {
	rank := q * h.count
	prevLe, prevCum := 0.0, 0.0
	for i, le := range h.le {
		if h.cum[i] >= rank && h.cum[i] > prevCum {
			if math.IsInf(le, 1) {
				return prevLe * 1000, true
			}
			return (prevLe + (le-prevLe)*(rank-prevCum)/(h.cum[i]-prevCum)) * 1000, false
		}
		prevLe, prevCum = le, h.cum[i]
	}
	return prevLe * 1000, true
}

// atMost is the count in buckets with bound <= sec (a bucket bound, so
// no interpolation).
func (h hist) atMost(sec float64) float64 {
	c := 0.0
	for i, le := range h.le {
		if le <= sec+1e-12 {
			c = h.cum[i]
		}
	}
	return c
}

// sleepLateness sleeps 5 ms at a time until ctx ends and returns how late
// each wake-up was, in ms, sorted.
func sleepLateness(ctx context.Context) []float64 {
	var ds []float64
	for ctx.Err() == nil {
		t := time.Now()
		time.Sleep(5 * time.Millisecond)
		ds = append(ds, float64(time.Since(t)-5*time.Millisecond)/1e6)
	}
	sort.Float64s(ds)
	return ds
}
