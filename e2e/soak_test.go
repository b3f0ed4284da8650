package e2e

// TestSoakChurn: one operator (on its ServiceAccount token and the shipped
// RBAC, as in operator_test.go) under minutes of seeded random churn of
// policies and pods against the real API server, real profefe and real
// pproftarget pods; then what profefe stored is compared with what the
// operator reports and with what the test did. See e2e/README.md.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"profefe-operator/e2e/harness"
)

const (
	soakMaxPolicies = 6
	soakMaxPods     = 8
	soakRSSLimit    = 64 << 20        // bytes
	soakProbeLimit  = 2 * time.Second // a slower /healthz answer fails
	// soakGrace: a capture may start this long after the API server
	// acknowledged the change that ends it (watch delivery, which is
	// milliseconds, plus a capture already waiting on its spread timer,
	// under the 200 ms --spread-window).
	soakGrace = time.Second
)

var soakPeriods = []int{1, 2, 5} // @every Ns

// soakSelectors are the label selectors policies pick from; pods carry
// app in {a,b,c} and tier in {x,y}.
var soakSelectors = []map[string]string{
	{"app": "a"}, {"app": "b"}, {"app": "c"}, {"tier": "x"}, {"tier": "y"},
	{"app": "a", "tier": "x"}, {"app": "b", "tier": "y"},
}

type soakPolicy struct {
	name      string
	uid       string
	period    int
	selector  map[string]string
	types     []string // heap allocs goroutine cpu
	suspended bool
	alive     bool
	// periods in force: each from the moment the change was sent
	periods []periodAt
}

type periodAt struct {
	sent, done time.Time
	period     int
}

type soakPod struct {
	name    string
	ip      string
	target  *harness.Target
	labels  map[string]string
	enabled bool // profefe.com/enable: "true"
	alive   bool
}

// interval is a span in which a (policy, pod) pair, or a pod, was possibly
// capturable: from when the change that started it was sent to when the
// API server acknowledged the change that ended it (zero: still open).
type interval struct {
	from, to time.Time
	endCause string
}

type soakEvent struct {
	sent, done time.Time
	what       string
}

type soak struct {
	t     *testing.T
	e     *env
	ns    string
	seed  int64
	rnd   *rand.Rand
	start time.Time
	owner harness.OwnerRef

	policies []*soakPolicy
	pods     []*soakPod
	pairs    map[[2]string][]interval // (policy, pod)
	podLife  map[string][]interval    // pod alive and opted in
	events   []soakEvent
	counts   map[string]int

	deletedPolicies int
}

func (s *soak) fail(format string, args ...any) {
	s.t.Helper()
	s.t.Errorf("[seed %d] "+format, append([]any{s.seed}, args...)...)
}

// rel is t as seconds since the churn started, padded so lines sort.
func (s *soak) rel(t time.Time) string { return fmt.Sprintf("+%7.3fs", t.Sub(s.start).Seconds()) }

func (s *soak) policyPath(name string) string {
	p := "/apis/profefe.com/v1alpha1/namespaces/" + s.ns + "/profilingpolicies"
	if name != "" {
		p += "/" + name
	}
	return p
}

func (s *soak) livePolicies() []*soakPolicy {
	var out []*soakPolicy
	for _, p := range s.policies {
		if p.alive {
			out = append(out, p)
		}
	}
	return out
}

func (s *soak) livePods() []*soakPod {
	var out []*soakPod
	for _, p := range s.pods {
		if p.alive {
			out = append(out, p)
		}
	}
	return out
}

func selects(q *soakPolicy, p *soakPod) bool {
	if !q.alive || q.suspended || !p.alive || !p.enabled {
		return false
	}
	for k, v := range q.selector {
		if p.labels[k] != v {
			return false
		}
	}
	return true
}

func (s *soak) selected() map[[2]string]bool {
	m := map[[2]string]bool{}
	for _, q := range s.policies {
		for _, p := range s.pods {
			if selects(q, p) {
				m[[2]string{q.name, p.name}] = true
			}
		}
	}
	return m
}

func (s *soak) capturable() map[string]bool {
	m := map[string]bool{}
	for _, p := range s.pods {
		if p.alive && p.enabled {
			m[p.name] = true
		}
	}
	return m
}

func (s *soak) selectedBy(p *soakPod) []string {
	var out []string
	for _, q := range s.policies {
		if selects(q, p) {
			out = append(out, fmt.Sprintf("%s%v", q.name, q.selector))
		}
	}
	return out
}

// mutate runs one API call, then applies change to the model and updates
// the capturable intervals: a pair that becomes selected opens at `sent`,
// one that stops being selected closes at `done` (both the lenient end).
func (s *soak) mutate(what string, call func(ctx context.Context) error, change func()) {
	s.t.Helper()
	beforePairs, beforePods := s.selected(), s.capturable()
	sent := time.Now()
	ctx, cancel := context.WithTimeout(s.t.Context(), 30*time.Second)
	err := call(ctx)
	cancel()
	done := time.Now()
	if err != nil {
		s.t.Fatalf("[seed %d] %s: %v", s.seed, what, err)
	}
	change()
	afterPairs, afterPods := s.selected(), s.capturable()
	for k := range afterPairs {
		if !beforePairs[k] {
			s.pairs[k] = append(s.pairs[k], interval{from: sent})
		}
	}
	for k := range beforePairs {
		if !afterPairs[k] {
			iv := s.pairs[k]
			iv[len(iv)-1].to, iv[len(iv)-1].endCause = done, what
		}
	}
	for k := range afterPods {
		if !beforePods[k] {
			s.podLife[k] = append(s.podLife[k], interval{from: sent})
		}
	}
	for k := range beforePods {
		if !afterPods[k] {
			iv := s.podLife[k]
			iv[len(iv)-1].to, iv[len(iv)-1].endCause = done, what
		}
	}
	s.events = append(s.events, soakEvent{sent, done, what})
}

func (s *soak) profilesSpec(types []string) []map[string]any {
	var out []map[string]any
	for _, typ := range types {
		if typ == "cpu" {
			out = append(out, map[string]any{"type": "cpu", "seconds": 1})
		} else {
			out = append(out, map[string]any{"type": typ})
		}
	}
	return out
}

func (s *soak) randTypes(period int) []string {
	all := []string{"heap", "allocs", "goroutine"}
	if period >= 2 { // a CPU profile must be shorter than the period
		all = append(all, "cpu")
	}
	var out []string
	for len(out) == 0 {
		for _, typ := range all {
			if s.rnd.Intn(2) == 0 {
				out = append(out, typ)
			}
		}
	}
	return out
}

func (s *soak) randLabels() map[string]string {
	return map[string]string{"app": []string{"a", "b", "c"}[s.rnd.Intn(3)], "tier": []string{"x", "y"}[s.rnd.Intn(2)]}
}

func (s *soak) createPolicy() {
	q := &soakPolicy{name: fmt.Sprintf("p%02d", len(s.policies)), period: soakPeriods[s.rnd.Intn(len(soakPeriods))],
		selector: soakSelectors[s.rnd.Intn(len(soakSelectors))]}
	q.types = s.randTypes(q.period)
	obj := map[string]any{
		"apiVersion": "profefe.com/v1alpha1", "kind": "ProfilingPolicy",
		"metadata": map[string]any{"name": q.name, "namespace": s.ns},
		"spec": map[string]any{"schedule": fmt.Sprintf("@every %ds", q.period),
			"selector": map[string]any{"matchLabels": q.selector}, "profiles": s.profilesSpec(q.types)},
	}
	var sent time.Time
	s.mutate(fmt.Sprintf("policy %s created (@every %ds, %v, %v)", q.name, q.period, q.selector, q.types),
		func(ctx context.Context) error {
			sent = time.Now()
			o, err := s.e.cp.Create(ctx, s.policyPath(""), obj)
			if err == nil {
				q.uid = uidOfObj(o)
			}
			return err
		}, func() {
			q.alive = true
			q.periods = append(q.periods, periodAt{sent: sent, done: time.Now(), period: q.period})
			s.policies = append(s.policies, q)
		})
	s.counts["policies created"]++
}

func uidOfObj(o harness.Object) string {
	m, _ := o["metadata"].(map[string]any)
	u, _ := m["uid"].(string)
	return u
}

func (s *soak) patchPolicy(q *soakPolicy, what string, spec map[string]any, change func()) {
	s.mutate("policy "+q.name+" "+what, func(ctx context.Context) error {
		_, err := s.e.cp.Patch(ctx, s.policyPath(q.name), map[string]any{"spec": spec})
		return err
	}, change)
}

func (s *soak) editSchedule(q *soakPolicy) {
	period := soakPeriods[s.rnd.Intn(len(soakPeriods))]
	spec := map[string]any{"schedule": fmt.Sprintf("@every %ds", period)}
	types := q.types
	if period < 2 && slices.Contains(types, "cpu") {
		types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return t == "cpu" })
		if len(types) == 0 {
			types = []string{"heap"}
		}
		spec["profiles"] = s.profilesSpec(types)
	}
	sent := time.Now()
	s.patchPolicy(q, fmt.Sprintf("schedule @every %ds -> @every %ds, profiles %v", q.period, period, types), spec, func() {
		q.period, q.types = period, types
		q.periods = append(q.periods, periodAt{sent: sent, done: time.Now(), period: period})
	})
	s.counts["schedule edits"]++
}

func (s *soak) editSelector(q *soakPolicy) {
	sel := soakSelectors[s.rnd.Intn(len(soakSelectors))]
	ml := map[string]any{}
	for k := range q.selector {
		ml[k] = nil
	}
	for k, v := range sel {
		ml[k] = v
	}
	s.patchPolicy(q, fmt.Sprintf("selector %v -> %v", q.selector, sel),
		map[string]any{"selector": map[string]any{"matchLabels": ml}}, func() { q.selector = sel })
	s.counts["selector edits"]++
}

func (s *soak) editProfiles(q *soakPolicy) {
	types := s.randTypes(q.period)
	s.patchPolicy(q, fmt.Sprintf("profiles %v -> %v", q.types, types),
		map[string]any{"profiles": s.profilesSpec(types)}, func() { q.types = types })
	s.counts["profile edits"]++
}

func (s *soak) toggleSuspend(q *soakPolicy) {
	to := !q.suspended
	s.patchPolicy(q, fmt.Sprintf("suspend=%v", to), map[string]any{"suspend": to}, func() { q.suspended = to })
	if to {
		s.counts["suspends"]++
	} else {
		s.counts["resumes"]++
	}
}

func (s *soak) deletePolicy(q *soakPolicy) {
	s.mutate("policy "+q.name+" deleted", func(ctx context.Context) error {
		return s.e.cp.Delete(ctx, s.policyPath(q.name))
	}, func() { q.alive = false })
	s.deletedPolicies++
	s.counts["policies deleted"]++
}

func (s *soak) createPod() {
	p := &soakPod{name: fmt.Sprintf("pod%03d", len(s.pods)), ip: harness.AllocIP(), labels: s.randLabels(),
		enabled: s.rnd.Intn(5) != 0}
	// A real target per pod, kept until the test ends: a capture started
	// after the pod was deleted would still succeed and show.
	p.target = harness.TestTarget(s.t, p.ip, 6060, "-cpu=0.02", "-goroutines=5", "-retain-mb=1", "-log-requests")
	s.mutate(fmt.Sprintf("pod %s created (%v, enable=%v, ip %s)", p.name, p.labels, p.enabled, p.ip), func(ctx context.Context) error {
		hp := harness.Pod{Namespace: s.ns, Name: p.name, Labels: p.labels, Port: 6060, Owners: []harness.OwnerRef{s.owner},
			Annotations: map[string]string{"profefe.com/enable": strconv.FormatBool(p.enabled)}}
		if _, err := s.e.cp.CreatePod(ctx, hp); err != nil {
			return err
		}
		return s.e.cp.MarkRunning(ctx, s.ns, p.name, p.ip)
	}, func() {
		p.alive = true
		s.pods = append(s.pods, p)
	})
	s.counts["pods created"]++
}

func (s *soak) podPath(name string) string { return "/api/v1/namespaces/" + s.ns + "/pods/" + name }

func (s *soak) relabelPod(p *soakPod) {
	l := s.randLabels()
	s.mutate(fmt.Sprintf("pod %s relabelled %v -> %v (selected by %v)", p.name, p.labels, l, s.selectedBy(p)), func(ctx context.Context) error {
		_, err := s.e.cp.Patch(ctx, s.podPath(p.name), map[string]any{"metadata": map[string]any{"labels": l}})
		return err
	}, func() { p.labels = l })
	s.counts["pod relabels"]++
}

func (s *soak) annotatePod(p *soakPod) {
	to := !p.enabled
	what := "opted in (profefe.com/enable=true)"
	if !to {
		what = "opted out (profefe.com/enable=false)"
		s.counts["pod opt-outs"]++
	} else {
		s.counts["pod opt-ins"]++
	}
	s.mutate(fmt.Sprintf("pod %s %s; labels %v, selected by %v", p.name, what, p.labels, s.selectedBy(p)), func(ctx context.Context) error {
		_, err := s.e.cp.Patch(ctx, s.podPath(p.name), map[string]any{"metadata": map[string]any{
			"annotations": map[string]string{"profefe.com/enable": strconv.FormatBool(to)}}})
		return err
	}, func() { p.enabled = to })
}

func (s *soak) deletePod(p *soakPod) {
	s.mutate(fmt.Sprintf("pod %s deleted; labels %v, enable=%v, selected by %v", p.name, p.labels, p.enabled, s.selectedBy(p)),
		func(ctx context.Context) error { return s.e.cp.DeletePod(ctx, s.ns, p.name) },
		func() { p.alive = false })
	s.counts["pods deleted"]++
}

// step does one random change.
func (s *soak) step() {
	pols, pods := s.livePolicies(), s.livePods()
	type action struct {
		w  int
		do func()
	}
	pickQ := func() *soakPolicy { return pols[s.rnd.Intn(len(pols))] }
	pickP := func() *soakPod { return pods[s.rnd.Intn(len(pods))] }
	var acts []action
	if len(pols) < soakMaxPolicies {
		acts = append(acts, action{4, s.createPolicy})
	}
	if len(pols) >= 3 {
		acts = append(acts, action{3, func() { s.deletePolicy(pickQ()) }})
	}
	if len(pols) > 0 {
		acts = append(acts, action{2, func() { s.editSchedule(pickQ()) }},
			action{2, func() { s.editSelector(pickQ()) }},
			action{2, func() { s.editProfiles(pickQ()) }},
			action{2, func() { s.toggleSuspend(pickQ()) }})
	}
	if len(pods) < soakMaxPods {
		acts = append(acts, action{3, s.createPod})
	}
	if len(pods) >= 3 {
		acts = append(acts, action{1, func() { s.deletePod(pickP()) }})
	}
	if len(pods) > 0 {
		acts = append(acts, action{2, func() { s.relabelPod(pickP()) }},
			action{2, func() { s.annotatePod(pickP()) }})
	}
	total := 0
	for _, a := range acts {
		total += a.w
	}
	n := s.rnd.Intn(total)
	for _, a := range acts {
		if n < a.w {
			a.do()
			return
		}
		n -= a.w
	}
}

// soakMonitor samples the operator while the churn runs.
type soakMonitor struct {
	mu          sync.Mutex
	probes      int
	probeFails  []string
	maxProbe    time.Duration
	firstFail   time.Time
	lastOK      time.Time
	rssSamples  int
	maxRSS      int64
	rssFails    []string
	died        string
	statusN     int
	statusFails []string
	lastCaps    map[string]int64 // uid -> capturesSucceeded
	capsName    map[string]string
}

func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func (s *soak) monitor(ctx context.Context, op *operator, wg *sync.WaitGroup) *soakMonitor {
	m := &soakMonitor{lastCaps: map[string]int64{}, capsName: map[string]string{}, lastOK: time.Now()}
	client := &http.Client{Timeout: soakProbeLimit + time.Second}
	wg.Add(3)
	go func() { // /healthz every 250 ms
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			t0 := time.Now()
			resp, err := client.Get("http://" + op.healthAddr + "/healthz")
			d := time.Since(t0)
			code := 0
			if err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			m.mu.Lock()
			m.probes++
			m.maxProbe = max(m.maxProbe, d)
			if err != nil || code != 200 || d > soakProbeLimit {
				if m.firstFail.IsZero() {
					m.firstFail = t0
				}
				m.probeFails = append(m.probeFails, fmt.Sprintf("%s /healthz: HTTP %d after %v (err %v; policies deleted so far %d)",
					s.rel(t0), code, d.Round(time.Millisecond), err, s.deletedPoliciesAt()))
			} else {
				m.lastOK = t0
			}
			m.mu.Unlock()
		}
	}()
	go func() { // RSS every second
		defer wg.Done()
		pid := op.proc.Cmd.Process.Pid
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rss, err := readRSS(pid)
			m.mu.Lock()
			if exited, werr := op.proc.Exited(); exited {
				if m.died == "" {
					m.died = fmt.Sprintf("%s operator exited: %v", s.rel(time.Now()), werr)
				}
			} else if err != nil {
				m.rssFails = append(m.rssFails, fmt.Sprintf("%s reading RSS: %v", s.rel(time.Now()), err))
			} else {
				m.rssSamples++
				m.maxRSS = max(m.maxRSS, rss)
				if rss > soakRSSLimit {
					m.rssFails = append(m.rssFails, fmt.Sprintf("%s VmRSS %.1f MiB > %d MiB", s.rel(time.Now()), float64(rss)/(1<<20), soakRSSLimit>>20))
				}
			}
			m.mu.Unlock()
		}
	}()
	go func() { // policies' status every second
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var list struct {
				Items []struct {
					Metadata struct{ Name, UID string }
					Status   struct {
						CapturesSucceeded int64 `json:"capturesSucceeded"`
					}
				}
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := s.e.cp.Do(rctx, http.MethodGet, s.policyPath(""), nil, &list)
			cancel()
			if err != nil {
				continue // the API server is not under test here; ctx may be done
			}
			now := time.Now()
			m.mu.Lock()
			m.statusN++
			for _, it := range list.Items {
				prev, ok := m.lastCaps[it.Metadata.UID]
				if ok && it.Status.CapturesSucceeded < prev {
					m.statusFails = append(m.statusFails, fmt.Sprintf("%s policy %s (uid %s): status.capturesSucceeded went back from %d to %d",
						s.rel(now), it.Metadata.Name, it.Metadata.UID, prev, it.Status.CapturesSucceeded))
				}
				m.lastCaps[it.Metadata.UID] = it.Status.CapturesSucceeded
				m.capsName[it.Metadata.UID] = it.Metadata.Name
			}
			m.mu.Unlock()
		}
	}()
	return m
}

var soakDeleted struct {
	sync.Mutex
	n int
}

func (s *soak) deletedPoliciesAt() int {
	soakDeleted.Lock()
	defer soakDeleted.Unlock()
	return soakDeleted.n
}

func envInt(t *testing.T, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// soakProfile is one stored profile as the checks see it.
type soakProfile struct {
	id, policy, pod, typ string
	created              time.Time
}

func TestSoakChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	seed := envInt(t, "PPOP_SOAK_SEED", time.Now().UnixNano())
	churn := time.Duration(envInt(t, "PPOP_SOAK_SECONDS", 150)) * time.Second
	t.Logf("soak: seed %d (rerun with PPOP_SOAK_SEED=%d), churn %v", seed, seed, churn)

	e := newEnv(t)
	s := &soak{t: t, e: e, ns: e.cp.TestNamespace(t), seed: seed, rnd: rand.New(rand.NewSource(seed)),
		pairs: map[[2]string][]interval{}, podLife: map[string][]interval{}, counts: map[string]int{}}
	var err error
	if s.owner, err = e.cp.CreateWorkload(t.Context(), s.ns, "Deployment", "soak", map[string]string{"app": "soak"}); err != nil {
		t.Fatal(err)
	}
	op := e.startOperator("operator")
	s.start = time.Now()

	mctx, stopMonitor := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	mon := s.monitor(mctx, op, &wg)
	defer func() { stopMonitor(); wg.Wait() }()

	// Churn: one random change every 100-500 ms.
	deadline := s.start.Add(churn)
	hungSince := time.Time{}
	for time.Now().Before(deadline) {
		s.step()
		soakDeleted.Lock()
		soakDeleted.n = s.deletedPolicies
		soakDeleted.Unlock()
		mon.mu.Lock()
		lastOK := mon.lastOK
		mon.mu.Unlock()
		if time.Since(lastOK) > 15*time.Second {
			hungSince = lastOK
			s.fail("the operator has not answered /healthz since %s (after %d policy deletions): churn stopped early at %s",
				s.rel(hungSince), s.deletedPolicies, s.rel(time.Now()))
			break
		}
		time.Sleep(time.Duration(100+s.rnd.Intn(400)) * time.Millisecond) // churn pacing, not synchronisation
	}
	churnEnd := time.Now()
	t.Logf("soak: churn ran %v: %v", churnEnd.Sub(s.start).Round(time.Second), s.counts)

	// Settle: suspend every live policy, wait until the operator has seen
	// that, and until what it captured has landed.
	responsive := hungSince.IsZero()
	for _, q := range s.livePolicies() {
		if !q.suspended {
			s.toggleSuspend(q)
		}
	}
	var delivered float64
	var stored int
	if responsive {
		for _, q := range s.livePolicies() {
			if err := waitUntil(30*time.Second, "the operator observed the suspension of "+q.name, func() error {
				g := strings.Fields(e.jsonpath(s.ns, q.name, "{.metadata.generation} {.status.observedGeneration}"))
				if len(g) != 2 || g[0] != g[1] {
					return fmt.Errorf("generation / observedGeneration = %v", g)
				}
				return nil
			}); err != nil {
				s.fail("%v", err)
			}
		}
		prev := -2.0
		if err := waitUntil(60*time.Second, "profefe holds exactly the profiles the operator delivered (settled)", func() error {
			inflight := metric(op.metricsAddr, "profefe_operator_captures_inflight")
			spool := metric(op.metricsAddr, "profefe_operator_spool_profiles")
			delivered = max(0, metric(op.metricsAddr, `profefe_operator_deliveries_total{result="ok"}`))
			var err error
			if stored, err = storedProfiles(t, e.pf); err != nil {
				return err
			}
			was := prev
			prev = delivered
			if inflight != 0 || spool > 0 || float64(stored) != delivered || was != delivered {
				return fmt.Errorf("captures in flight %v, spooled %v, deliveries_total{result=\"ok\"} %v (previous poll %v), profefe holds %d",
					inflight, spool, delivered, was, stored)
			}
			return nil
		}); err != nil {
			s.fail("%v", err)
		}
	} else {
		s.fail("not checked: profefe's count against deliveries_total (the operator is unresponsive)")
	}
	stopMonitor()
	wg.Wait()
	settled := time.Now()

	// What profefe holds.
	svcs, err := e.pf.Services(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) > 1 || len(svcs) == 1 && svcs[0] != "soak" {
		s.fail("profefe services %v, want only soak (the pods' Deployment)", svcs)
	}
	var profs []soakProfile
	for _, typ := range profefeTypes {
		ps, err := e.pf.List(t.Context(), harness.ListQuery{Service: "soak", Type: typ,
			From: s.start.Add(-time.Hour), To: time.Now().Add(time.Hour), Limit: 1000000})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ps {
			l := m.LabelMap()
			tk := m.Type
			if l["pprof_type"] != "" {
				tk += "/" + l["pprof_type"]
			}
			if l["namespace"] != s.ns {
				s.fail("profile %s has namespace=%q", m.ID, l["namespace"])
			}
			profs = append(profs, soakProfile{id: m.ID, policy: l["policy"], pod: l["pod"], typ: tk, created: m.CreatedAt})
		}
	}
	t.Logf("soak: profefe holds %d profiles; the operator counts %v delivered ok; deliveries by result: %s",
		len(profs), delivered, metricLines(op.metricsAddr, "profefe_operator_deliveries_total"))

	s.checkSelection(profs)
	s.checkRounds(profs, op)
	s.checkTargets(churnEnd)

	mon.mu.Lock()
	t.Logf("soak: %d /healthz probes (slowest %v), %d RSS samples (max %.1f MiB), %d status samples of %d policies",
		mon.probes, mon.maxProbe.Round(time.Millisecond), mon.rssSamples, float64(mon.maxRSS)/(1<<20), mon.statusN, len(mon.lastCaps))
	report := func(what string, lines []string) {
		if len(lines) == 0 {
			return
		}
		const show = 10
		n, more := len(lines), ""
		if n > show {
			more = fmt.Sprintf("\n\t... and %d more", n-show)
			lines = lines[:show]
		}
		s.fail("%s (%d):\n\t%s%s", what, n, strings.Join(lines, "\n\t"), more)
	}
	report("/healthz probes failed or slower than 2 s", mon.probeFails)
	report("operator RSS", mon.rssFails)
	report("status.capturesSucceeded went backwards", mon.statusFails)
	if mon.died != "" {
		s.fail("%s", mon.died)
	}
	mon.mu.Unlock()
	if exited, werr := op.proc.Exited(); exited {
		s.fail("the operator is not alive at the end: %v", werr)
	}
	t.Logf("soak: done %s after the start (settled %v after the churn)", s.rel(time.Now()), settled.Sub(churnEnd).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("soak: seed %d; the test's changes:\n%s", seed, s.eventLog())
	}
}

func metricLines(addr, prefix string) string {
	_, body := httpGet("http://" + addr + "/metrics")
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}

func (s *soak) eventLog() string {
	var b strings.Builder
	for _, ev := range s.events {
		fmt.Fprintf(&b, "\t%s..%s %s\n", s.rel(ev.sent), s.rel(ev.done), ev.what)
	}
	return b.String()
}

// covered reports whether t lies in one of ivs, each widened by
// [-1 s, +soakGrace]: created_at is the capture's start truncated to the
// second, so it may read up to 1 s before the change that selected it.
func covered(ivs []interval, t time.Time) (bool, *interval) {
	var last *interval
	for i := range ivs {
		iv := &ivs[i]
		if t.Before(iv.from.Add(-time.Second)) {
			continue
		}
		if iv.to.IsZero() || !t.After(iv.to.Add(soakGrace)) {
			return true, nil
		}
		last = iv
	}
	return false, last
}

// checkSelection: every stored profile was captured while its pod was
// selected by its policy (policy alive, not suspended, selector matching,
// pod alive and opted in), or at most soakGrace after the API server
// acknowledged the change that ended that. created_at is the capture's
// start truncated to the second (the operator sends whole seconds), so a
// capture that starts 2 s after is always caught, one 1-2 s after may not
// be; checkTargets checks deleted and opted-out pods to the millisecond.
func (s *soak) checkSelection(profs []soakProfile) {
	var bad []string
	for _, p := range profs {
		ok, last := covered(s.pairs[[2]string{p.policy, p.pod}], p.created)
		if ok {
			continue
		}
		if last == nil {
			bad = append(bad, fmt.Sprintf("profile %s (%s of %s by policy %s, created %s) but %s never selected %s",
				p.id, p.typ, p.pod, p.policy, s.rel(p.created), p.policy, p.pod))
			continue
		}
		bad = append(bad, fmt.Sprintf("profile %s (%s of %s by policy %s) created %s, %.1f s after %q was acknowledged at %s",
			p.id, p.typ, p.pod, p.policy, s.rel(p.created), p.created.Sub(last.to).Seconds(), last.endCause, s.rel(last.to)))
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		shown := bad[:min(len(bad), 15)]
		s.fail("%d profiles captured more than %v after their pod stopped being selected (deleted, opted out, relabelled, policy suspended, edited or deleted):\n\t%s",
			len(bad), soakGrace, strings.Join(shown, "\n\t"))
	}
}

// minPeriod is the shortest @every period of q in force at any time in
// [a, b], counting a change from when it was sent.
func minPeriod(q *soakPolicy, a, b time.Time) int {
	m := 0
	for i, pa := range q.periods {
		end := time.Time{}
		if i+1 < len(q.periods) {
			end = q.periods[i+1].done
		}
		if pa.sent.After(b) || !end.IsZero() && end.Before(a) {
			continue
		}
		if m == 0 || pa.period < m {
			m = pa.period
		}
	}
	return m
}

// soakRound is one round of a policy as the operator's -v 1 log tells it.
type soakRound struct {
	scheduled, started time.Time
}

// rounds reads the operator's -v 1 log: for each policy of the test's
// namespace, its rounds ("round started" with its scheduled time), oldest
// first.
func (s *soak) rounds(op *operator) map[string][]soakRound {
	b, err := os.ReadFile(op.proc.LogPath)
	if err != nil {
		s.fail("reading %s: %v", op.proc.LogPath, err)
	}
	out := map[string][]soakRound{}
	prefix := ` msg="round started" policy=` + s.ns + "/"
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.Index(line, prefix)
		if !strings.HasPrefix(line, "ts=") || i < 0 {
			continue
		}
		// ... policy=<ns>/<name> scheduled=<RFC 3339>
		f := strings.Fields(line[i+len(prefix):])
		started, err1 := time.Parse(time.RFC3339Nano, strings.Fields(line)[0][len("ts="):])
		var sched time.Time
		err2 := fmt.Errorf("no scheduled= in %q", line)
		if len(f) == 2 && strings.HasPrefix(f[1], "scheduled=") {
			sched, err2 = time.Parse(time.RFC3339, f[1][len("scheduled="):])
		}
		if err := errors.Join(err1, err2); err != nil {
			s.fail("operator log: %v", err)
			continue
		}
		out[f[0]] = append(out[f[0]], soakRound{scheduled: sched, started: started})
	}
	return out
}

// checkRounds: rounds as the schedule allows, and at most one profile per
// (policy, pod, type, round).
//
// Rounds come from the operator's log: when each started, to the
// millisecond, and the scheduled time it runs for. No round starts before
// its scheduled time, and two consecutive rounds of one policy are
// scheduled at least the shortest @every in force between them apart
// (each change counted from when it was sent; an edit never brings the
// next round before floor(last round)+period). A round may start late
// (after a stall, once for all the times it missed).
//
// A profile's created_at is not the operator's: profefe replaces it with
// the pprof's TimeNanos, which Go sets when the pod began the profile,
// truncated to the second. That is the round's time plus the spread
// offset (under 200 ms here) plus any lateness of the round plus, by
// design, the wait for the pod: the fetcher runs one CPU capture per pod
// at a time across policies (Go serves one) and one other capture. So a
// profile may read a second or more after its round, and two of one
// (policy, pod, type) may be closer than the period although their rounds
// are not. Each profile is therefore counted in the last round of its
// policy scheduled in or before its second (a capture never starts before
// its round), and two profiles in one round are one round run twice, or a
// capture with no round of its own. A late capture cannot reach into the
// next round's count: that round skips its pod and type while the capture
// is live.
func (s *soak) checkRounds(profs []soakProfile, op *operator) {
	pol := map[string]*soakPolicy{}
	for _, q := range s.policies {
		pol[q.name] = q
	}
	rounds := s.rounds(op)
	var dups, close []string
	for name, rs := range rounds {
		q := pol[name]
		for i, r := range rs {
			if r.started.Before(r.scheduled) {
				close = append(close, fmt.Sprintf("policy %s: round scheduled %s started early, %s",
					name, s.rel(r.scheduled), s.rel(r.started)))
			}
			if q == nil || i == 0 {
				continue
			}
			a, b := rs[i-1].scheduled, r.scheduled
			if p := minPeriod(q, a.Add(-time.Second), b.Add(time.Second)); b.Sub(a) < time.Duration(p)*time.Second {
				close = append(close, fmt.Sprintf("policy %s: rounds scheduled %s and %s (started %s and %s), %v apart under @every %ds",
					name, s.rel(a), s.rel(b), s.rel(rs[i-1].started), s.rel(r.started), b.Sub(a), p))
			}
		}
	}
	byRound := map[[3]string]map[time.Time][]soakProfile{}
	var ids []string
	for _, p := range profs {
		rs := rounds[p.policy]
		// The first round scheduled after p's second, less one.
		i := sort.Search(len(rs), func(i int) bool { return rs[i].scheduled.After(p.created) }) - 1
		if i < 0 {
			dups = append(dups, fmt.Sprintf("policy %s pod %s type %s: profile %s created %s, before any round of %s",
				p.policy, p.pod, p.typ, p.id, s.rel(p.created), p.policy))
			ids = append(ids, p.id)
			continue
		}
		k := [3]string{p.policy, p.pod, p.typ}
		if byRound[k] == nil {
			byRound[k] = map[time.Time][]soakProfile{}
		}
		byRound[k][rs[i].scheduled] = append(byRound[k][rs[i].scheduled], p)
	}
	for k, m := range byRound {
		for r, ps := range m {
			if len(ps) < 2 {
				continue
			}
			var at []string
			for _, p := range ps {
				at = append(at, fmt.Sprintf("%s (%s)", p.id, s.rel(p.created)))
				ids = append(ids, p.id)
			}
			dups = append(dups, fmt.Sprintf("policy %s pod %s type %s: round scheduled %s has profiles %s",
				k[0], k[1], k[2], s.rel(r), strings.Join(at, ", ")))
		}
	}
	sort.Strings(dups)
	sort.Strings(close)
	if len(dups) > 0 {
		s.fail("%d duplicate rounds (profiles of one policy, pod and type that no round of their own explains):\n\t%s",
			len(dups), strings.Join(dups[:min(len(dups), 15)], "\n\t"))
	}
	if len(close) > 0 {
		s.fail("%d rounds the schedule does not allow:\n\t%s", len(close), strings.Join(close[:min(len(close), 15)], "\n\t"))
	}
	if len(ids) > 0 {
		// The operator's own account of those profiles (-v 1 logs each
		// stored profile with its id).
		b, _ := os.ReadFile(op.proc.LogPath)
		var lines []string
		for _, line := range strings.Split(string(b), "\n") {
			for _, id := range ids[:min(len(ids), 8)] {
				if strings.Contains(line, id) {
					lines = append(lines, line)
				}
			}
		}
		s.t.Logf("operator log lines of the first offending profiles:\n%s", strings.Join(lines, "\n"))
	}
}

// checkTargets: no pprof request reached a pod's target more than
// soakGrace after the API server acknowledged the pod's deletion or
// opt-out (while it stayed so), to the millisecond, from the targets' own
// request logs (-log-requests). This sees captures that failed or were
// never delivered too.
func (s *soak) checkTargets(churnEnd time.Time) {
	var bad []string
	for _, p := range s.pods {
		b, err := os.ReadFile(p.target.Proc.LogPath)
		if err != nil {
			s.fail("reading %s: %v", p.target.Proc.LogPath, err)
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "request" {
				continue
			}
			ms, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				continue
			}
			at := time.UnixMilli(ms)
			ok := false
			var last *interval
			for i := range s.podLife[p.name] {
				iv := &s.podLife[p.name][i]
				if at.Before(iv.from) {
					continue
				}
				if iv.to.IsZero() || !at.After(iv.to.Add(soakGrace)) {
					ok = true
					break
				}
				last = iv
			}
			if ok {
				continue
			}
			if last == nil {
				bad = append(bad, fmt.Sprintf("%s: pod %s got %s before it was ever opted in", s.rel(at), p.name, f[2]))
			} else {
				bad = append(bad, fmt.Sprintf("%s: pod %s got %s %.3f s after %q was acknowledged at %s",
					s.rel(at), p.name, f[2], at.Sub(last.to).Seconds(), last.endCause, s.rel(last.to)))
			}
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		s.fail("%d pprof requests reached pods more than %v after they were deleted or opted out:\n\t%s",
			len(bad), soakGrace, strings.Join(bad[:min(len(bad), 15)], "\n\t"))
	}
}
