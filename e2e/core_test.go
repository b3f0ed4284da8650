package e2e

// Regression tests for the operator's scheduling and status core: each
// subtest names the defect it guards against and failed on the controller
// before the round clock and per-round tracking (see the commit that added
// it for the output).

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"profefe-operator/e2e/harness"
)

func TestOperatorCore(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()

	// With the default --spread-window 10s, @every 1s captured a pod only
	// every ~4 s: the window must be bounded by the period.
	t.Run("spread-bounded-by-period", func(t *testing.T) {
		ns := e.subtest(t)
		labels := map[string]string{"app": "fast"}
		e.pod(ns, "fast", "fast-1", true, labels)
		e.pod(ns, "fast", "fast-2", true, labels)
		op := e.startOperator("op-spread", "--spread-window", "10s")
		e.simplePolicy(ns, "fast", "@every 1s", "fast", "[{type: goroutine}]", "")
		// Once the first profiles are in, count what 8 s of rounds
		// bring, by the operator's own round times.
		e.eventually(30*time.Second, "first goroutine profiles of both pods", func() error {
			for _, p := range []string{"fast-1", "fast-2"} {
				if n := countProfiles(t, e.pf, "fast", "goroutine", map[string]string{"pod": p}); n == 0 {
					return fmt.Errorf("none of %s yet", p)
				}
			}
			return nil
		})
		start := e.lastSchedule(ns, "fast")
		before := map[string]int{}
		for _, p := range []string{"fast-1", "fast-2"} {
			before[p] = countProfiles(t, e.pf, "fast", "goroutine", map[string]string{"pod": p})
		}
		e.eventually(40*time.Second, "8 s of rounds after "+start.Format(time.RFC3339), func() error {
			if last := e.lastSchedule(ns, "fast"); last.Sub(start) < 8*time.Second {
				return fmt.Errorf("lastScheduleTime %s", last.Format(time.RFC3339))
			}
			return nil
		})
		e.kubectl("delete", "ppol", "fast", "-n", ns)
		e.settle(op, 30*time.Second)
		for _, p := range []string{"fast-1", "fast-2"} {
			got := countProfiles(t, e.pf, "fast", "goroutine", map[string]string{"pod": p}) - before[p]
			// 8 rounds at least passed; allow one at each end.
			if got < 6 {
				t.Errorf("pod %s: %d goroutine profiles in 8 s of @every 1s rounds, want >= 6", p, got)
			}
		}
		if n := metric(op.metricsAddr, `profefe_operator_captures_total{policy="`+ns+`/fast",type="goroutine",result="busy"}`); n > 1 {
			t.Errorf("%v captures skipped as busy: rounds overlapped at their own rate", n)
		}
	})

	// lastRound stayed 0/0/0 and counted every capture twice, so Degraded
	// read "2 of 4 failed" for 1 of 2.
	t.Run("last-round-counts-each-capture-once", func(t *testing.T) {
		ns := e.subtest(t)
		labels := map[string]string{"app": "half"}
		e.pod(ns, "half", "half-good", true, labels)
		e.pod(ns, "half", "half-bad", true, labels, "-mode", "500")
		op := e.startOperator("op-round")
		e.simplePolicy(ns, "half", "@every 2s", "half", "[{type: goroutine}]", "")
		e.eventually(30*time.Second, "a round's tally in status.lastRound", func() error {
			r := e.jsonpath(ns, "half", "{.status.lastRound.succeeded}/{.status.lastRound.failed}/{.status.lastRound.skipped}")
			if r != "1/1/0" {
				return fmt.Errorf("lastRound succeeded/failed/skipped = %q, want 1/1/0", r)
			}
			return nil
		})
		msg := e.jsonpath(ns, "half", `{.status.conditions[?(@.type=="Degraded")].message}`)
		if !strings.Contains(msg, "1 of 2") {
			t.Errorf("Degraded message %q, want it to say 1 of 2 captures failed", msg)
		}
		// The counters agree with what profefe holds, once settled.
		e.kubectl("patch", "ppol", "half", "-n", ns, "--type=merge", "-p", `{"spec":{"suspend":true}}`)
		e.settle(op, 30*time.Second)
		stored := countProfiles(t, e.pf, "half", "goroutine", map[string]string{"namespace": ns})
		e.eventually(20*time.Second, "capturesSucceeded equal to the profiles stored", func() error {
			got := e.jsonpath(ns, "half", "{.status.capturesSucceeded}")
			if got != strconv.Itoa(stored) {
				return fmt.Errorf("capturesSucceeded %s, profefe holds %d", got, stored)
			}
			return nil
		})
	})

	// A capture already queued or running still ran after the pod opted
	// out, and stored a profile under the pod's labels.
	t.Run("opt-out-cancels-captures", func(t *testing.T) {
		ns := e.subtest(t)
		labels := map[string]string{"app": "slow"}
		e.pod(ns, "slow", "slow-1", true, labels, "-mode", "slow", "-slow-rate", "512")
		op := e.startOperator("op-optout")
		e.simplePolicy(ns, "slow", "@every 5s", "slow", "[{type: heap}]", "timeoutSeconds: 60")
		e.eventually(45*time.Second, "a capture of the slow pod in flight", func() error {
			if v := metric(op.metricsAddr, "profefe_operator_captures_inflight"); v < 1 {
				return fmt.Errorf("captures in flight: %v", v)
			}
			return nil
		})
		e.kubectl("annotate", "--overwrite", "pod", "slow-1", "-n", ns, "profefe.com/enable=false")
		e.eventually(10*time.Second, "the capture cancelled", func() error {
			if v := metric(op.metricsAddr, "profefe_operator_captures_inflight"); v != 0 {
				return fmt.Errorf("captures in flight: %v", v)
			}
			return nil
		})
		e.settle(op, 30*time.Second)
		if n := countProfiles(t, e.pf, "slow", "heap", map[string]string{"pod": "slow-1"}); n != 0 {
			t.Errorf("%d profiles of slow-1 stored after it opted out", n)
		}
		if got := e.jsonpath(ns, "slow", "{.status.capturesFailed}"); got != "" && got != "0" {
			t.Errorf("capturesFailed %s: a cancelled capture is not a failure", got)
		}
	})

	// Profiles spooled by one run and replayed by the next were credited
	// to "a policy that is gone": replay started before the policies were
	// planned.
	t.Run("spool-replay-credited-after-restart", func(t *testing.T) {
		ns := e.subtest(t)
		labels := map[string]string{"app": "spooled"}
		e.pod(ns, "spooled", "spooled-1", true, labels)
		spool := filepath.Join(t.TempDir(), "spool")
		if err := e.pf.StopServer(); err != nil {
			t.Fatal(err)
		}
		restarted := false
		t.Cleanup(func() {
			if !restarted {
				_ = e.pf.StartServer(ctx)
			}
		})
		op := e.startOperator("op-spool-1", "--spool-dir", spool)
		e.simplePolicy(ns, "spooled", "@every 1s", "spooled", "[{type: goroutine}]", "")
		e.eventually(30*time.Second, "profiles waiting in the spool", func() error {
			if v := metric(op.metricsAddr, "profefe_operator_spool_profiles"); v < 3 {
				return fmt.Errorf("spooled: %v", v)
			}
			return nil
		})
		e.kubectl("patch", "ppol", "spooled", "-n", ns, "--type=merge", "-p", `{"spec":{"suspend":true}}`)
		e.observed(ns, "spooled", 20*time.Second)
		e.eventually(10*time.Second, "no capture in flight", func() error {
			if v := metric(op.metricsAddr, "profefe_operator_captures_inflight"); v != 0 {
				return fmt.Errorf("captures in flight: %v", v)
			}
			return nil
		})
		spooled := int(metric(op.metricsAddr, "profefe_operator_spool_profiles"))
		before, _ := strconv.Atoi(e.jsonpath(ns, "spooled", "{.status.capturesSucceeded}"))
		if err := op.proc.Stop(20 * time.Second); err != nil {
			t.Logf("first operator: %v", err)
		}
		if err := e.pf.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		restarted = true
		op2 := e.startOperator("op-spool-2", "--spool-dir", spool)
		e.settle(op2, 60*time.Second)
		stored := countProfiles(t, e.pf, "spooled", "goroutine", map[string]string{"namespace": ns})
		if stored < spooled {
			t.Fatalf("profefe holds %d profiles, %d were spooled", stored, spooled)
		}
		e.eventually(20*time.Second, "the replayed profiles credited to the policy", func() error {
			got, _ := strconv.Atoi(e.jsonpath(ns, "spooled", "{.status.capturesSucceeded}"))
			if got != before+stored {
				return fmt.Errorf("capturesSucceeded %d, want %d before the restart + %d replayed", got, before, stored)
			}
			return nil
		})
		if log, _ := os.ReadFile(op2.proc.LogPath); strings.Contains(string(log), "policy that is gone") {
			t.Errorf("the second run credited replayed profiles to a policy that is gone:\n%s", op2.proc.Tail(20))
		}
	})

	// After failover the new leader wrote the status it had read at its
	// own start: counters went backwards, lastErrors and recentProfiles
	// reverted.
	t.Run("failover-keeps-counters-monotone", func(t *testing.T) {
		ns := e.subtest(t)
		e.pod(ns, "mono", "mono-1", true, map[string]string{"app": "mono"})
		// The standby starts first, so its start-up copy of the status
		// is the oldest there is.
		e.simplePolicy(ns, "mono", "@every 1s", "mono", "[{type: goroutine}]", "")
		a := e.startOperator("mono-a", "--leader-elect", "--identity", "mono-a")
		var leader, standby *operator
		e.eventually(30*time.Second, "mono-a leads", func() error {
			if metric(a.metricsAddr, "profefe_operator_leader") != 1 {
				return fmt.Errorf("not yet")
			}
			leader = a
			return nil
		})
		standby = e.startOperator("mono-b", "--leader-elect", "--identity", "mono-b")
		var high int64
		e.eventually(60*time.Second, "the leader's counters grow past what the standby saw at start", func() error {
			high, _ = strconv.ParseInt(e.jsonpath(ns, "mono", "{.status.capturesSucceeded}"), 10, 64)
			if high < 20 {
				return fmt.Errorf("capturesSucceeded %d", high)
			}
			return nil
		})
		if err := leader.proc.Cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		// Until the new leader has written twice, every reading must be
		// at least the highest seen.
		writes := 0
		e.eventually(45*time.Second, "the standby takes over and keeps counting up", func() error {
			v, _ := strconv.ParseInt(e.jsonpath(ns, "mono", "{.status.capturesSucceeded}"), 10, 64)
			if v < high {
				t.Fatalf("capturesSucceeded went back from %d to %d after failover", high, v)
			}
			if v > high {
				high = v
				if metric(standby.metricsAddr, "profefe_operator_leader") == 1 {
					writes++
				}
			}
			if writes < 3 {
				return fmt.Errorf("capturesSucceeded %d, %d increases under the new leader", v, writes)
			}
			return nil
		})
	})

	// Graceful shutdown did not wait for pushes in flight; with the
	// in-memory spool they were lost.
	t.Run("shutdown-waits-for-pushes", func(t *testing.T) {
		ns := e.subtest(t)
		e.pod(ns, "bye", "bye-1", true, map[string]string{"app": "bye"})
		e.pod(ns, "bye", "bye-2", true, map[string]string{"app": "bye"})
		px := newSlowProxy(t, e.pf.URL, 1500*time.Millisecond)
		op := e.startOperator("op-bye", "--profefe-url", px.URL)
		e.simplePolicy(ns, "bye", "@every 1s", "bye", "[{type: goroutine}]", "")
		e.eventually(30*time.Second, "pushes in flight through the slow proxy", func() error {
			if n := px.inflight.Load(); n < 1 {
				return fmt.Errorf("%d pushes in flight", n)
			}
			return nil
		})
		if err := op.proc.Stop(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := op.proc.Exited(); err != nil {
			t.Errorf("operator exited with %v on SIGTERM", err)
		}
		// Once the operator is gone, every push the proxy holds ends:
		// answered, or abandoned by its client.
		e.eventually(10*time.Second, "the proxy's pushes ended", func() error {
			if n := px.inflight.Load(); n != 0 {
				return fmt.Errorf("%d pushes in flight", n)
			}
			return nil
		})
		started, done, aborted := px.started.Load(), px.done.Load(), px.aborted.Load()
		if aborted != 0 || done != started {
			t.Errorf("pushes: %d started, %d answered, %d abandoned by the operator at shutdown",
				started, done, aborted)
		}
	})
}

// subtest points the env's helpers at subtest t (so they fail it, not the
// whole test) and gives it its own namespace and its own profefe, since
// settle() compares one operator with all that profefe holds.
func (e *env) subtest(t *testing.T) string {
	e.t = t
	e.pf = harness.TestProfefe(t)
	return e.cp.TestNamespace(t)
}

// simplePolicy applies a policy selecting app=`app` with the given
// profiles (a YAML flow list) and extra spec lines (e.g. "timeoutSeconds: 60").
func (e *env) simplePolicy(ns, name, schedule, app, profiles, extra string) {
	e.t.Helper()
	if extra != "" {
		extra = "\n  " + extra
	}
	e.apply(ns, fmt.Sprintf(`apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: %s
spec:
  schedule: %q
  selector: {matchLabels: {app: %s}}
  profiles: %s%s
`, name, schedule, app, profiles, extra))
}

// lastSchedule is the policy's status.lastScheduleTime (zero when unset).
func (e *env) lastSchedule(ns, name string) time.Time {
	e.t.Helper()
	v, _ := time.Parse(time.RFC3339, e.jsonpath(ns, name, "{.status.lastScheduleTime}"))
	return v
}

func (e *env) kubectl(args ...string) {
	e.t.Helper()
	if out, err := e.cp.Kubectl(e.t.Context(), args...); err != nil {
		e.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// slowProxy forwards to profefe after a delay and counts pushes: started,
// answered, and abandoned by the client before the answer.
type slowProxy struct {
	URL                    string
	inflight               atomic.Int64
	started, done, aborted atomic.Int64
}

func newSlowProxy(t *testing.T, target string, delay time.Duration) *slowProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	px := &slowProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			rp.ServeHTTP(w, r)
			return
		}
		px.started.Add(1)
		px.inflight.Add(1)
		defer px.inflight.Add(-1)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			px.aborted.Add(1)
			return
		}
		rp.ServeHTTP(w, r)
		if r.Context().Err() != nil {
			px.aborted.Add(1)
			return
		}
		px.done.Add(1)
	}))
	t.Cleanup(srv.Close)
	px.URL = srv.URL
	return px
}
