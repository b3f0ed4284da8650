// Command bench measures profefe-operator against a minimal relay on the same
// targets and the same profefe, in the same run (DESIGN.md §10). It starts
// the real parts through the e2e harness (etcd + kube-apiserver, profefe,
// -pods pproftarget processes playing Running pods on 127.0.0.0/8), then:
//
//  1. runs bench/relay (fetch-then-push, -concurrency workers) for heap and
//     goroutine profiles: the baseline profiles/s and its CPU cost;
//  2. runs the operator with ProfilingPolicies on "@every 1s" selecting those
//     pods (enough policies that the offered load exceeds the relay's rate)
//     and counts profefe_operator_deliveries_total{result="ok"} over the same
//     window, plus the operator's CPU time from /proc/PID/stat;
//  3. starts a fresh operator, creates -rss-pods Running pods (no targets)
//     and -rss-policies suspended policies, and reads VmRSS from /proc;
//  4. with -kprofefe, runs kube-profefe's kprofefe once over one pod per
//     target, then one round of a fresh operator over the same pods, and
//     compares wall time, CPU-s, peak RSS and profiles stored (kprofefe.go).
//
// It prints a report table (and writes it to -out). Every figure that matters
// is a ratio against a baseline measured in this run; absolute times depend
// on the machine's load. Everything it starts stops before it exits.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"profefe-operator/e2e/harness"
)

const (
	operatorNS = "profefe-system"
	benchNS    = "bench"
	rssNS      = "bench-rss"
	podPort    = 6060
)

type opts struct {
	pods, rssPods, rssPolicies, conc int
	seconds, warmup                  float64
	operator, relay, out, dir        string
	baseOperator                     string
	perfDir                          string // non-empty: perf record each operator window into it
	types                            []string
	loads                            []float64
	opFlags                          []string
	jitter                           bool // -types jitter: the capture-start jitter run (jitter.go)
	hostile                          bool // -types hostile: the hostile-pod memory rows (hostile.go)
	hostilePods                      int
	jitPods, jitOthers, jitOtherPods int
	jitModes                         []string
	timeout                          time.Duration // the whole run's cap
	workers                          int           // concurrent API requests creating objects
}

func main() {
	var o opts
	var types string
	flag.IntVar(&o.pods, "pods", 4, "pproftarget processes (Running pods) for the throughput runs")
	flag.Float64Var(&o.seconds, "seconds", 20, "measurement window of each throughput run")
	flag.Float64Var(&o.warmup, "warmup", 4, "warm-up before each window (not counted)")
	flag.IntVar(&o.conc, "concurrency", 4, "relay workers")
	flag.StringVar(&types, "types", "heap,goroutine", "profile types to measure (\"none\": only the memory run; \"jitter\": the capture-start jitter run; \"hostile\": the hostile-pod memory rows)")
	flag.IntVar(&o.hostilePods, "hostile-pods", 20, "hostile run: pods on each hostile target (endless body, gzip bomb)")
	flag.IntVar(&o.jitPods, "jitter-pods", 100, "jitter run: pods of the goroutine policy on \"@every 1s\"")
	flag.IntVar(&o.jitOthers, "jitter-others", 10, "jitter run: other policies on the same schedule (threadcreate)")
	flag.IntVar(&o.jitOtherPods, "jitter-other-pods", 10, "jitter run: pods of each other policy")
	jitModes := flag.String("jitter-mode", "shared,own", "jitter run: \"shared\" (pods on the pproftarget processes' IPs), \"own\" (one IP per pod, served by the driver, which also times the requests); comma-separated")
	loads := flag.String("load", "0.8,1.2", "operator offered loads, as multiples of the relay's rate (comma-separated)")
	flag.IntVar(&o.rssPods, "rss-pods", 2000, "pods for the memory run (0 skips it)")
	flag.IntVar(&o.rssPolicies, "rss-policies", 100, "suspended policies for the memory run")
	flag.StringVar(&o.operator, "operator", "", "profefe-operator binary (required)")
	flag.StringVar(&o.relay, "relay", "", "bench relay binary (required)")
	flag.StringVar(&o.baseOperator, "base-operator", "", "a second profefe-operator binary (e.g. an older commit) measured beside -operator in the memory run")
	flag.StringVar(&o.out, "out", "", "also write the report here")
	opFlags := flag.String("operator-flags", "", "extra operator flags for the throughput runs, e.g. \"--max-inflight 16\"")
	flag.StringVar(&o.dir, "dir", "", "state folder (default: a temporary one, removed on exit)")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "cap on the whole run (e.g. 90m for -rss-pods 100000)")
	flag.IntVar(&o.workers, "workers", 32, "concurrent API requests when creating pods and policies")
	flag.StringVar(&o.perfDir, "perf", "", "record a CPU profile of every operator window with perf(1) into this folder, and print its top symbols")
	flag.Parse()
	o.types = nil // "" (or "none") skips the throughput runs
	for _, t := range strings.Split(types, ",") {
		if t = strings.TrimSpace(t); t == "jitter" {
			o.jitter = true
		} else if t == "hostile" {
			o.hostile = true
		} else if t != "" && t != "none" {
			o.types = append(o.types, t)
		}
	}
	o.opFlags = strings.Fields(*opFlags)
	for _, m := range strings.Split(*jitModes, ",") {
		if m = strings.TrimSpace(m); m == "shared" || m == "own" {
			o.jitModes = append(o.jitModes, m)
		} else if m != "" {
			log.Fatalf("-jitter-mode: %q is neither shared nor own", m)
		}
	}
	for _, f := range strings.Split(*loads, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			log.Fatalf("-load: bad multiple %q", f)
		}
		o.loads = append(o.loads, v)
	}
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	if o.operator == "" || o.relay == "" {
		log.Fatal("-operator and -relay are required")
	}
	if o.timeout <= 0 || o.workers < 1 {
		log.Fatal("-timeout and -workers must be positive")
	}
	err := run(o)
	if e := harness.KillLeftovers(); e != nil {
		log.Print(e)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// b is the benchmark state.
type b struct {
	o       opts
	ctx     context.Context
	dir     string
	cp      *harness.ControlPlane
	pf      *harness.Profefe
	saKube  string
	targets []*harness.Target
	podsN   int         // pods created in benchNS
	rows    [][3]string // figure, value, note
	notes   []string
	perf    []string // -perf: one summary per operator window
	start   time.Time
}

func (s *b) row(name, value, note string) {
	s.rows = append(s.rows, [3]string{name, value, note})
	log.Printf("RESULT %-44s %s  %s", name, value, note)
}

func run(o opts) (err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sigs; log.Print("interrupted; stopping"); cancel() }()
	// Hard bound: nothing here should ever run this long.
	ctx, cancelT := context.WithTimeout(ctx, o.timeout)
	defer cancelT()

	s := &b{o: o, ctx: ctx, start: time.Now()}
	if s.dir = o.dir; s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "ppop-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(s.dir)
	}
	var stops []func() error
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			if e := stops[i](); e != nil {
				log.Printf("stop: %v", e)
			}
		}
	}()

	t0 := time.Now()
	log.Printf("starting etcd + kube-apiserver and profefe in %s", s.dir)
	if s.cp, err = harness.StartControlPlane(ctx, harness.ControlPlaneOptions{Dir: filepath.Join(s.dir, "cp")}); err != nil {
		return err
	}
	stops = append(stops, s.cp.Stop)
	if s.pf, err = harness.StartProfefe(ctx, filepath.Join(s.dir, "profefe")); err != nil {
		return err
	}
	stops = append(stops, s.pf.Stop)
	if err = s.setupCluster(); err != nil {
		return err
	}
	log.Printf("control plane, profefe, CRD and RBAC ready in %v", time.Since(t0).Round(time.Millisecond))

	if err = s.cp.CreateNamespace(ctx, benchNS, nil); err != nil {
		return err
	}
	for i := 0; i < o.pods; i++ {
		tg, err := harness.StartTarget(ctx, s.dir, harness.AllocIP(), podPort, "-cpu", "0.02")
		if err != nil {
			return err
		}
		stops = append(stops, tg.Stop)
		s.targets = append(s.targets, tg)
	}
	log.Printf("%d pproftarget processes: %s", o.pods, strings.Join(s.addrs(), " "))

	relay := map[string]relayResult{}
	for _, typ := range o.types {
		r, err := s.runRelay(typ)
		if err != nil {
			return err
		}
		relay[typ] = r
		if r.OK == 0 {
			return fmt.Errorf("the relay pushed no %s profile (last error %q)", typ, r.LastError)
		}
	}

	// Pods: each target plays K pods (pod objects sharing its IP), so that
	// one policy on "@every 1s" selecting the first k of each offers
	// k x targets profiles/s: -load times the relay's rate.
	kmax := 0
	ks := map[int]bool{}
	for _, typ := range o.types {
		for _, l := range o.loads {
			k := slots(l, relay[typ].Rate, o.pods)
			kmax = max(kmax, k)
			ks[k] = true
		}
	}
	if err := s.createTargetPods(kmax, ks); err != nil {
		return err
	}
	for _, typ := range o.types {
		type run struct {
			load float64
			k    int
			r    opResult
		}
		var runs []run
		for _, l := range o.loads {
			k := slots(l, relay[typ].Rate, o.pods)
			r, err := s.runOperator(typ, k)
			if err != nil {
				return err
			}
			runs = append(runs, run{l, k, r})
		}
		// The relay again, right after: the baseline is the mean of the
		// two, and their gap shows how much the machine's load moved.
		before := relay[typ]
		after, err := s.runRelay(typ)
		if err != nil {
			return err
		}
		base := (before.Rate + after.Rate) / 2
		s.row("relay "+typ+" profiles/s (baseline)", fmt.Sprintf("%.1f", base),
			fmt.Sprintf("before %.1f, after %.1f; %d workers, %d errors; %.3f CPU-s/1000",
				before.Rate, after.Rate, before.Concurrency, before.Errors+after.Errors, before.cpuPer1000()))
		for _, x := range runs {
			r, l, k := x.r, x.load, x.k
			offered := float64(k * o.pods)
			ratio := r.rate / base
			lt := fmt.Sprintf("%s @ %.1fx", typ, l)
			s.row("operator "+lt+" profiles/s", fmt.Sprintf("%.1f", r.rate),
				fmt.Sprintf("offered %.0f/s (%d pods @every 1s): %.0f%% delivered; %d failed; at the end %d in flight, %d spooled",
					offered, k*o.pods, 100*r.rate/offered, r.failed, r.inflight, r.spooled))
			s.row("operator/relay "+lt+" (target >= 0.95)", fmt.Sprintf("%.2f", ratio), verdict(ratio >= 0.95))
			cpu := r.cpu / float64(r.ok) * 1000
			name := "operator CPU-s per 1000 " + lt
			if typ == "heap" {
				name += " (target <= 0.1)"
			}
			s.row(name, fmt.Sprintf("%.3f", cpu),
				fmt.Sprintf("%.2f CPU-s for %d delivered (~%.0f KB); relay %.3f", r.cpu, r.ok, r.avgKB, before.cpuPer1000()))
			if r.maxScrape > 2*time.Second {
				s.notes = append(s.notes, fmt.Sprintf("%s: /metrics took up to %v to answer", lt, r.maxScrape.Round(time.Millisecond)))
			}
		}
	}

	if o.jitter {
		if err := s.runJitter(); err != nil {
			return err
		}
	}
	if o.hostile {
		if err := s.runHostile(); err != nil {
			return err
		}
	}
	if o.rssPods > 0 {
		if err := s.runRSS(); err != nil {
			return err
		}
	}
	if err := s.runKprofefe(); err != nil {
		return err
	}
	s.report()
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "meets the target"
	}
	return "BELOW the target"
}

func (s *b) setupCluster() error {
	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	if _, err := s.cp.Kubectl(s.ctx, "apply", "--server-side", "-f", filepath.Join(root, "crd", "profilingpolicies.profefe.com.yaml")); err != nil {
		return err
	}
	if _, err := s.cp.Kubectl(s.ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/profilingpolicies.profefe.com"); err != nil {
		return err
	}
	if err := s.cp.CreateNamespace(s.ctx, operatorNS, nil); err != nil && !harness.IsAlreadyExists(err) {
		return err
	}
	if _, err := s.cp.Kubectl(s.ctx, "apply", "-n", operatorNS, "-k", filepath.Join(root, "config", "rbac")); err != nil {
		return err
	}
	s.saKube = filepath.Join(s.dir, "operator-sa.kubeconfig")
	_, err = s.cp.ServiceAccountKubeconfig(s.ctx, operatorNS, "profefe-operator", s.saKube)
	return err
}

func (s *b) addrs() []string {
	var a []string
	for _, t := range s.targets {
		a = append(a, t.Addr)
	}
	return a
}

// slots is how many pods per target offer load x rate profiles/s.
func slots(load, rate float64, targets int) int {
	return max(1, int(math.Round(load*rate/float64(targets))))
}

// createTargetPods creates kmax Running pods per target, all with the
// target's IP; pod j carries label bench-below-K=yes for every K in ks above
// j, so a policy selects the first K pods of each target with one label.
func (s *b) createTargetPods(kmax int, ks map[int]bool) error {
	owner, err := s.cp.CreateWorkload(s.ctx, benchNS, "Deployment", "bench", map[string]string{"app": "bench"})
	if err != nil {
		return err
	}
	hash := owner.Name[strings.LastIndex(owner.Name, "-")+1:]
	s.podsN = kmax * len(s.targets)
	log.Printf("creating %d pods (%d per target)", s.podsN, kmax)
	return parallel(s.ctx, "pods created", s.o.workers, kmax*len(s.targets), func(n int) error {
		i, j := n%len(s.targets), n/len(s.targets)
		labels := map[string]string{"app": "bench", "pod-template-hash": hash}
		for k := range ks {
			if j < k {
				labels[fmt.Sprintf("bench-below-%d", k)] = "yes"
			}
		}
		return s.createPod(benchNS, fmt.Sprintf("bench-%s-%d-%d", hash, i, j), labels, s.targets[i].IP, &owner)
	})
}

func (s *b) createPod(ns, name string, labels map[string]string, ip string, owner *harness.OwnerRef) error {
	p := harness.Pod{Namespace: ns, Name: name, Port: podPort, Labels: labels,
		Annotations: map[string]string{"profefe.com/enable": "true"}}
	if owner != nil {
		p.Owners = []harness.OwnerRef{*owner}
	}
	obj, err := s.cp.CreatePod(s.ctx, p)
	if err != nil {
		return err
	}
	return s.cp.SetPodStatusOf(s.ctx, obj, harness.PodStatus{Phase: "Running", Ready: true, IP: ip})
}

// ---------------------------------------------------------------- relay

type relayResult struct {
	Type        string  `json:"type"`
	Concurrency int     `json:"concurrency"`
	OK          int64   `json:"ok"`
	Errors      int64   `json:"errors"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"rate"`
	LastError   string  `json:"last_error"`
	cpu         float64 // whole-process CPU-seconds (warm-up included)
	total       float64 // profiles including the warm-up, estimated
}

// cpuPer1000 is the relay's CPU-seconds per 1000 profiles, warm-up included
// in both the CPU time and the (estimated) profile count.
func (r relayResult) cpuPer1000() float64 {
	if r.total == 0 {
		return math.NaN()
	}
	return r.cpu / r.total * 1000
}

func (s *b) runRelay(typ string) (relayResult, error) {
	var r relayResult
	log.Printf("relay: %s profiles, %d workers, %d targets, %.0fs window after %.0fs warm-up", typ, s.o.conc, len(s.targets), s.o.seconds, s.o.warmup)
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(s.o.seconds+s.o.warmup+90)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.o.relay, "-targets", strings.Join(s.addrs(), ","), "-profefe", s.pf.URL,
		"-type", typ, "-concurrency", strconv.Itoa(s.o.conc),
		"-seconds", fmt.Sprint(s.o.seconds), "-warmup", fmt.Sprint(s.o.warmup))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("relay: %w", err)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("relay output %q: %w", out, err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu = tv(ru.Utime) + tv(ru.Stime)
	r.total = r.Rate * (s.o.seconds + s.o.warmup)
	return r, nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// ---------------------------------------------------------------- operator

type operator struct {
	proc    *harness.Proc
	metrics string
	health  string
}

func (o *operator) pid() int { return o.proc.Cmd.Process.Pid }

func (o *operator) stop() error { return o.proc.Stop(20 * time.Second) }

func (s *b) startOperator(name string, extra ...string) (*operator, error) {
	return s.startOperatorBin(name, s.o.operator, extra...)
}

// startOperatorBin starts the operator binary bin as name.
func (s *b) startOperatorBin(name, bin string, extra ...string) (*operator, error) {
	mport, err := harness.FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	hport, err := harness.FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	o := &operator{metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), health: fmt.Sprintf("http://127.0.0.1:%d/readyz", hport)}
	args := append([]string{
		"--kubeconfig", s.saKube,
		"--profefe-url", s.pf.URL,
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", mport),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", hport),
		"--leader-election-namespace", operatorNS,
		"--spread-window", "1s",
		"--shutdown-timeout", "1s",
		"-v", "0"}, extra...)
	o.proc, err = harness.StartProc(name, filepath.Join(s.dir, name+".log"), os.Environ(), bin, args...)
	if err != nil {
		return nil, err
	}
	err = poll(s.ctx, s.scaled(60*time.Second), name+" /readyz", func() error {
		if ex, werr := o.proc.Exited(); ex {
			return permanent{fmt.Errorf("%s exited (%v):\n%s", name, werr, o.proc.Tail(20))}
		}
		code, body := httpGet(o.health)
		if code != 200 {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})
	if err != nil {
		o.stop()
		return nil, err
	}
	log.Printf("%s (pid %d) ready", name, o.pid())
	return o, nil
}

type opResult struct {
	ok, failed, captured int64
	seconds, cpu         float64
	rate, avgKB          float64
	maxScrape            time.Duration
	inflight, spooled    int64
}

func policyYAML(ns, name string, match map[string]string, schedule, typ string, suspend bool) string {
	var m strings.Builder
	for k, v := range match {
		fmt.Fprintf(&m, "      %s: %q\n", k, v)
	}
	return fmt.Sprintf(`apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: %s
  namespace: %s
spec:
  schedule: "%s"
  suspend: %v
  selector:
    matchLabels:
%s  service: bench-operator
  profiles:
  - type: %s
---
`, name, ns, schedule, suspend, m.String(), typ)
}

// policyObject is policyYAML as an object for a REST create.
func policyObject(ns, name string, match map[string]string, schedule, typ string, suspend bool) harness.Object {
	return harness.Object{
		"apiVersion": "profefe.com/v1alpha1", "kind": "ProfilingPolicy",
		"metadata": harness.Object{"name": name, "namespace": ns},
		"spec": harness.Object{
			"schedule": schedule, "suspend": suspend,
			"selector": harness.Object{"matchLabels": match},
			"service":  "bench-operator",
			"profiles": []harness.Object{{"type": typ}},
		},
	}
}

// runOperator starts a fresh operator, applies one policy on "@every 1s"
// selecting the first k pods of each target, and counts deliveries
// over the window. The operator is stopped (not drained) afterwards.
func (s *b) runOperator(typ string, k int) (r opResult, err error) {
	op, err := s.startOperator("operator-"+typ, s.o.opFlags...)
	if err != nil {
		return r, err
	}
	defer op.stop()
	log.Printf("operator: %s, 1 policy @every 1s over %d pods (offered %d/s), %.0fs window after %.0fs warm-up",
		typ, k*len(s.targets), k*len(s.targets), s.o.seconds, s.o.warmup)
	pol := fmt.Sprintf("tp-%s-%d", typ, k)
	y := policyYAML(benchNS, pol, map[string]string{"app": "bench", fmt.Sprintf("bench-below-%d", k): "yes"}, "@every 1s", typ, false)
	if _, err := s.cp.KubectlStdin(s.ctx, y, "apply", "-f", "-"); err != nil {
		return r, err
	}
	defer func() {
		if _, e := s.cp.Kubectl(s.ctx, "delete", "ppol", pol, "-n", benchNS, "--wait=false"); e != nil && err == nil {
			err = e
		}
	}()
	if err := sleep(s.ctx, s.o.warmup); err != nil {
		return r, err
	}
	m0, d, err := scrapeTimed(op.metrics)
	if err != nil {
		return r, err
	}
	r.maxScrape = d
	c0, err := procCPU(op.pid())
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	var prof *perfRec
	if s.o.perfDir != "" {
		if prof, err = s.startPerf(op.pid(), fmt.Sprintf("%s-%d", typ, k)); err != nil {
			return r, err
		}
		defer prof.wait()
	}
	// Scrape now and then during the window: a slow /metrics is a finding.
	for time.Since(t0).Seconds() < s.o.seconds-2.5 {
		if err := sleep(s.ctx, 2); err != nil {
			return r, err
		}
		if _, d, err := scrapeTimed(op.metrics); err == nil {
			r.maxScrape = max(r.maxScrape, d)
		}
	}
	if err := sleep(s.ctx, s.o.seconds-time.Since(t0).Seconds()); err != nil {
		return r, err
	}
	c1, err := procCPU(op.pid())
	if err != nil {
		return r, err
	}
	m1, d, err := scrapeTimed(op.metrics)
	if err != nil {
		return r, err
	}
	r.maxScrape = max(r.maxScrape, d)
	r.seconds = time.Since(t0).Seconds() - d.Seconds()
	const okKey = `profefe_operator_deliveries_total{result="ok"}`
	r.ok = int64(m1[okKey] - m0[okKey])
	for key, v := range m1 {
		if strings.HasPrefix(key, "profefe_operator_deliveries_total{") && key != okKey {
			r.failed += int64(v - m0[key])
		}
		if strings.HasPrefix(key, "profefe_operator_captures_total{") && strings.Contains(key, `type="`+typ+`"`) && strings.Contains(key, `result="ok"`) {
			r.captured += int64(v - m0[key])
		}
	}
	bk := fmt.Sprintf(`profefe_operator_capture_bytes_total{type="%s"}`, typ)
	if r.captured > 0 {
		r.avgKB = (m1[bk] - m0[bk]) / float64(r.captured) / 1024
	}
	r.inflight = int64(m1["profefe_operator_captures_inflight"])
	r.spooled = int64(m1["profefe_operator_spool_profiles"])
	r.cpu = c1 - c0
	r.rate = float64(r.ok) / r.seconds
	if prof != nil {
		prof.wait()
		s.perf = append(s.perf, prof.summary(fmt.Sprintf("operator %s, %d pods @every 1s: %d delivered, %.2f CPU-s",
			typ, k*len(s.targets), r.ok, r.cpu)))
	}
	log.Printf("operator: %s window done: %d delivered, %d captured; inflight %v, spool %v profiles; slowest /metrics %v", typ, r.ok, r.captured,
		m1["profefe_operator_captures_inflight"], m1["profefe_operator_spool_profiles"], r.maxScrape.Round(time.Millisecond))
	if r.ok == 0 {
		return r, fmt.Errorf("the operator delivered no %s profile; log tail:\n%s", typ, op.proc.Tail(30))
	}
	return r, nil
}

// ---------------------------------------------------------------- perf

// perfRec is a perf(1) recording of one operator window, attached to the
// running process (-p), so the operator's pid and /proc figures stay its own.
// The sampling itself costs the operator some kernel time: compare CPU-s
// figures from runs with and without -perf only with care.
type perfRec struct {
	cmd  *exec.Cmd
	file string
	done bool
	err  error
}

// startPerf samples pid at 999 Hz, without call graphs (the operator and the
// distribution's libraries are built without frame pointers), for the
// window's length.
func (s *b) startPerf(pid int, name string) (*perfRec, error) {
	if err := os.MkdirAll(s.o.perfDir, 0o755); err != nil {
		return nil, err
	}
	p := &perfRec{file: filepath.Join(s.o.perfDir, "operator-"+name+".perf.data")}
	p.cmd = exec.CommandContext(s.ctx, "perf", "record", "-q", "-F", "999", "-p", strconv.Itoa(pid),
		"-o", p.file, "--", "sleep", fmt.Sprintf("%.1f", s.o.seconds))
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("-perf: %w", err)
	}
	log.Printf("perf: recording pid %d into %s", pid, p.file)
	return p, nil
}

func (p *perfRec) wait() {
	if !p.done {
		p.done = true
		p.err = p.cmd.Wait()
	}
}

// summary is perf report's share of samples per library and the top
// symbols, indented under a title.
func (p *perfRec) summary(title string) string {
	var w strings.Builder
	fmt.Fprintf(&w, "perf profile: %s (%s)\n", title, p.file)
	if p.err != nil {
		fmt.Fprintf(&w, "  perf record failed: %v\n", p.err)
		return w.String()
	}
	for _, sort := range []struct {
		keys  string
		limit string
		lines int
	}{{"dso", "1", 12}, {"dso,sym", "0.7", 30}} {
		out, err := exec.Command("perf", "report", "-i", p.file, "--stdio", "--no-children", "-q",
			"--sort", sort.keys, "--percent-limit", sort.limit).Output()
		if err != nil {
			fmt.Fprintf(&w, "  perf report --sort %s: %v\n", sort.keys, err)
			continue
		}
		n := 0
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			if n++; n > sort.lines {
				break
			}
			fmt.Fprintf(&w, "  %s\n", strings.Join(strings.Fields(l), " "))
		}
	}
	return w.String()
}

// ---------------------------------------------------------------- memory

// rssOp is one operator binary measured by the memory run.
type rssOp struct {
	label, bin   string
	op           *operator
	rss0, rssPol int64
	rss1         int64
}

// runRSS watches only its own namespace (--namespace), so it starts from
// an empty cache. It creates the policies first and reads RSS once they
// are cached, then the pods: the growth in each phase is the steady cost
// of a policy and of a pod, reported apart. A second, fresh operator that
// LISTs them all at start shows the cost of the initial list. With
// -base-operator both binaries watch the same objects at once, then each
// starts fresh in turn (neither leads: both write the policies' status,
// and each sees the other's writes as updates).
func (s *b) runRSS() error {
	if err := s.cp.CreateNamespace(s.ctx, rssNS, nil); err != nil {
		return err
	}
	ops := []*rssOp{{label: "operator", bin: s.o.operator}}
	if s.o.baseOperator != "" {
		ops = append(ops, &rssOp{label: "base operator", bin: s.o.baseOperator})
	}
	for i, r := range ops {
		op, err := s.startOperatorBin(fmt.Sprintf("operator-rss-%d", i), r.bin, "--namespace", rssNS)
		if err != nil {
			return err
		}
		defer op.stop()
		r.op = op
		log.Printf("memory: %s is %s", r.label, r.bin)
	}
	if err := sleep(s.ctx, 2); err != nil {
		return err
	}
	for _, r := range ops {
		rss0, _, err := procRSS(r.op.pid())
		if err != nil {
			return err
		}
		r.rss0 = rss0
		log.Printf("memory: %s RSS %.1f MiB with no pods (%s)", r.label, mib(rss0), rssBreakdown(r.op.pid()))
	}
	log.Printf("memory: creating %d policies (suspended), then %d pods, %d requests at a time", s.o.rssPolicies, s.o.rssPods, s.o.workers)
	t0 := time.Now()
	err := parallel(s.ctx, "policies created", s.o.workers, s.o.rssPolicies, func(i int) error {
		_, err := s.cp.Create(s.ctx, "/apis/profefe.com/v1alpha1/namespaces/"+rssNS+"/profilingpolicies",
			policyObject(rssNS, fmt.Sprintf("rss-%d", i), map[string]string{"app": "rss"}, "@hourly", "heap", true))
		return err
	})
	if err != nil {
		return err
	}
	log.Printf("memory: %d policies created in %v", s.o.rssPolicies, time.Since(t0).Round(time.Second))
	for _, r := range ops {
		rss, _, err := s.settledRSS(r.op, 0)
		if err != nil {
			return err
		}
		r.rssPol = rss
	}
	t0 = time.Now()
	ips := make([]string, s.o.rssPods)
	for i := range ips {
		ips[i] = harness.AllocIP()
	}
	err = parallel(s.ctx, "pods created and Running", s.o.workers, s.o.rssPods, func(i int) error {
		return s.createPod(rssNS, fmt.Sprintf("rss-%05d", i), map[string]string{"app": "rss"}, ips[i], nil)
	})
	if err != nil {
		return err
	}
	log.Printf("memory: %d pods created and Running in %v", s.o.rssPods, time.Since(t0).Round(time.Second))
	log.Printf("memory: control plane: %s", s.cpUsage())
	n, np := float64(s.o.rssPods), float64(s.o.rssPolicies)
	for _, r := range ops {
		rss1, hwm1, err := s.settledRSS(r.op, n)
		if err != nil {
			return err
		}
		r.rss1 = rss1
		s.row(fmt.Sprintf("%s RSS, %d pods + %d policies, watched", r.label, s.o.rssPods, s.o.rssPolicies), fmt.Sprintf("%.1f MiB", mib(rss1)),
			fmt.Sprintf("%.1f MiB before; VmHWM %.1f MiB; %s", mib(r.rss0), mib(hwm1), rssBreakdown(r.op.pid())))
		if np > 0 {
			s.row("  RSS per policy, watched", fmt.Sprintf("%.0f B", float64(r.rssPol-r.rss0)/np),
				fmt.Sprintf("%d policies: %.1f MiB", s.o.rssPolicies, mib(r.rssPol-r.rss0)))
		}
		per1 := float64(rss1-r.rssPol) / n
		s.row("  RSS per pod, watched", fmt.Sprintf("%.0f B", per1),
			fmt.Sprintf("%d pods: %.1f MiB; 10k pods at this rate: %.1f MiB", s.o.rssPods, mib(rss1-r.rssPol), mib(int64(per1*10000))))
		r.op.stop()
	}
	for i, r := range ops {
		op2, err := s.startOperatorBin(fmt.Sprintf("operator-rss-fresh-%d", i), r.bin, "--namespace", rssNS)
		if err != nil {
			return err
		}
		rss2, hwm2, err := s.settledRSS(op2, n)
		if err != nil {
			op2.stop()
			return err
		}
		s.row(fmt.Sprintf("%s RSS, %d pods + %d policies, fresh start", r.label, s.o.rssPods, s.o.rssPolicies), fmt.Sprintf("%.1f MiB", mib(rss2)),
			fmt.Sprintf("VmHWM %.1f MiB; %s", mib(hwm2), rssBreakdown(op2.pid())))
		s.row("  RSS over an empty operator, fresh start", fmt.Sprintf("%.1f MiB", mib(rss2-r.rss0)),
			fmt.Sprintf("the initial LIST; watched: %.1f MiB", mib(r.rss1-r.rss0)))
		stall := "n/a"
		if m, err := scrape(op2.metrics); err == nil {
			if v, ok := m["profefe_operator_loop_max_stall_seconds"]; ok {
				stall = fmt.Sprintf("%.1f ms", v*1000)
			}
		}
		s.row("  longest event-loop stall, fresh start", stall,
			"profefe_operator_loop_max_stall_seconds over the initial LIST and sync (n/a: no gauge in this build)")
		if m, err := scrape(op2.metrics); err == nil {
			if v, ok := m["profefe_operator_loop_max_stall_cpu_seconds"]; ok {
				s.row("    the same in the loop thread's CPU time", fmt.Sprintf("%.1f ms", v*1000),
					"profefe_operator_loop_max_stall_cpu_seconds: without the time the machine kept the operator off the CPU")
			}
		}
		if err := s.relistRow(op2, r.label, i+1); err != nil {
			op2.stop()
			return err
		}
		op2.stop()
	}
	return nil
}

// scaled is base plus 6 ms per object of the memory run (a policy counts
// as 10 pods: each is reconciled against every pod and its status written):
// how long an operator may take to list, cache or settle them on a loaded
// 2-core machine. 100,000 pods + 10,000 policies: base + 20 min. At that
// scale a watching operator falls behind while the pods are created, gets
// 410 Gone and relists, and one relist took 5-8 min (2026-12-02); 2 ms
// an object was too short.
func (s *b) scaled(base time.Duration) time.Duration {
	return base + time.Duration(s.o.rssPods+10*s.o.rssPolicies)*6*time.Millisecond
}

// settledRSS waits until op caches want pods and the policies, lets it
// settle for 3 s, and returns its VmRSS and VmHWM.
func (s *b) settledRSS(op *operator, want float64) (rss, hwm int64, err error) {
	err = poll(s.ctx, s.scaled(120*time.Second), op.proc.Name+" caches every pod and policy", func() error {
		m, err := scrape(op.metrics)
		if err != nil {
			return err
		}
		if m["profefe_operator_pods_cached"] < want || m["profefe_operator_policies"] < float64(s.o.rssPolicies) {
			return fmt.Errorf("pods_cached %v, policies %v", m["profefe_operator_pods_cached"], m["profefe_operator_policies"])
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if err := sleep(s.ctx, 3); err != nil {
		return 0, 0, err
	}
	if rss, err = s.steadyRSS(op); err != nil {
		return 0, 0, err
	}
	_, hwm, err = procRSS(op.pid())
	if err == nil {
		log.Printf("memory: %s RSS %.1f MiB; largest mappings: %s", op.proc.Name, mib(rss), bigMappings(op.pid(), 4))
		log.Printf("memory: %s threads: %s", op.proc.Name, procField(op.pid(), "Threads:"))
	}
	return rss, hwm, err
}

// steadyRSS reads op's VmRSS every 5 s until four reads in a row (15 s)
// lie within 1% (or 256 KiB) of each other, and returns the last: with
// thousands of policies the operator is still reconciling and writing
// statuses for minutes after its caches are full. It gives up waiting
// (and returns the last read) after s.scaled(30 s), saying so.
func (s *b) steadyRSS(op *operator) (int64, error) {
	var reads []int64
	t0 := time.Now()
	limit := s.scaled(30 * time.Second)
	cpu0, _ := procCPU(op.pid())
	for {
		rss, _, err := procRSS(op.pid())
		if err != nil {
			return 0, err
		}
		if reads = append(reads, rss); len(reads) > 4 {
			reads = reads[1:]
		}
		lo, hi := reads[0], reads[0]
		for _, r := range reads {
			lo, hi = min(lo, r), max(hi, r)
		}
		if len(reads) == 4 && hi-lo <= max(hi/100, 256<<10) {
			return rss, nil
		}
		if time.Since(t0) > limit {
			log.Printf("memory: %s RSS still moving after %v (%.1f..%.1f MiB over the last reads); taking %.1f MiB",
				op.proc.Name, limit, mib(lo), mib(hi), mib(rss))
			return rss, nil
		}
		if len(reads) > 1 && int(time.Since(t0)/time.Second)%30 < 5 {
			cpu, _ := procCPU(op.pid())
			log.Printf("  %s settling: RSS %.1f MiB, %.1f CPU-s in %v", op.proc.Name, mib(rss), cpu-cpu0, time.Since(t0).Round(time.Second))
		}
		if err := sleep(s.ctx, 5); err != nil {
			return 0, err
		}
	}
}

// cpUsage is the RSS of kube-apiserver and etcd and the size of etcd's
// database (its default quota is 2 GiB; writes fail past it).
func (s *b) cpUsage() string {
	var parts []string
	for _, p := range []*harness.Proc{s.cp.APIServerProc(), s.cp.EtcdProc()} {
		if p == nil || p.Cmd.Process == nil {
			continue
		}
		if rss, _, err := procRSS(p.Cmd.Process.Pid); err == nil {
			parts = append(parts, fmt.Sprintf("%s RSS %.0f MiB", p.Name, mib(rss)))
		}
	}
	if fi, err := os.Stat(filepath.Join(s.cp.Dir, "etcd", "member", "snap", "db")); err == nil {
		parts = append(parts, fmt.Sprintf("etcd db %.0f MiB", mib(fi.Size())))
	}
	return strings.Join(parts, ", ")
}

func procField(pid int, key string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			return strings.TrimSpace(strings.TrimPrefix(line, key))
		}
	}
	return "?"
}

// parallel runs f(0..n-1) on `workers` goroutines, stopping at the first
// error. Every 10 s it logs how many are done ("what": e.g. "pods
// created"), so a long step is never silent.
func parallel(ctx context.Context, what string, workers, n int, f func(i int) error) error {
	ch := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	var done atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				} else {
					done.Add(1)
				}
			}
		}()
	}
	t0 := time.Now()
	stop := make(chan struct{})
	go func() {
		tk := time.NewTicker(10 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				d := done.Load()
				el := time.Since(t0)
				log.Printf("  %s: %d/%d in %v (%.0f/s)", what, d, n, el.Round(time.Second), float64(d)/el.Seconds())
			}
		}
	}()
	for i := 0; i < n; i++ {
		mu.Lock()
		err := first
		mu.Unlock()
		if err != nil || ctx.Err() != nil {
			break
		}
		ch <- i
	}
	close(ch)
	wg.Wait()
	close(stop)
	if first != nil {
		return first
	}
	return ctx.Err()
}

// ---------------------------------------------------------------- report

func (s *b) report() {
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	var w strings.Builder
	fmt.Fprintf(&w, "profefe-operator bench, %s, host %s, %d CPUs, load %s\n", time.Now().UTC().Format(time.RFC3339),
		host, numCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintf(&w, "run took %v (cap -timeout %v)\n", time.Since(s.start).Round(time.Second), s.o.timeout)
	fmt.Fprintf(&w, "%d pproftarget processes, %.0fs windows after %.0fs warm-up, relay %d workers, operator %s\n",
		s.o.pods, s.o.seconds, s.o.warmup, s.o.conc, strings.Join(append([]string{"--spread-window 1s"}, s.o.opFlags...), " "))
	wn, wv := 0, 0
	for _, r := range s.rows {
		wn, wv = max(wn, len(r[0])), max(wv, len(r[1]))
	}
	for _, r := range s.rows {
		fmt.Fprintf(&w, "  %-*s  %*s  %s\n", wn, r[0], wv, r[1], r[2])
	}
	for _, n := range s.notes {
		fmt.Fprintf(&w, "note: %s\n", n)
	}
	for _, p := range s.perf {
		w.WriteString(p)
	}
	fmt.Print("\n" + w.String())
	if s.o.out != "" {
		if err := os.WriteFile(s.o.out, []byte(w.String()), 0o644); err != nil {
			log.Print(err)
		} else {
			log.Printf("report written to %s", s.o.out)
		}
	}
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "\nprocessor") + 1
}

// ---------------------------------------------------------------- helpers

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func httpGet(url string) (int, string) {
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return resp.StatusCode, string(b)
}

// scrapeTimed scrapes and says how long /metrics took to answer.
func scrapeTimed(url string) (map[string]float64, time.Duration, error) {
	t := time.Now()
	m, err := scrape(url)
	return m, time.Since(t), err
}

// scrape reads a Prometheus text page into "name{labels}" -> value.
func scrape(url string) (map[string]float64, error) {
	code, body := httpGet(url)
	if code != 200 {
		return nil, fmt.Errorf("GET %s: %d %.200s", url, code, body)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m, nil
}

// procCPU returns utime+stime of pid in seconds (/proc/PID/stat).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the ")" closing comm: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clkTck, nil
}

const clkTck = 100 // USER_HZ on Linux

// rssBreakdown returns the RssAnon/RssFile split from /proc/PID/status.
func rssBreakdown(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "RssAnon:" || f[0] == "RssFile:") {
			kb, _ := strconv.ParseFloat(f[1], 64)
			parts = append(parts, fmt.Sprintf("%s %.1f MiB", strings.TrimSuffix(f[0], ":"), kb/1024))
		}
	}
	return strings.Join(parts, ", ")
}

// bigMappings names the largest resident mappings of pid (/proc/PID/smaps),
// e.g. "[heap] 30.1 MiB, anon 8.0 MiB": where the RSS is.
func bigMappings(pid, n int) string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return ""
	}
	defer f.Close()
	type mp struct {
		name string
		rss  int64
	}
	var ms []mp
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			name := "anon"
			if len(fs) >= 6 {
				name = filepath.Base(fs[5])
			}
			ms = append(ms, mp{name: name})
		} else if len(fs) >= 2 && fs[0] == "Rss:" && len(ms) > 0 {
			kb, _ := strconv.ParseInt(fs[1], 10, 64)
			ms[len(ms)-1].rss = kb * 1024
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].rss > ms[j].rss })
	var out []string
	for i := 0; i < len(ms) && i < n; i++ {
		out = append(out, fmt.Sprintf("%s %.1f MiB", ms[i].name, mib(ms[i].rss)))
	}
	return strings.Join(out, ", ")
}

// procRSS returns VmRSS and VmHWM of pid in bytes.
func procRSS(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				rss = kb * 1024
			} else {
				hwm = kb * 1024
			}
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

func sleep(ctx context.Context, secs float64) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(secs * float64(time.Second))):
		return nil
	}
}

// permanent wraps an error that poll must not retry.
type permanent struct{ error }

// poll calls f every 250 ms until it returns nil or a permanent error, or
// the timeout passes. Every 15 s it logs what it waits for and f's last
// answer, so a long wait is never silent.
func poll(ctx context.Context, timeout time.Duration, what string, f func() error) error {
	t0 := time.Now()
	deadline, said := t0.Add(timeout), t0
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Since(said) >= 15*time.Second {
			said = time.Now()
			log.Printf("  waiting %v/%v for %s: %v", said.Sub(t0).Round(time.Second), timeout, what, err)
		}
		var p permanent
		if errors.As(err, &p) {
			return p.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not true after %v: %w", what, timeout, err)
		}
		if e := sleep(ctx, 0.25); e != nil {
			return e
		}
	}
}
