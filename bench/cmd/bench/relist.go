package main

// The relist row of the memory run: how long the operator's event loop
// stalls while it takes in a relist in which every pod changed.
//
// A relist is what an informer does when its resourceVersion has been
// compacted away (410 Gone): it lists everything again and delivers the
// differences. To make one happen on purpose, the operator is stopped
// (SIGSTOP), kube-apiserver restarts (ending its watches before anything
// changes), every pod gets a new label, then etcd is compacted and
// kube-apiserver restarts again, so the operator's
// resourceVersion is in neither the new apiserver's watch cache nor etcd:
// when the operator continues (SIGCONT), its re-watch is answered 410 and
// it relists. Every pod then
// arrives as an update, each concerning every policy of the run (they all
// select app=rss): 10,000 pods x 1,000 policies is 10^7 pod-policy checks.
//
// The figure is the difference of profefe_operator_loop_iteration_seconds
// across the relist: iterations past 50 ms, and the bucket of the longest.

import (
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var relistFlag = flag.Bool("relist", true, "memory run: also measure the loop stall over a relist in which every pod changed")

const (
	iterMetric    = "profefe_operator_loop_iteration_seconds"
	iterCPUMetric = "profefe_operator_loop_iteration_cpu_seconds"
)

// iterBuckets reads a histogram's cumulative buckets: upper bound -> count.
func iterBuckets(m map[string]float64, metric string) map[float64]float64 {
	out := map[float64]float64{}
	for k, v := range m {
		if !strings.HasPrefix(k, metric+"_bucket{le=\"") {
			continue
		}
		le := strings.TrimSuffix(strings.TrimPrefix(k, metric+"_bucket{le=\""), "\"}")
		b := math.Inf(1)
		if le != "+Inf" {
			f, err := strconv.ParseFloat(le, 64)
			if err != nil {
				continue
			}
			b = f
		}
		out[b] = v
	}
	return out
}

// stallSummary compares two scrapes of the histogram: how many iterations
// ran over 50 ms between them, and the bucket the longest fell in.
func stallSummary(m0, m1 map[string]float64, metric string) (over50 float64, longest string, n float64) {
	b0, b1 := iterBuckets(m0, metric), iterBuckets(m1, metric)
	var les []float64
	for le := range b1 {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 {
		return 0, "n/a (no histogram in this build)", 0
	}
	n = b1[math.Inf(1)] - b0[math.Inf(1)]
	longest = "none"
	below, prevLE := 0.0, 0.0
	for _, le := range les {
		cum := b1[le] - b0[le]
		if cum > below { // some iteration fell in (prevLE, le]
			if math.IsInf(le, 1) {
				longest = fmt.Sprintf("> %g ms", prevLE*1000)
			} else {
				longest = fmt.Sprintf("%g-%g ms", prevLE*1000, le*1000)
			}
		}
		below, prevLE = cum, le
	}
	if at50, ok := b1[0.05]; ok {
		over50 = n - (at50 - b0[0.05])
	}
	return over50, longest, n
}

// relistRow runs one relist under op, which caches every pod of rssNS
// and the policies, and adds its rows. gen names this round's label value.
func (s *b) relistRow(op *operator, label string, gen int) error {
	if !*relistFlag || s.o.rssPods == 0 {
		return nil
	}
	m0, err := scrape(op.metrics)
	if err != nil {
		return err
	}
	// The log says when a list of the pods has been taken in, in every
	// build (profefe_operator_lists_total is newer than some bases).
	synced := func() int {
		b, _ := os.ReadFile(op.proc.LogPath)
		return strings.Count(string(b), `msg="pod cache synced"`)
	}
	synced0 := synced()
	log.Printf("relist: stopping %s (SIGSTOP), relabelling %d pods, restarting kube-apiserver", op.proc.Name, s.o.rssPods)
	if err := syscall.Kill(op.pid(), syscall.SIGSTOP); err != nil {
		return err
	}
	cont := func() { _ = syscall.Kill(op.pid(), syscall.SIGCONT) }
	defer cont()
	// Its watches end here, before any change below could be sent on them.
	if err := s.cp.RestartAPIServer(s.ctx); err != nil {
		return err
	}
	t0 := time.Now()
	g := strconv.Itoa(gen)
	err = parallel(s.ctx, "pods relabelled", s.o.workers, s.o.rssPods, func(i int) error {
		_, err := s.cp.Patch(s.ctx, fmt.Sprintf("/api/v1/namespaces/%s/pods/rss-%05d", rssNS, i),
			map[string]any{"metadata": map[string]any{"labels": map[string]string{"gen": g}}})
		return err
	})
	if err != nil {
		return err
	}
	if _, err := s.cp.CompactEtcd(s.ctx); err != nil {
		return err
	}
	if err := s.cp.RestartAPIServer(s.ctx); err != nil {
		return err
	}
	log.Printf("relist: %d pods relabelled, etcd compacted and kube-apiserver restarted in %v; continuing %s", s.o.rssPods, time.Since(t0).Round(time.Second), op.proc.Name)
	cont()
	t1 := time.Now()
	var m1 map[string]float64
	err = poll(s.ctx, s.scaled(120*time.Second), op.proc.Name+" relists the pods", func() error {
		m, err := scrape(op.metrics)
		if err != nil {
			return err
		}
		if n := synced(); n <= synced0 {
			return fmt.Errorf("'pod cache synced' logged %d times, as before", n)
		}
		m1 = m
		return nil
	})
	if err != nil {
		return err
	}
	took := time.Since(t1)
	// Let the policies' reconciles that the updates queued run too.
	if err := sleep(s.ctx, 5); err != nil {
		return err
	}
	if m, err := scrape(op.metrics); err == nil {
		m1 = m
	}
	over50, longest, n := stallSummary(m0, m1, iterMetric)
	cpuOver50, cpuLongest, _ := stallSummary(m0, m1, iterCPUMetric)
	restarts := m1[`profefe_operator_watch_restarts_total{resource="pods"}`] - m0[`profefe_operator_watch_restarts_total{resource="pods"}`]
	s.row(fmt.Sprintf("  %s loop iterations over 50 ms, relist of %d changed pods", label, s.o.rssPods),
		fmt.Sprintf("%.0f", over50),
		fmt.Sprintf("of %.0f iterations from SIGCONT to 5 s after the relist (%v); the longest in %s; pods watch restarts %.0f; max stall since start %.1f ms, %.1f ms before",
			n, took.Round(time.Millisecond), longest, restarts, m1["profefe_operator_loop_max_stall_seconds"]*1000, m0["profefe_operator_loop_max_stall_seconds"]*1000))
	s.row("    the same in the loop thread's CPU time", fmt.Sprintf("%.0f", cpuOver50),
		fmt.Sprintf("the longest in %s; most CPU in one iteration since start %.1f ms, %.1f ms before (wall time above also counts the machine keeping the operator off the CPU)",
			cpuLongest, m1["profefe_operator_loop_max_stall_cpu_seconds"]*1000, m0["profefe_operator_loop_max_stall_cpu_seconds"]*1000))
	return nil
}
