package e2e

// End-to-end tests of the profefe-operator daemon, driven by the user's own
// kubectl lines against a real kube-apiserver, with real profefe and real Go
// pprof targets. The operator runs under its ServiceAccount's token and the
// RBAC shipped in config/rbac, so the tests also prove that RBAC sufficient.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"profefe-operator/e2e/harness"
)

const operatorNS = "profefe-system"

// env is one control plane + profefe + CRD + shipped RBAC, shared by the
// subtests of one test function.
type env struct {
	t          *testing.T
	cp         *harness.ControlPlane
	pf         *harness.Profefe
	saKube     string // kubeconfig with the operator's ServiceAccount token
	root       string
	operatorBn string
	owners     map[string]harness.OwnerRef // "ns/deployment" -> its ReplicaSet
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bdir, err := harness.BuildDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(bdir, "operator", "profefe-operator")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("operator binary: %v (build the C tree first; PPOP_BUILD_DIR=%s)", err, bdir)
	}
	e := &env{t: t, cp: harness.TestControlPlane(t), pf: harness.TestProfefe(t), root: root, operatorBn: bin,
		owners: map[string]harness.OwnerRef{}}
	ctx := t.Context()
	if err := e.cp.InstallCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.cp.CreateNamespace(ctx, operatorNS, nil); err != nil && !harness.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := e.cp.Kubectl(ctx, "apply", "-n", operatorNS, "-k", filepath.Join(root, "config", "rbac")); err != nil {
		t.Fatal(err)
	}
	e.saKube = filepath.Join(t.TempDir(), "operator-sa.kubeconfig")
	if _, err := e.cp.ServiceAccountKubeconfig(ctx, operatorNS, "profefe-operator", e.saKube); err != nil {
		t.Fatal(err)
	}
	return e
}

// operator is one running profefe-operator process.
type operator struct {
	proc        *harness.Proc
	metricsAddr string
	healthAddr  string
}

func (e *env) startOperator(name string, extra ...string) *operator {
	t := e.t
	t.Helper()
	mport, err := harness.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	hport, err := harness.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	o := &operator{metricsAddr: fmt.Sprintf("127.0.0.1:%d", mport), healthAddr: fmt.Sprintf("127.0.0.1:%d", hport)}
	args := append([]string{
		"--kubeconfig", e.saKube,
		"--profefe-url", e.pf.URL,
		"--metrics-bind-address", o.metricsAddr,
		"--health-probe-bind-address", o.healthAddr,
		"--leader-election-namespace", operatorNS,
		"--spread-window", "200ms",
		"-v", "1",
	}, extra...)
	logPath := filepath.Join(t.TempDir(), name+".log")
	o.proc, err = harness.StartProc(name, logPath, os.Environ(), e.operatorBn, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.proc.Stop(20 * time.Second)
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, o.proc.Tail(60))
		}
	})
	e.eventually(30*time.Second, "operator "+name+" ready", func() error {
		code, body := httpGet("http://" + o.healthAddr + "/readyz")
		if code != 200 {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})
	return o
}

func httpGet(url string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(b)
}

// eventually is the package's eventually (helpers_test.go) on e.t.
func (e *env) eventually(timeout time.Duration, what string, f func() error) {
	e.t.Helper()
	eventually(e.t, timeout, what, f)
}

// profefeTypes are the types profefe stores (allocs is stored as heap).
var profefeTypes = []string{"cpu", "heap", "goroutine", "mutex", "block", "threadcreate"}

// storedProfiles counts every profile profefe holds, over all services and
// types.
func storedProfiles(t testing.TB, pf *harness.Profefe) (int, error) {
	svcs, err := pf.Services(t.Context())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, svc := range svcs {
		for _, typ := range profefeTypes {
			ps, err := pf.List(t.Context(), harness.ListQuery{Service: svc, Type: typ,
				From: time.Now().Add(-24 * time.Hour), To: time.Now().Add(time.Hour), Limit: 1000000})
			if err != nil {
				return 0, err
			}
			n += len(ps)
		}
	}
	return n, nil
}

// settle waits until what the operator started has landed: no capture in
// flight, and profefe holding exactly the profiles the operator counts as
// delivered, unchanged over two polls in a row (more than the 200 ms
// spread window apart, so a capture still waiting on its spread timer at
// the first poll shows up at the second).
func (e *env) settle(op *operator, timeout time.Duration) {
	e.t.Helper()
	prev := -2.0
	e.eventually(timeout, "the operator's captures have landed in profefe", func() error {
		inflight := metric(op.metricsAddr, "profefe_operator_captures_inflight")
		delivered := max(0, metric(op.metricsAddr, `profefe_operator_deliveries_total{result="ok"}`))
		stored, err := storedProfiles(e.t, e.pf)
		if err != nil {
			return err
		}
		was := prev
		prev = delivered
		if inflight != 0 || float64(stored) != delivered || was != delivered {
			return fmt.Errorf("captures in flight %v, delivered %v (previous poll %v), profefe holds %d",
				inflight, delivered, was, stored)
		}
		return nil
	})
}

// waitRounds waits until the operator has started n rounds of policy name
// scheduled after now, as the policy's status.lastScheduleTime shows (a
// round's status is written once it has started, so every distinct value
// after now is one round). n rounds of a period P after now mean at least
// (n-1)*P has passed by the operator's own clock.
func (e *env) waitRounds(ns, name string, n int, timeout time.Duration) {
	e.t.Helper()
	since := time.Now().Truncate(time.Second)
	seen := map[string]bool{}
	e.eventually(timeout, fmt.Sprintf("%d rounds of policy %s scheduled after %s", n, name, since.Format(time.RFC3339)), func() error {
		v := e.jsonpath(ns, name, "{.status.lastScheduleTime}")
		if last, err := time.Parse(time.RFC3339, v); err == nil && last.After(since) {
			seen[v] = true
		}
		if len(seen) < n {
			return fmt.Errorf("%d such rounds seen; lastScheduleTime %q", len(seen), v)
		}
		return nil
	})
}

// observed waits until the operator has seen the policy's current spec:
// status.observedGeneration equals metadata.generation.
func (e *env) observed(ns, name string, timeout time.Duration) {
	e.t.Helper()
	e.eventually(timeout, "the operator observed the spec of "+name, func() error {
		g := strings.Fields(e.jsonpath(ns, name, "{.metadata.generation} {.status.observedGeneration}"))
		if len(g) != 2 || g[0] != g[1] {
			return fmt.Errorf("generation / observedGeneration = %v", g)
		}
		return nil
	})
}

// clockPolicy applies a policy that selects no pod: its rounds (status
// .lastScheduleTime) witness that schedule periods have passed while the
// policy under test is suspended or deleted.
func (e *env) clockPolicy(ns, name, schedule string) {
	e.t.Helper()
	e.policy(ns, name, schedule, "no-such-app-"+name, false)
}

// pod starts a real pprof target on a fresh loopback IP and creates a
// Running pod for it, owned by a ReplicaSet of Deployment `deploy`.
func (e *env) pod(ns, deploy, name string, annotated bool, labels map[string]string, targetFlags ...string) string {
	t := e.t
	t.Helper()
	ctx := t.Context()
	ip := harness.AllocIP()
	harness.TestTarget(t, ip, 6060, targetFlags...)
	owner, ok := e.owners[ns+"/"+deploy]
	if !ok {
		var err error
		if owner, err = e.cp.CreateWorkload(ctx, ns, "Deployment", deploy, labels); err != nil {
			t.Fatal(err)
		}
		e.owners[ns+"/"+deploy] = owner
	}
	ann := map[string]string{}
	if annotated {
		ann["profefe.com/enable"] = "true"
	}
	p := harness.Pod{Namespace: ns, Name: name, Labels: labels, Annotations: ann, Port: 6060,
		Owners: []harness.OwnerRef{owner}}
	if _, err := e.cp.CreatePod(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := e.cp.MarkRunning(ctx, ns, name, ip); err != nil {
		t.Fatal(err)
	}
	return ip
}

func (e *env) apply(ns, yaml string) {
	e.t.Helper()
	if _, err := e.cp.KubectlStdin(e.t.Context(), yaml, "apply", "-n", ns, "-f", "-"); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) jsonpath(ns, name, path string) string {
	e.t.Helper()
	out, err := e.cp.Kubectl(e.t.Context(), "get", "profilingpolicy", name, "-n", ns, "-o", "jsonpath="+path)
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// getRow returns the `kubectl get ppol NAME` row as column name -> value.
func (e *env) getRow(ns, name string) map[string]string {
	e.t.Helper()
	out, err := e.cp.Kubectl(e.t.Context(), "get", "ppol", name, "-n", ns)
	if err != nil {
		e.t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		e.t.Fatalf("kubectl get ppol %s:\n%s", name, out)
	}
	return columns(lines[0], lines[1])
}

// columns splits a kubectl table row by the header's column offsets.
func columns(header, row string) map[string]string {
	m := map[string]string{}
	var starts []int
	var names []string
	for i := 0; i < len(header); {
		if header[i] == ' ' {
			i++
			continue
		}
		j := i
		for j < len(header) && !(header[j] == ' ' && (j+1 >= len(header) || header[j+1] == ' ')) {
			j++
		}
		starts = append(starts, i)
		names = append(names, header[i:j])
		i = j
	}
	for k, s := range starts {
		end := len(row)
		if k+1 < len(starts) && starts[k+1] < len(row) {
			end = starts[k+1]
		}
		if s < len(row) {
			m[names[k]] = strings.TrimSpace(row[s:end])
		}
	}
	return m
}

// countProfiles counts stored profiles of service/type whose labels include
// `labels`. Labels are matched here, not by profefe: its badger index misses
// label matches for some types (see capture/README.md).
func countProfiles(t *testing.T, pf *harness.Profefe, service, typ string, labels map[string]string) int {
	t.Helper()
	ps, err := pf.List(t.Context(), harness.ListQuery{Service: service, Type: typ,
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute), Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
next:
	for _, p := range ps {
		l := p.LabelMap()
		for k, v := range labels {
			if l[k] != v {
				continue next
			}
		}
		n++
	}
	return n
}

const webPolicy = `apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: web
spec:
  schedule: "@every 3s"
  selector:
    matchLabels:
      app: web
  profiles:
  - type: cpu
    seconds: 1
  - type: heap
  - type: goroutine
  - type: allocs
  - type: mutex
  labels:
    env: e2e
`

// TestOperator follows a user through the product: apply a policy, watch it
// capture, retune its schedule, suspend it, break it, and delete it.
func TestOperator(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ns := e.cp.TestNamespace(t)
	web := map[string]string{"app": "web", "app.kubernetes.io/version": "1.2.3"}
	e.pod(ns, "web", "web-6d9f7c-aaaaa", true, web)
	e.pod(ns, "web", "web-6d9f7c-bbbbb", true, web)
	// Selected by labels but not opted in: must never be captured.
	e.pod(ns, "web", "web-6d9f7c-noann", false, web)
	op := e.startOperator("operator")

	t.Run("apply-and-watch", func(t *testing.T) {
		e.apply(ns, webPolicy)
		var row map[string]string
		e.eventually(45*time.Second, "kubectl get ppol shows targets, a capture and READY=True", func() error {
			row = e.getRow(ns, "web")
			if row["TARGETS"] != "2" || row["READY"] != "True" || row["LAST CAPTURE"] == "" || row["LAST CAPTURE"] == "<none>" {
				return fmt.Errorf("row %v", row)
			}
			return nil
		})
		for _, col := range []string{"NAME", "SCHEDULE", "SUSPEND", "TARGETS", "LAST CAPTURE", "ERRORS", "READY", "AGE"} {
			if _, ok := row[col]; !ok {
				t.Errorf("kubectl get ppol has no %s column: %v", col, row)
			}
		}
		if row["SCHEDULE"] != "@every 3s" {
			t.Errorf("SCHEDULE = %q", row["SCHEDULE"])
		}
	})

	t.Run("profiles-in-profefe", func(t *testing.T) {
		for _, typ := range []string{"cpu", "heap", "goroutine"} {
			e.eventually(30*time.Second, typ+" profiles of service web from both pods", func() error {
				for _, pod := range []string{"web-6d9f7c-aaaaa", "web-6d9f7c-bbbbb"} {
					if n := countProfiles(t, e.pf, "web", typ, map[string]string{"pod": pod}); n == 0 {
						return fmt.Errorf("no %s profile from %s", typ, pod)
					}
				}
				return nil
			})
		}
		metas, err := e.pf.List(ctx, harness.ListQuery{Service: "web", Type: "heap", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute), Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var sawAllocs, sawHeap bool
		for _, m := range metas {
			l := m.LabelMap()
			for k, want := range map[string]string{"namespace": ns, "policy": "web", "version": "1.2.3", "env": "e2e", "node": "e2e-node", "container": "app"} {
				if l[k] != want {
					t.Errorf("profile %s: label %s=%q, want %q (labels %v)", m.ID, k, l[k], want, l)
				}
			}
			if l["pod"] == "web-6d9f7c-noann" {
				t.Errorf("the pod without profefe.com/enable was captured: %v", l)
			}
			if l["pprof_type"] == "allocs" {
				sawAllocs = true
			} else {
				sawHeap = true
			}
		}
		if !sawAllocs || !sawHeap {
			t.Errorf("want heap profiles both plain and with pprof_type=allocs; allocs=%v heap=%v", sawAllocs, sawHeap)
		}
		// Stored profiles parse, and are what their type says.
		b, err := e.pf.Get(ctx, metas[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		p, err := profile.ParseData(b)
		if err != nil {
			t.Fatalf("stored profile does not parse: %v", err)
		}
		if len(p.SampleType) == 0 || !strings.Contains(p.SampleType[0].Type, "alloc") && !strings.Contains(p.SampleType[0].Type, "inuse") {
			t.Errorf("heap profile sample types %v", p.SampleType)
		}
		// Mutex profiling is off in the targets: empty, skipped, not failed.
		if n := countProfiles(t, e.pf, "web", "mutex", nil); n != 0 {
			t.Errorf("%d empty mutex profiles were pushed", n)
		}
		skipped, _ := strconv.Atoi(e.jsonpath(ns, "web", "{.status.capturesSkipped}"))
		failed := e.jsonpath(ns, "web", "{.status.capturesFailed}")
		if skipped == 0 {
			t.Errorf("capturesSkipped = %d, want the empty mutex profiles counted", skipped)
		}
		if failed != "" && failed != "0" {
			t.Errorf("capturesFailed = %s; lastErrors: %s", failed, e.jsonpath(ns, "web", "{.status.lastErrors}"))
		}
		ids := e.jsonpath(ns, "web", "{.status.recentProfiles[*].id}")
		if ids == "" {
			t.Errorf("status.recentProfiles has no profefe ids")
		} else if _, err := e.pf.Get(ctx, strings.Fields(ids)[0]); err != nil {
			t.Errorf("recentProfiles id %s is not in profefe: %v", strings.Fields(ids)[0], err)
		}
	})

	t.Run("metrics-and-probes", func(t *testing.T) {
		code, body := httpGet("http://" + op.metricsAddr + "/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		for _, want := range []string{
			`profefe_operator_captures_total{policy="` + ns + `/web",type="heap",result="ok"}`,
			`profefe_operator_captures_total{policy="` + ns + `/web",type="mutex",result="empty"}`,
			"profefe_operator_capture_duration_seconds_bucket",
			"profefe_operator_status_writes_total{result=\"success\"}",
			"profefe_operator_leader 1",
			`profefe_operator_targets{policy="` + ns + `/web"} 2`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		// Every heap capture that ran has its start delay observed: as
		// many observations as heap results other than busy and
		// target_gone (never started), and a sane mean.
		// (ok is read first: both only grow.)
		ok := metric(op.metricsAddr, `profefe_operator_captures_total{policy="`+ns+`/web",type="heap",result="ok"}`)
		n := metric(op.metricsAddr, `profefe_operator_capture_start_delay_seconds_count{type="heap"}`)
		sum := metric(op.metricsAddr, `profefe_operator_capture_start_delay_seconds_sum{type="heap"}`)
		if n < ok || ok <= 0 || sum < 0 || sum/n > 5 {
			t.Errorf("heap start delay: count %v (captures ok %v), sum %v s", n, ok, sum)
		}
		if code, _ := httpGet("http://" + op.healthAddr + "/healthz"); code != 200 {
			t.Errorf("/healthz: %d", code)
		}
	})

	t.Run("edit-schedule", func(t *testing.T) {
		if _, err := e.cp.Kubectl(ctx, "patch", "ppol", "web", "-n", ns, "--type=merge", "-p", `{"spec":{"schedule":"@every 1h"}}`); err != nil {
			t.Fatal(err)
		}
		e.eventually(5*time.Second, "nextScheduleTime about an hour ahead", func() error {
			next, err := time.Parse(time.RFC3339, e.jsonpath(ns, "web", "{.status.nextScheduleTime}"))
			if err != nil {
				return err
			}
			if d := time.Until(next); d < 55*time.Minute {
				return fmt.Errorf("next in %v", d)
			}
			return nil
		})
		e.settle(op, 30*time.Second) // the last round's captures have landed
		before := countProfiles(t, e.pf, "web", "goroutine", nil)
		edited := time.Now()
		if _, err := e.cp.Kubectl(ctx, "patch", "ppol", "web", "-n", ns, "--type=merge", "-p", `{"spec":{"schedule":"@every 5s"}}`); err != nil {
			t.Fatal(err)
		}
		e.eventually(2*time.Second, "nextScheduleTime changes at once", func() error {
			next, err := time.Parse(time.RFC3339, e.jsonpath(ns, "web", "{.status.nextScheduleTime}"))
			if err != nil {
				return err
			}
			if d := time.Until(next); d > 6*time.Second {
				return fmt.Errorf("next still in %v", d)
			}
			return nil
		})
		e.eventually(12*time.Second, "captures within one new period", func() error {
			if n := countProfiles(t, e.pf, "web", "goroutine", nil); n <= before {
				return fmt.Errorf("%d goroutine profiles, %d before the edit %v ago", n, before, time.Since(edited))
			}
			return nil
		})
	})

	t.Run("suspend", func(t *testing.T) {
		// Same period as web; its rounds show that web's would have come.
		e.clockPolicy(ns, "web-clock", "@every 5s")
		if _, err := e.cp.Kubectl(ctx, "patch", "ppol", "web", "-n", ns, "--type=merge", "-p", `{"spec":{"suspend":true}}`); err != nil {
			t.Fatal(err)
		}
		e.eventually(5*time.Second, "SUSPEND column true", func() error {
			if r := e.getRow(ns, "web"); r["SUSPEND"] != "true" {
				return fmt.Errorf("row %v", r)
			}
			return nil
		})
		e.observed(ns, "web", 10*time.Second)
		e.settle(op, 30*time.Second) // a round already running may finish
		before := countProfiles(t, e.pf, "web", "goroutine", nil)
		e.waitRounds(ns, "web-clock", 3, 30*time.Second) // two periods of @every 5s
		e.settle(op, 30*time.Second)
		if after := countProfiles(t, e.pf, "web", "goroutine", nil); after != before {
			t.Errorf("suspended policy captured: %d -> %d goroutine profiles", before, after)
		}
		if _, err := e.cp.Kubectl(ctx, "patch", "ppol", "web", "-n", ns, "--type=merge", "-p", `{"spec":{"suspend":false}}`); err != nil {
			t.Fatal(err)
		}
		e.eventually(15*time.Second, "captures resume", func() error {
			if n := countProfiles(t, e.pf, "web", "goroutine", nil); n <= before {
				return fmt.Errorf("still %d", n)
			}
			return nil
		})
	})

	t.Run("bad-cron", func(t *testing.T) {
		e.apply(ns, `apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: broken
spec:
  schedule: "61 * * * *"
  selector:
    matchLabels:
      app: web
`)
		e.eventually(10*time.Second, "READY=False with InvalidSchedule", func() error {
			r := e.jsonpath(ns, "broken", `{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}`)
			if r != "False/InvalidSchedule" {
				return fmt.Errorf("Ready = %q", r)
			}
			return nil
		})
		e.eventually(10*time.Second, "kubectl describe shows the reason and a Warning event", func() error {
			out, err := e.cp.Kubectl(ctx, "describe", "ppol", "broken", "-n", ns)
			if err != nil {
				return err
			}
			for _, want := range []string{"InvalidSchedule", "spec.schedule", "Warning"} {
				if !strings.Contains(out, want) {
					return fmt.Errorf("describe lacks %q:\n%s", want, out)
				}
			}
			return nil
		})
	})

	t.Run("hostile-pod", func(t *testing.T) {
		e.pod(ns, "web", "web-6d9f7c-hostile", true, web, "-mode=500")
		before := countProfiles(t, e.pf, "web", "goroutine", map[string]string{"pod": "web-6d9f7c-aaaaa"})
		e.eventually(20*time.Second, "a pod added between rounds is a target", func() error {
			if r := e.getRow(ns, "web"); r["TARGETS"] != "3" {
				return fmt.Errorf("row %v", r)
			}
			return nil
		})
		e.eventually(20*time.Second, "lastErrors names the hostile pod", func() error {
			if s := e.jsonpath(ns, "web", "{.status.lastErrors[*].pod}"); !strings.Contains(s, "web-6d9f7c-hostile") {
				return fmt.Errorf("lastErrors pods: %q", s)
			}
			return nil
		})
		e.eventually(10*time.Second, "a Warning event about the hostile pod", func() error {
			out, err := e.cp.Kubectl(ctx, "describe", "ppol", "web", "-n", ns)
			if err != nil {
				return err
			}
			if !strings.Contains(out, "CaptureFailed") || !strings.Contains(out, "web-6d9f7c-hostile") {
				return fmt.Errorf("describe:\n%s", out)
			}
			return nil
		})
		e.eventually(30*time.Second, "the other pods keep being captured", func() error {
			if n := countProfiles(t, e.pf, "web", "goroutine", map[string]string{"pod": "web-6d9f7c-aaaaa"}); n <= before {
				all, _ := e.pf.List(ctx, harness.ListQuery{Service: "web", Type: "goroutine", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute), Limit: 100000})
				return fmt.Errorf("still %d (of %d goroutine profiles listed)", n, len(all))
			}
			return nil
		})
		// Repeats fold into one Event per distinct failure (pod x profile
		// type here), whose count grows, instead of one Event per round.
		events := func() (n, total int) {
			out, err := e.cp.Kubectl(ctx, "get", "events", "-n", ns, "--field-selector", "reason=CaptureFailed",
				"-o", "jsonpath={range .items[*]}{.count}{\"\\n\"}{end}")
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range strings.Fields(out) {
				v, _ := strconv.Atoi(c)
				n, total = n+1, total+v
			}
			return n, total
		}
		n1, c1 := events()
		e.waitRounds(ns, "web", 2, 30*time.Second) // more rounds fail the same way
		var n2, c2 int
		if err := waitUntil(15*time.Second, "the CaptureFailed Events count the new rounds", func() error {
			if n2, c2 = events(); c2 <= c1 {
				return fmt.Errorf("%d Events, counts %d (%d before)", n2, c2, c1)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
		if n2 != n1 || c2 <= c1 || n2 > 10 {
			msgs, _ := e.cp.Kubectl(ctx, "get", "events", "-n", ns, "--field-selector", "reason=CaptureFailed",
				"-o", "jsonpath={range .items[*]}{.count} {.message}{\"\\n\"}{end}")
			t.Errorf("CaptureFailed Events: %d (counts %d) then %d (counts %d); want a stable few, counting up:\n%s", n1, c1, n2, c2, msgs)
		}
		if err := e.cp.DeletePod(ctx, ns, "web-6d9f7c-hostile"); err != nil {
			t.Fatal(err)
		}
		e.eventually(20*time.Second, "a pod removed between rounds leaves the targets", func() error {
			if r := e.getRow(ns, "web"); r["TARGETS"] != "2" {
				return fmt.Errorf("row %v", r)
			}
			return nil
		})
	})

	var oldSucceeded int
	t.Run("delete", func(t *testing.T) {
		oldSucceeded, _ = strconv.Atoi(e.jsonpath(ns, "web", "{.status.capturesSucceeded}"))
		if _, err := e.cp.Kubectl(ctx, "delete", "ppol", "web", "-n", ns); err != nil {
			t.Fatal(err)
		}
		e.settle(op, 30*time.Second) // captures in flight are cancelled or land
		before := countProfiles(t, e.pf, "web", "goroutine", nil)
		e.waitRounds(ns, "web-clock", 3, 30*time.Second) // two periods of @every 5s
		e.settle(op, 30*time.Second)
		if after := countProfiles(t, e.pf, "web", "goroutine", nil); after != before {
			t.Errorf("deleted policy still captures: %d -> %d", before, after)
		}
		_, body := httpGet("http://" + op.metricsAddr + "/metrics")
		if strings.Contains(body, `profefe_operator_targets{policy="`+ns+`/web"}`) {
			t.Errorf("/metrics still has series of the deleted policy")
		}
		if _, err := e.cp.Kubectl(ctx, "delete", "ppol", "web-clock", "-n", ns); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("recreate", func(t *testing.T) {
		// The same name again is a new object: it captures, and its
		// counters start from zero rather than from the old status.
		e.apply(ns, webPolicy)
		e.eventually(30*time.Second, "the recreated policy captures", func() error {
			n, _ := strconv.Atoi(e.jsonpath(ns, "web", "{.status.capturesSucceeded}"))
			if n == 0 {
				return fmt.Errorf("capturesSucceeded %d", n)
			}
			if n >= oldSucceeded {
				return fmt.Errorf("capturesSucceeded %d, the deleted policy had %d: counters carried over", n, oldSucceeded)
			}
			return nil
		})
		if _, err := e.cp.Kubectl(ctx, "delete", "ppol", "web", "-n", ns); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("sigterm", func(t *testing.T) {
		start := time.Now()
		if err := op.proc.Stop(20 * time.Second); err != nil {
			t.Fatalf("operator did not stop: %v", err)
		}
		if _, err := op.proc.Exited(); err != nil {
			t.Errorf("operator exited with %v on SIGTERM, want status 0", err)
		}
		if d := time.Since(start); d > 18*time.Second {
			t.Errorf("shutdown took %v", d)
		}
		if !strings.Contains(op.proc.Tail(20), "shutdown complete") {
			t.Errorf("no 'shutdown complete' in the log:\n%s", op.proc.Tail(20))
		}
	})
}

// metric returns the value of one exact series line in /metrics, or -1.
func metric(addr, series string) float64 {
	_, body := httpGet("http://" + addr + "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func (e *env) policy(ns, name, schedule, app string, suspend bool) {
	e.apply(ns, fmt.Sprintf(`apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: %s
spec:
  schedule: "%s"
  suspend: %v
  selector:
    matchLabels:
      app: %s
  profiles:
  - type: cpu
    seconds: 1
  - type: heap
  - type: goroutine
`, name, schedule, suspend, app))
}

// TestOperatorResilience: CPU exclusivity across policies, a profefe outage
// that loses nothing, and an API server restart mid-run.
func TestOperatorResilience(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ns := e.cp.TestNamespace(t)
	lbl := map[string]string{"app": "shared"}
	e.pod(ns, "shared", "shared-7f8d9-aaaaa", true, lbl)
	e.pod(ns, "shared", "shared-7f8d9-bbbbb", true, lbl)
	op := e.startOperator("operator", "--spool-dir", filepath.Join(t.TempDir(), "spool"))

	t.Run("two-policies-one-pod", func(t *testing.T) {
		e.policy(ns, "one", "@every 2s", "shared", false)
		e.policy(ns, "two", "@every 2s", "shared", false)
		e.eventually(30*time.Second, "both policies captured cpu a few times", func() error {
			for _, p := range []string{"one", "two"} {
				n, _ := strconv.Atoi(e.jsonpath(ns, p, "{.status.capturesSucceeded}"))
				if n < 12 {
					return fmt.Errorf("%s: %d captures", p, n)
				}
			}
			return nil
		})
		for _, p := range []string{"one", "two"} {
			if errs := e.jsonpath(ns, p, "{.status.lastErrors}"); strings.Contains(errs, "already in use") {
				t.Errorf("policy %s hit concurrent CPU profiling: %s", p, errs)
			}
			if f := e.jsonpath(ns, p, "{.status.capturesFailed}"); f != "0" {
				t.Errorf("policy %s: capturesFailed %s: %s", p, f, e.jsonpath(ns, p, "{.status.lastErrors}"))
			}
		}
		if _, err := e.cp.Kubectl(ctx, "delete", "ppol", "two", "-n", ns); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("profefe-outage-loses-nothing", func(t *testing.T) {
		if err := e.pf.StopServer(); err != nil {
			t.Fatal(err)
		}
		e.eventually(30*time.Second, "status says profefe is unavailable and the spool holds profiles", func() error {
			r := e.jsonpath(ns, "one", `{.status.conditions[?(@.type=="Degraded")].reason}/{.status.spoolBytes}`)
			reason, bytes, _ := strings.Cut(r, "/")
			if n, _ := strconv.Atoi(bytes); reason != "ProfefeUnavailable" || n == 0 {
				return fmt.Errorf("Degraded reason / spoolBytes = %q", r)
			}
			return nil
		})
		if v := metric(op.metricsAddr, "profefe_operator_spool_profiles"); v <= 0 {
			t.Errorf("profefe_operator_spool_profiles = %v during the outage", v)
		}
		spooled := metric(op.metricsAddr, "profefe_operator_spool_profiles")
		e.waitRounds(ns, "one", 2, 30*time.Second) // a few more rounds pile up
		e.eventually(10*time.Second, "the spool holds their profiles too", func() error {
			if v := metric(op.metricsAddr, "profefe_operator_spool_profiles"); v <= spooled {
				return fmt.Errorf("spool holds %v profiles, %v before", v, spooled)
			}
			return nil
		})
		if err := e.pf.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		e.eventually(60*time.Second, "the spool drains", func() error {
			if v := metric(op.metricsAddr, "profefe_operator_spool_profiles"); v != 0 {
				return fmt.Errorf("spool still holds %v profiles", v)
			}
			return nil
		})
		// Quiesce, then every profile the operator delivered is in profefe.
		e.policy(ns, "one", "@every 2s", "shared", true)
		e.observed(ns, "one", 10*time.Second)
		e.settle(op, 30*time.Second)
		e.eventually(20*time.Second, "profefe holds every delivered profile", func() error {
			delivered := metric(op.metricsAddr, `profefe_operator_deliveries_total{result="ok"}`)
			stored := 0
			for _, typ := range []string{"cpu", "heap", "goroutine"} {
				stored += countProfiles(t, e.pf, "shared", typ, nil)
			}
			if float64(stored) != delivered {
				return fmt.Errorf("profefe holds %d profiles, the operator delivered %v", stored, delivered)
			}
			return nil
		})
		if v := metric(op.metricsAddr, "profefe_operator_spool_dropped_total"); v != 0 {
			t.Errorf("profiles were dropped: %v", v)
		}
		e.policy(ns, "one", "@every 2s", "shared", false)
	})

	t.Run("overlapping-rounds", func(t *testing.T) {
		// A pod that never answers, a schedule shorter than the capture
		// timeout: later rounds skip what still runs instead of queueing
		// without bound, and say so.
		e.pod(ns, "hung", "hung-5d4c8-aaaaa", true, map[string]string{"app": "hung"}, "-mode=hung")
		e.apply(ns, `apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: hung
spec:
  schedule: "@every 1s"
  timeoutSeconds: 6
  selector:
    matchLabels:
      app: hung
  profiles:
  - type: heap
  - type: goroutine
`)
		busy := `profefe_operator_captures_total{policy="` + ns + `/hung",type="heap",result="busy"}`
		e.eventually(20*time.Second, "later rounds skip the capture that still runs", func() error {
			if v := metric(op.metricsAddr, busy); v < 3 {
				return fmt.Errorf("%s = %v", busy, v)
			}
			return nil
		})
		if v := metric(op.metricsAddr, "profefe_operator_captures_inflight"); v > 10 {
			t.Errorf("captures in flight grew to %v", v)
		}
		e.eventually(10*time.Second, "a RoundOverlap Warning event", func() error {
			out, err := e.cp.Kubectl(ctx, "describe", "ppol", "hung", "-n", ns)
			if err != nil {
				return err
			}
			if !strings.Contains(out, "RoundOverlap") {
				return fmt.Errorf("describe:\n%s", out)
			}
			return nil
		})
		e.eventually(20*time.Second, "the timeout is reported in lastErrors", func() error {
			if s := e.jsonpath(ns, "hung", "{.status.lastErrors[*].message}"); !strings.Contains(strings.ToLower(s), "time") {
				return fmt.Errorf("lastErrors messages: %q", s)
			}
			return nil
		})
		if _, err := e.cp.Kubectl(ctx, "delete", "ppol", "hung", "-n", ns); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("apiserver-restart", func(t *testing.T) {
		if err := e.cp.RestartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		e.eventually(60*time.Second, "status writes resume after the restart", func() error {
			last, err := time.Parse(time.RFC3339, e.jsonpath(ns, "one", "{.status.lastScheduleTime}"))
			if err != nil {
				return err
			}
			if !last.After(restarted) {
				return fmt.Errorf("lastScheduleTime %v is before the restart at %v", last, restarted)
			}
			return nil
		})
		before := countProfiles(t, e.pf, "shared", "goroutine", nil)
		e.eventually(20*time.Second, "captures resume", func() error {
			if n := countProfiles(t, e.pf, "shared", "goroutine", nil); n <= before {
				return fmt.Errorf("still %d", n)
			}
			return nil
		})
	})
}

// TestOperatorFailover: two replicas with --leader-elect capture each round
// once between them, and the survivor takes over when the leader dies.
func TestOperatorFailover(t *testing.T) {
	e := newEnv(t)
	ns := e.cp.TestNamespace(t)
	e.pod(ns, "ha", "ha-5c6d7-aaaaa", true, map[string]string{"app": "ha"})
	a := e.startOperator("replica-a", "--leader-elect", "--identity", "replica-a")
	b := e.startOperator("replica-b", "--leader-elect", "--identity", "replica-b")
	e.policy(ns, "ha", "@every 2s", "ha", false)

	var leader, follower *operator
	e.eventually(30*time.Second, "exactly one leader", func() error {
		la := metric(a.metricsAddr, "profefe_operator_leader")
		lb := metric(b.metricsAddr, "profefe_operator_leader")
		switch {
		case la == 1 && lb == 0:
			leader, follower = a, b
		case la == 0 && lb == 1:
			leader, follower = b, a
		default:
			return fmt.Errorf("leader gauges a=%v b=%v", la, lb)
		}
		return nil
	})
	e.eventually(30*time.Second, "the leader captures", func() error {
		if n := countProfiles(t, e.pf, "ha", "goroutine", nil); n < 3 {
			return fmt.Errorf("%d goroutine profiles", n)
		}
		return nil
	})
	if v := metric(follower.metricsAddr, `profefe_operator_deliveries_total{result="ok"}`); v > 0 {
		t.Errorf("the follower delivered %v profiles; only the leader may capture", v)
	}
	// Each round once: goroutine profiles in profefe = the leader's rounds.
	ok := metric(leader.metricsAddr, `profefe_operator_captures_total{policy="`+ns+`/ha",type="goroutine",result="ok"}`)
	if n := countProfiles(t, e.pf, "ha", "goroutine", nil); float64(n) < ok || float64(n) > ok+1 {
		t.Errorf("profefe holds %d goroutine profiles, the leader captured %v", n, ok)
	}

	killed := time.Now()
	if err := leader.proc.Cmd.Process.Kill(); err != nil { // no chance to release the Lease
		t.Fatal(err)
	}
	e.eventually(30*time.Second, "the follower takes over", func() error {
		if metric(follower.metricsAddr, "profefe_operator_leader") != 1 {
			return fmt.Errorf("not leader yet after %v", time.Since(killed))
		}
		return nil
	})
	if d := time.Since(killed); d > 20*time.Second {
		t.Errorf("takeover took %v, want within the 15 s lease (+ a retry)", d)
	}
	before := countProfiles(t, e.pf, "ha", "goroutine", nil)
	e.eventually(15*time.Second, "the new leader captures", func() error {
		if n := countProfiles(t, e.pf, "ha", "goroutine", nil); n <= before {
			return fmt.Errorf("still %d", n)
		}
		return nil
	})

	// A leader stopped with SIGTERM releases the Lease: a standby takes
	// over at its next retry (2 s), not after the 15 s lease runs out.
	c := e.startOperator("replica-c", "--leader-elect", "--identity", "replica-c")
	if metric(c.metricsAddr, "profefe_operator_leader") != 0 {
		t.Fatalf("a second leader appeared")
	}
	stopped := time.Now()
	if err := follower.proc.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.eventually(10*time.Second, "the standby takes over from a released Lease", func() error {
		if metric(c.metricsAddr, "profefe_operator_leader") != 1 {
			return fmt.Errorf("not leader yet after %v", time.Since(stopped))
		}
		return nil
	})
	if d := time.Since(stopped); d > 8*time.Second {
		t.Errorf("takeover after a released Lease took %v, want about the 2 s retry", d)
	}
	holder, err := e.cp.Kubectl(t.Context(), "get", "lease", "profefe-operator-leader", "-n", operatorNS, "-o", "jsonpath={.spec.holderIdentity} {.spec.leaseTransitions}")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(holder, "replica-c ") {
		t.Errorf("Lease holder/transitions = %q, want replica-c", holder)
	}
}

// TestInstallManifests: the shipped kustomizations apply to a real API
// server as the README says (kubectl apply -k config/default), and the
// sample policy is accepted.
func TestInstallManifests(t *testing.T) {
	cp := harness.TestControlPlane(t)
	ctx := t.Context()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cp.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(root, "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"customresourcedefinition.apiextensions.k8s.io/profilingpolicies.profefe.com",
		"customresourcedefinition.apiextensions.k8s.io/clusterprofilingpolicies.profefe.com",
		"clusterrole.rbac.authorization.k8s.io/profefe-operator", "deployment.apps/profefe-operator",
		"role.rbac.authorization.k8s.io/profefe-operator-leader-election", "service/profefe-collector"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply -k config/default did not apply %s:\n%s", want, out)
		}
	}
	if _, err := cp.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/profilingpolicies.profefe.com"); err != nil {
		t.Fatal(err)
	}
	ns := cp.TestNamespace(t)
	if _, err := cp.Kubectl(ctx, "apply", "-n", ns, "-k", filepath.Join(root, "config", "samples")); err != nil {
		t.Fatal(err)
	}
	// The Deployment is hardened as the README promises.
	dep, err := cp.Kubectl(ctx, "get", "deployment", "profefe-operator", "-n", operatorNS, "-o",
		"jsonpath={.spec.template.spec.securityContext.runAsNonRoot} {.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem} {.spec.template.spec.containers[0].livenessProbe.httpGet.path} {.spec.template.spec.containers[0].readinessProbe.httpGet.path}")
	if err != nil {
		t.Fatal(err)
	}
	if dep != "true true /healthz /readyz" {
		t.Errorf("deployment hardening/probes = %q", dep)
	}
	// No wildcard anywhere in the operator's RBAC.
	rbac, err := cp.Kubectl(ctx, "get", "clusterrole", "profefe-operator", "-o", "jsonpath={.rules}")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rbac, "*") {
		t.Errorf("the operator's ClusterRole has a wildcard: %s", rbac)
	}
}
