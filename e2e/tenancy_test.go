package e2e

// Multi-tenant safety (issue 12) under real RBAC: two tenants who may edit
// ProfilingPolicies in their own namespace only (the shipped editor
// ClusterRole, bound by a RoleBinding there) cannot reach the other
// tenant's pods, nor send profiles anywhere the cluster admin did not
// allow. What they try is refused with a reason in the policy's status,
// and nothing reaches the listener they control. A cluster admin's
// cross-namespace policy, in a namespace the operator was told to trust,
// still captures across namespaces.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tenant gives ServiceAccount ns/name the shipped editor ClusterRole in
// namespace ns only, and returns a kubeconfig authenticating as it.
func (e *env) tenant(ns, name string) string {
	e.t.Helper()
	ctx := e.t.Context()
	if err := e.cp.CreateServiceAccount(ctx, ns, name); err != nil {
		e.t.Fatal(err)
	}
	e.apply(ns, fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: %s-policy-editor
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: profefe-operator-profilingpolicy-editor
subjects:
- kind: ServiceAccount
  name: %s
  namespace: %s
`, name, name, ns))
	path := filepath.Join(e.t.TempDir(), name+".kubeconfig")
	if _, err := e.cp.ServiceAccountKubeconfig(ctx, ns, name, path); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// countingSink is an HTTP listener a tenant controls: it counts every
// request and stores nothing.
func countingSink(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Error(w, `{"code":500,"error":"not a profefe"}`, http.StatusInternalServerError)
	}))
	t.Cleanup(s.Close)
	return s, &n
}

// tenancyPolicy is a heap-only policy every second on pods labelled
// app=tenancy; `extra` is appended to the spec (2-space indented).
func tenancyPolicy(name, extra string) string {
	return fmt.Sprintf(`apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: %s
spec:
  schedule: "@every 1s"
  selector:
    matchLabels:
      app: tenancy
  profiles:
  - type: heap
%s`, name, extra)
}

// readyIs waits for the policy's Ready condition to have this status and
// reason, and returns its message.
func (e *env) readyIs(ns, name, status, reason string, timeout time.Duration) string {
	e.t.Helper()
	var msg string
	e.eventually(timeout, fmt.Sprintf("%s/%s Ready=%s %s", ns, name, status, reason), func() error {
		got := e.jsonpath(ns, name, `{.status.conditions[?(@.type=="Ready")].status}|{.status.conditions[?(@.type=="Ready")].reason}|{.status.conditions[?(@.type=="Ready")].message}`)
		f := strings.SplitN(got, "|", 3)
		if len(f) != 3 || f[0] != status || f[1] != reason {
			return fmt.Errorf("Ready = %q", got)
		}
		msg = f[2]
		return nil
	})
	return msg
}

func TestTenancy(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	nsA, nsB := e.cp.TestNamespace(t), e.cp.TestNamespace(t)
	kubeA := e.tenant(nsA, "tenant-a")
	kubeB := e.tenant(nsB, "tenant-b")
	app := map[string]string{"app": "tenancy"}
	e.pod(nsA, "tenancy", "tenancy-5c7d8-aaaaa", true, app)
	e.pod(nsB, "tenancy", "tenancy-5c7d8-bbbbb", true, app)
	stolen, stolenHits := countingSink(t) // tenant A's own listener
	applyAs := func(kubeconfig, ns, yaml string) error {
		_, err := e.cp.KubectlAs(ctx, kubeconfig, strings.NewReader(yaml), "apply", "-n", ns, "-f", "-")
		return err
	}
	fromB := func() int {
		return countProfiles(t, e.pf, "tenancy", "heap", map[string]string{"namespace": nsB})
	}
	op := e.startOperator("operator")

	t.Run("rbac-is-namespaced", func(t *testing.T) {
		if _, err := e.cp.KubectlAs(ctx, kubeA, nil, "get", "pods", "-n", nsB); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("tenant A may list tenant B's pods: %v", err)
		}
		if err := applyAs(kubeA, nsB, tenancyPolicy("intruder", "")); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("tenant A may create a policy in tenant B's namespace: %v", err)
		}
		// The operator's own Lease rights name its one Lease.
		if _, err := e.cp.KubectlAs(ctx, e.saKube, nil, "get", "lease", "someone-elses-lease", "-n", operatorNS); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("the operator may read any Lease in %s: %v", operatorNS, err)
		}
	})

	t.Run("cross-namespace-refused", func(t *testing.T) {
		// The attack: every namespace's profiles to A's listener.
		if err := applyAs(kubeA, nsA, tenancyPolicy("steal-any", "  namespaceSelector:\n    any: true\n  profefeURL: "+stolen.URL+"\n")); err != nil {
			t.Fatal(err)
		}
		if err := applyAs(kubeA, nsA, tenancyPolicy("steal-names", "  namespaceSelector:\n    matchNames: ["+nsA+", "+nsB+"]\n")); err != nil {
			t.Fatal(err)
		}
		msg := e.readyIs(nsA, "steal-any", "False", "CrossNamespaceNotAllowed", 30*time.Second)
		if !strings.Contains(msg, "namespaceSelector") {
			t.Errorf("steal-any: Ready message %q does not name spec.namespaceSelector", msg)
		}
		msg = e.readyIs(nsA, "steal-names", "False", "CrossNamespaceNotAllowed", 30*time.Second)
		if !strings.Contains(msg, nsB) {
			t.Errorf("steal-names: Ready message %q does not name the namespace refused", msg)
		}
	})

	t.Run("foreign-url-refused", func(t *testing.T) {
		if err := applyAs(kubeA, nsA, tenancyPolicy("exfil", "  profefeURL: "+stolen.URL+"\n")); err != nil {
			t.Fatal(err)
		}
		msg := e.readyIs(nsA, "exfil", "False", "ProfefeURLNotAllowed", 30*time.Second)
		if !strings.Contains(msg, "spec.profefeURL") {
			t.Errorf("exfil: Ready message %q does not name spec.profefeURL", msg)
		}
	})

	t.Run("own-namespace-captures", func(t *testing.T) {
		if err := applyAs(kubeA, nsA, tenancyPolicy("own", "")); err != nil {
			t.Fatal(err)
		}
		if err := applyAs(kubeB, nsB, tenancyPolicy("own", "")); err != nil {
			t.Fatal(err)
		}
		e.readyIs(nsA, "own", "True", "Capturing", 30*time.Second)
		e.readyIs(nsB, "own", "True", "Capturing", 30*time.Second)
		e.eventually(30*time.Second, "tenant A's own pods captured", func() error {
			if n := countProfiles(t, e.pf, "tenancy", "heap", map[string]string{"namespace": nsA, "policy": "own"}); n == 0 {
				return fmt.Errorf("no heap profile of namespace %s", nsA)
			}
			return nil
		})
	})

	t.Run("nothing-leaked", func(t *testing.T) {
		// Three rounds of A's own policy: the refused ones had as many
		// chances to run.
		e.waitRounds(nsA, "own", 3, 30*time.Second)
		e.settle(op, 30*time.Second)
		if n := stolenHits.Load(); n != 0 {
			t.Errorf("tenant A's listener received %d requests", n)
		}
		if n := countProfiles(t, e.pf, "tenancy", "heap", map[string]string{"namespace": nsB, "policy": "steal-names"}); n != 0 {
			t.Errorf("%d profiles of namespace %s were captured for tenant A's steal-names", n, nsB)
		}
		for _, name := range []string{"steal-any", "steal-names", "exfil"} {
			got := e.jsonpath(nsA, name, "{.status.targets}|{.status.recentProfiles}|{.status.lastScheduleTime}|{.status.spoolBytes}")
			f := strings.Split(got, "|")
			empty := func(v string) bool { return v == "" || v == "0" || v == "[]" }
			if len(f) != 4 || !empty(f[0]) || !empty(f[1]) || f[2] != "" || !empty(f[3]) {
				t.Errorf("refused policy %s: targets|recentProfiles|lastScheduleTime|spoolBytes = %q", name, got)
			}
		}
	})

	t.Run("cluster-policy", func(t *testing.T) {
		// A ClusterProfilingPolicy is the admin's object: no tenant may
		// write one, and it reaches every namespace without
		// --allow-cross-namespace (this operator runs without it).
		name := "fleet-" + nsA
		pol := fmt.Sprintf(`apiVersion: profefe.com/v1alpha1
kind: ClusterProfilingPolicy
metadata:
  name: %s
spec:
  schedule: "@every 1s"
  selector:
    matchLabels:
      fleet: %s
  profiles:
  - type: heap
`, name, nsA)
		if _, err := e.cp.KubectlAs(ctx, kubeA, strings.NewReader(pol), "apply", "-f", "-"); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("tenant A may create a ClusterProfilingPolicy: %v", err)
		}
		fleet := map[string]string{"fleet": nsA}
		e.pod(nsA, "fleet", "fleet-5c7d8-aaaaa", true, fleet)
		e.pod(nsB, "fleet", "fleet-5c7d8-bbbbb", true, fleet)
		if _, err := e.cp.KubectlStdin(ctx, pol, "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			e.cp.Kubectl(context.Background(), "delete", "clusterprofilingpolicy", name, "--wait=false")
		})
		get := func(path string) string {
			out, err := e.cp.Kubectl(ctx, "get", "clusterprofilingpolicy", name, "-o", "jsonpath="+path)
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(out)
		}
		e.eventually(30*time.Second, "the cluster policy Ready=True Capturing with 2 targets", func() error {
			got := get(`{.status.conditions[?(@.type=="Ready")].status}|{.status.conditions[?(@.type=="Ready")].reason}|{.status.targets}`)
			if got != "True|Capturing|2" {
				return fmt.Errorf("Ready|reason|targets = %q", got)
			}
			return nil
		})
		for _, ns := range []string{nsA, nsB} {
			e.eventually(30*time.Second, "the cluster policy captured a pod of "+ns, func() error {
				if n := countProfiles(t, e.pf, "fleet", "heap", map[string]string{"namespace": ns, "policy": name}); n == 0 {
					return fmt.Errorf("no heap profile of %s by %s", ns, name)
				}
				return nil
			})
		}
		// kubectl shows it like a namespaced policy.
		out, err := e.cp.Kubectl(ctx, "get", "clusterprofilingpolicies")
		if err != nil || !regexp.MustCompile(`(?m)^`+name+`\s+@every 1s\s+false\s+2\s`).MatchString(out) {
			t.Errorf("kubectl get clusterprofilingpolicies: %v\n%s", err, out)
		}
	})

	// The cluster admin trusts policies in the operator's own namespace
	// (only cluster admins may write there) with cross-namespace reach,
	// and allows one more sink.
	admSink, admHits := countingSink(t)
	op.proc.Stop(20 * time.Second)
	op = e.startOperator("operator-admin", "--allow-cross-namespace", operatorNS,
		"--allowed-profefe-urls", admSink.URL)
	_ = op

	t.Run("admin-cross-namespace", func(t *testing.T) {
		before := fromB()
		e.apply(operatorNS, tenancyPolicy("fleet", "  namespaceSelector:\n    any: true\n"))
		e.apply(operatorNS, tenancyPolicy("fleet-mirror", "  namespaceSelector:\n    matchNames: ["+nsB+"]\n  profefeURL: "+admSink.URL+"\n"))
		e.readyIs(operatorNS, "fleet", "True", "Capturing", 30*time.Second)
		if got := e.jsonpath(operatorNS, "fleet", "{.status.targets}"); got != "2" {
			t.Errorf("fleet targets = %q, want 2 (one pod in each tenant namespace)", got)
		}
		e.eventually(30*time.Second, "the admin's fleet policy captured tenant B's pod", func() error {
			if n := countProfiles(t, e.pf, "tenancy", "heap", map[string]string{"namespace": nsB, "policy": "fleet"}); n == 0 {
				return fmt.Errorf("no heap profile of %s by policy fleet (all of %s: %d, before %d)", nsB, nsB, fromB(), before)
			}
			return nil
		})
		e.eventually(30*time.Second, "the admin-allowed sink received pushes", func() error {
			if admHits.Load() == 0 {
				return fmt.Errorf("no request at %s", admSink.URL)
			}
			return nil
		})
		// The tenants' grants did not change with the admin's.
		e.readyIs(nsA, "steal-any", "False", "CrossNamespaceNotAllowed", 30*time.Second)
		e.readyIs(nsA, "exfil", "False", "ProfefeURLNotAllowed", 30*time.Second)
		e.waitRounds(operatorNS, "fleet", 2, 30*time.Second)
		if n := stolenHits.Load(); n != 0 {
			t.Errorf("tenant A's listener received %d requests", n)
		}
	})
}

// TestTenancySpoolBudget: --spool-max-bytes bounds the spool of all sinks
// together (issue 12, finding 3). Three policies push to three dead
// collectors the admin allowed; the spool never holds more than the cap,
// the oldest profiles are dropped, and each policy's status counts its own
// sink's drops.
func TestTenancySpoolBudget(t *testing.T) {
	e := newEnv(t)
	ns := e.cp.TestNamespace(t)
	const capBytes = 16 << 10
	var urls []string
	for i := 0; i < 3; i++ {
		s, _ := countingSink(t)
		urls = append(urls, s.URL)
		app := fmt.Sprintf("spool-%d", i)
		e.pod(ns, app, app+"-6f7d8-aaaaa", true, map[string]string{"app": app})
	}
	op := e.startOperator("operator", "--spool-dir", filepath.Join(t.TempDir(), "spool"),
		"--spool-max-bytes", fmt.Sprint(capBytes), "--allowed-profefe-urls", strings.Join(urls, ","))
	for i, u := range urls {
		e.apply(ns, fmt.Sprintf(`apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: dead-%d
spec:
  schedule: "@every 1s"
  selector:
    matchLabels:
      app: spool-%d
  profiles:
  - type: goroutine
  profefeURL: %s
`, i, i, u))
	}
	// Each sink alone stays under the cap for a while; together they
	// reach it within seconds.
	e.eventually(90*time.Second, "the spool dropped profiles", func() error {
		if d := metric(op.metricsAddr, "profefe_operator_spool_dropped_total"); d <= 0 {
			return fmt.Errorf("spool_dropped_total %v, spool_bytes %v", d, metric(op.metricsAddr, "profefe_operator_spool_bytes"))
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		e.waitRounds(ns, "dead-0", 3, 30*time.Second) // the gauges refresh every 5 s
		if b := metric(op.metricsAddr, "profefe_operator_spool_bytes"); b > capBytes {
			t.Errorf("spool_bytes %v over --spool-max-bytes %d across sinks", b, capBytes)
		}
	}
	var sum, dropped int
	for i := range urls {
		name := fmt.Sprintf("dead-%d", i)
		var b, d int
		fmt.Sscan(e.jsonpath(ns, name, "{.status.spoolBytes}"), &b)
		fmt.Sscan(e.jsonpath(ns, name, "{.status.spoolDropped}"), &d)
		sum += b
		dropped += d
	}
	if sum > capBytes {
		t.Errorf("policies' spoolBytes sum to %d, over the cap %d", sum, capBytes)
	}
	if dropped == 0 {
		t.Errorf("no policy's status counts a drop")
	}
}

// TestTenancyStatusIsPerPolicy: one namespace's policy with a dead
// profefeURL turned every policy in the cluster Degraded
// ProfefeUnavailable, naming that URL, with spoolBytes summed over all
// sinks (issue 12, finding 2). A policy's status describes its own sink.
func TestTenancyStatusIsPerPolicy(t *testing.T) {
	e := newEnv(t)
	nsA, nsB := e.cp.TestNamespace(t), e.cp.TestNamespace(t)
	dead, _ := countingSink(t)
	e.pod(nsA, "dead", "dead-6f7d8-aaaaa", true, map[string]string{"app": "tenancy"})
	e.pod(nsB, "fine", "fine-6f7d8-bbbbb", true, map[string]string{"app": "tenancy"})
	var extra []string
	// Builds from before the URL grant had no such flag (and sent
	// anywhere); the test still runs against them.
	if out, _ := exec.Command(e.operatorBn, "--help").CombinedOutput(); strings.Contains(string(out), "--allowed-profefe-urls") {
		extra = append(extra, "--allowed-profefe-urls", dead.URL)
	}
	op := e.startOperator("operator", extra...)
	e.apply(nsA, tenancyPolicy("dead", "  profefeURL: "+dead.URL+"\n"))
	e.apply(nsB, tenancyPolicy("fine", ""))
	e.eventually(60*time.Second, "the dead-URL policy Degraded ProfefeUnavailable", func() error {
		if r := e.jsonpath(nsA, "dead", `{.status.conditions[?(@.type=="Degraded")].reason}`); r != "ProfefeUnavailable" {
			return fmt.Errorf("Degraded reason %q", r)
		}
		return nil
	})
	// Several rounds of the healthy policy while the dead sink spools.
	e.waitRounds(nsB, "fine", 3, 30*time.Second)
	st := e.jsonpath(nsB, "fine", "{.status}")
	if strings.Contains(st, dead.URL) || strings.Contains(st, "ProfefeUnavailable") {
		t.Errorf("policy fine (its own profefe is up) reports the other namespace's sink: %s", st)
	}
	if b := e.jsonpath(nsB, "fine", "{.status.spoolBytes}"); b != "" && b != "0" {
		t.Errorf("policy fine: spoolBytes %s, its own sink spools nothing", b)
	}
	if v := metric(op.metricsAddr, `profefe_operator_deliveries_total{result="ok"}`); v <= 0 {
		t.Errorf("policy fine delivered nothing (deliveries ok %v)", v)
	}
}

// TestClusterPolicyCRDMissing: an install that predates the
// ClusterProfilingPolicy CRD still runs namespaced policies and becomes
// ready (it does not wait on a resource that is not there), says so in
// its log, and picks the cluster policies up once the CRD is applied,
// without a restart.
func TestClusterPolicyCRDMissing(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.cp.Kubectl(ctx, "delete", "crd", "clusterprofilingpolicies.profefe.com", "--wait=true", "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
	ns := e.cp.TestNamespace(t)
	app := map[string]string{"app": "tenancy"}
	e.pod(ns, "tenancy", "tenancy-5c7d8-ccccc", true, app)
	op := e.startOperator("operator") // waits for /readyz
	e.logSays(op, "ClusterProfilingPolicy CRD is not installed")
	e.apply(ns, tenancyPolicy("own", ""))
	e.readyIs(ns, "own", "True", "Capturing", 30*time.Second)

	if err := e.cp.InstallCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	name := "late-" + ns
	// The probe backs off from 1 s to 30 s; the CRD went missing only
	// moments ago, so it looks again within a few seconds.
	e.clusterPolicyPickedUp(ns, name)
	e.eventually(30*time.Second, "a profile stored by the cluster policy", func() error {
		if n := countProfiles(t, e.pf, "tenancy", "heap", map[string]string{"namespace": ns, "policy": name}); n == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
}

// TestClusterPolicyNotPermitted: a new operator on an older install's RBAC
// (no rights on ClusterProfilingPolicies) still becomes ready and runs
// namespaced policies, says why cluster policies are not watched, and
// watches them once the RBAC is updated, without a restart.
func TestClusterPolicyNotPermitted(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	b, err := os.ReadFile(filepath.Join(e.root, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	old := strings.ReplaceAll(strings.ReplaceAll(string(b), `, "clusterprofilingpolicies/status"`, ""), `, "clusterprofilingpolicies"`, "")
	if old == string(b) || strings.Contains(old, `"clusterprofilingpolicies`) {
		t.Fatalf("cannot make the older ClusterRole from config/rbac/role.yaml:\n%s", old)
	}
	if _, err := e.cp.KubectlStdin(ctx, old, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	ns := e.cp.TestNamespace(t)
	e.pod(ns, "tenancy", "tenancy-5c7d8-ddddd", true, map[string]string{"app": "tenancy"})
	op := e.startOperator("operator") // waits for /readyz
	e.logSays(op, "may not list ClusterProfilingPolicies")
	e.apply(ns, tenancyPolicy("own", ""))
	e.readyIs(ns, "own", "True", "Capturing", 30*time.Second)

	if _, err := e.cp.Kubectl(ctx, "apply", "-n", operatorNS, "-k", filepath.Join(e.root, "config", "rbac")); err != nil {
		t.Fatal(err)
	}
	name := "rbac-" + ns
	e.clusterPolicyPickedUp(ns, name)
}

// logSays waits until the operator's log holds `text`.
func (e *env) logSays(op *operator, text string) {
	e.t.Helper()
	e.eventually(30*time.Second, "the operator's log says "+text, func() error {
		if !strings.Contains(op.proc.Tail(200), text) {
			return fmt.Errorf("no such line in the log")
		}
		return nil
	})
}

// clusterPolicyPickedUp applies a ClusterProfilingPolicy `name` taking heap
// profiles of the app=tenancy pods of `ns` every second, and waits until
// the operator reports it Capturing from one target.
func (e *env) clusterPolicyPickedUp(ns, name string) {
	e.t.Helper()
	t, ctx := e.t, e.t.Context()
	if _, err := e.cp.KubectlStdin(ctx, fmt.Sprintf(`apiVersion: profefe.com/v1alpha1
kind: ClusterProfilingPolicy
metadata:
  name: %s
spec:
  schedule: "@every 1s"
  namespaceSelector:
    matchNames: [%s]
  selector:
    matchLabels:
      app: tenancy
  profiles:
  - type: heap
`, name, ns), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	e.eventually(60*time.Second, "the cluster policy is picked up", func() error {
		out, err := e.cp.Kubectl(ctx, "get", "clusterprofilingpolicy", name, "-o", `jsonpath={.status.targets}|{.status.conditions[?(@.type=="Ready")].reason}`)
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(out); got != "1|Capturing" {
			return fmt.Errorf("targets|Ready reason = %q", got)
		}
		return nil
	})
}
