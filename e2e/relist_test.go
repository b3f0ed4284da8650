package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"profefe-operator/e2e/harness"
)

// TestRelistWhileAway: pods churn while the operator cannot watch (it is
// stopped, and kube-apiserver restarts before the changes, so no watch
// event reaches it; then etcd is compacted and kube-apiserver restarts
// again), so its resourceVersion is gone when it continues: it must relist, and take in every difference
// (deleted pods, pods that left the selection, new pods), which reach its
// caches a slice per loop iteration. The targets of a namespaced policy
// and of a cluster policy (walked through the pod index of every
// namespace) must come out exact.
func TestRelistWhileAway(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ns := e.cp.TestNamespace(t)
	app := "relist-" + harness.RandHex(4)
	mk := func(name string) {
		t.Helper()
		p := harness.Pod{Namespace: ns, Name: name, Labels: map[string]string{"app": app},
			Annotations: map[string]string{"profefe.com/enable": "true"}, Port: 6060}
		if _, err := e.cp.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
		// No process behind the IP: the policies run hourly, nothing is captured.
		if err := e.cp.MarkRunning(ctx, ns, name, harness.AllocIP()); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 30; i++ {
		mk(fmt.Sprintf("r-%02d", i))
	}
	op := e.startOperator("relist")
	e.policy(ns, "r", "@every 1h", app, false)
	cluster := "relist-" + ns
	if _, err := e.cp.KubectlStdin(ctx, fmt.Sprintf(`apiVersion: profefe.com/v1alpha1
kind: ClusterProfilingPolicy
metadata:
  name: %s
spec:
  schedule: "@every 1h"
  selector:
    matchLabels:
      app: %s
  profiles:
  - type: heap
`, cluster, app), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cp.Kubectl(ctx, "delete", "clusterprofilingpolicy", cluster, "--ignore-not-found") })
	targets := func(want string) {
		t.Helper()
		e.eventually(60*time.Second, "both policies count "+want+" targets", func() error {
			got := e.jsonpath(ns, "r", "{.status.targets}")
			out, err := e.cp.Kubectl(ctx, "get", "clusterprofilingpolicy", cluster, "-o", "jsonpath={.status.targets}")
			if err != nil {
				return err
			}
			if got != want || strings.TrimSpace(out) != want {
				return fmt.Errorf("policy %q, cluster policy %q", got, strings.TrimSpace(out))
			}
			return nil
		})
	}
	targets("30")
	lists := func() float64 { return metric(op.metricsAddr, `profefe_operator_lists_total{resource="pods"}`) }
	lists0 := lists()
	if lists0 < 1 {
		t.Fatalf("profefe_operator_lists_total{resource=\"pods\"} = %v, want >= 1", lists0)
	}

	pid := op.proc.Cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	// Its watches end here, before any change below could be sent on them.
	if err := e.cp.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ { // deleted
		if err := e.cp.DeletePod(ctx, ns, fmt.Sprintf("r-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 10; i < 20; i++ { // out of the selection
		path := fmt.Sprintf("/api/v1/namespaces/%s/pods/r-%02d", ns, i)
		if _, err := e.cp.Patch(ctx, path, map[string]any{"metadata": map[string]any{
			"labels": map[string]string{"app": app + "-gone"}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ { // new
		mk(fmt.Sprintf("n-%02d", i))
	}
	if _, err := e.cp.CompactEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.cp.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	e.eventually(60*time.Second, "the operator relists the pods", func() error {
		if n := lists(); n <= lists0 {
			return fmt.Errorf("pods lists %v, was %v before", n, lists0)
		}
		return nil
	})
	targets("15")
	// The loop's own figures, by which a relist's stall is read.
	for _, series := range []string{
		"profefe_operator_loop_iteration_seconds_count",
		"profefe_operator_loop_iteration_cpu_seconds_count",
	} {
		if v := metric(op.metricsAddr, series); v <= 0 {
			t.Errorf("%s = %v, want > 0", series, v)
		}
	}
	for _, series := range []string{
		"profefe_operator_loop_max_stall_seconds",
		"profefe_operator_loop_max_stall_cpu_seconds",
	} {
		if v := metric(op.metricsAddr, series); v < 0 {
			t.Errorf("%s is not exported", series)
		}
	}
}
