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
	e := &env{t: t, cp: harness.TestControlPlane(t), pf: harness.TestProfefe(t), root: root, operatorBn: bin}
	ctx := t.Context()
	if _, err := e.cp.Kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(root, "crd", "profilingpolicies.profefe.com.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cp.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/profilingpolicies.profefe.com"); err != nil {
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

// eventually retries f every 250ms until it succeeds or the timeout passes.
func (e *env) eventually(timeout time.Duration, what string, f func() error) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not true after %v: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// pod starts a real pprof target on a fresh loopback IP and creates a
// Running pod for it, owned by a ReplicaSet of Deployment `deploy`.
func (e *env) pod(ns, deploy, name string, annotated bool, labels map[string]string, targetFlags ...string) string {
	t := e.t
	t.Helper()
	ctx := t.Context()
	ip := harness.AllocIP()
	harness.TestTarget(t, ip, 6060, targetFlags...)
	owner, err := e.cp.CreateWorkload(ctx, ns, "Deployment", deploy, labels)
	if err != nil && !harness.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ann := map[string]string{}
	if annotated {
		ann["profefe.com/enable"] = "true"
	}
	p := harness.Pod{Namespace: ns, Name: name, Labels: labels, Annotations: ann, Port: 6060}
	if owner.UID != "" {
		p.Owners = []harness.OwnerRef{owner}
	}
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

func countProfiles(t *testing.T, pf *harness.Profefe, service, typ string, labels map[string]string) int {
	t.Helper()
	ps, err := pf.List(t.Context(), harness.ListQuery{Service: service, Type: typ, Labels: labels,
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute), Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return len(ps)
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
		time.Sleep(2 * time.Second) // let the last round's captures land
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
		if _, err := e.cp.Kubectl(ctx, "patch", "ppol", "web", "-n", ns, "--type=merge", "-p", `{"spec":{"suspend":true}}`); err != nil {
			t.Fatal(err)
		}
		e.eventually(5*time.Second, "SUSPEND column true", func() error {
			if r := e.getRow(ns, "web"); r["SUSPEND"] != "true" {
				return fmt.Errorf("row %v", r)
			}
			return nil
		})
		time.Sleep(3 * time.Second) // a round already running may finish
		before := countProfiles(t, e.pf, "web", "goroutine", nil)
		time.Sleep(11 * time.Second) // two periods of @every 5s
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
		e.eventually(15*time.Second, "the other pods keep being captured", func() error {
			if n := countProfiles(t, e.pf, "web", "goroutine", map[string]string{"pod": "web-6d9f7c-aaaaa"}); n <= before {
				return fmt.Errorf("still %d", n)
			}
			return nil
		})
		out, err := e.cp.Kubectl(ctx, "get", "events", "-n", ns, "--field-selector", "reason=CaptureFailed", "-o", "jsonpath={range .items[*]}{.count}{\"\\n\"}{end}")
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Fields(out); len(lines) > 3 {
			t.Errorf("the recurring failure made %d Events, want it folded into a few with counts: %v", len(lines), lines)
		}
		if err := e.cp.DeletePod(ctx, ns, "web-6d9f7c-hostile"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if _, err := e.cp.Kubectl(ctx, "delete", "ppol", "web", "-n", ns); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // captures in flight are cancelled or land
		before := countProfiles(t, e.pf, "web", "goroutine", nil)
		time.Sleep(11 * time.Second)
		if after := countProfiles(t, e.pf, "web", "goroutine", nil); after != before {
			t.Errorf("deleted policy still captures: %d -> %d", before, after)
		}
		_, body := httpGet("http://" + op.metricsAddr + "/metrics")
		if strings.Contains(body, `profefe_operator_targets{policy="`+ns+`/web"}`) {
			t.Errorf("/metrics still has series of the deleted policy")
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

