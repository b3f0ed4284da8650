package main

// kube-profefe's kprofefe beside the operator: one kprofefe run, then one
// operator round, over the same pods, targets and profefe (bench/README.md).

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"profefe-operator/e2e/harness"
)

const (
	kpNS  = "bench-kp"
	kpPin = "2d933a0a63ba" // the commit bench/kprofefe/go.mod pins (v0.10.0 + 5 docs commits)
	// kprofefe profiles CPU for a fixed 30 s; the operator's policy asks
	// the same.
	kpCPUSeconds = 30
	kpService    = "bench-kp-operator" // the operator's profefe service; kprofefe uses pod names
	kpSchedule   = "@every 1m"         // first round 1 min after the policy is seen, the next 1 min later
)

// kpTypes are the types kprofefe stores: it fetches allocs too, but its
// profefe client has no type for it and drops it.
var kpTypes = []string{"cpu", "heap", "goroutine", "mutex", "block", "threadcreate"}

var kprofefeBin = flag.String("kprofefe", "", "kube-profefe's kprofefe, built by bench/kprofefe/build.sh: run it once, then one operator round, over one pod per target (empty: the row says skipped)")

// kpRun is what one collector did.
type kpRun struct {
	wall, cpu float64 // seconds
	maxRSS    int64   // bytes (rusage maxrss)
	stored    map[string]int
}

func (r kpRun) storedTotal() (n int) {
	for _, v := range r.stored {
		n += v
	}
	return n
}

func (r kpRun) storedByType() string {
	var p []string
	for _, t := range kpTypes {
		p = append(p, fmt.Sprintf("%s %d", t, r.stored[t]))
	}
	return strings.Join(p, ", ")
}

// runKprofefe runs kprofefe once over one pod per target (pods sharing a
// target would share its single CPU profiler), then a fresh operator,
// watching only those pods, for one round of a policy asking the types
// kprofefe stores. Both are children of this process: CPU-s and peak RSS
// are their getrusage figures.
func (s *b) runKprofefe() error {
	if *kprofefeBin == "" {
		s.row("kprofefe", "skipped", "no -kprofefe; to run it: git clone https://github.com/gianarb/kube-profefe /tmp/kube-profefe && git -C /tmp/kube-profefe checkout "+
			kpPin+" && bench/run.sh --kprofefe-src /tmp/kube-profefe")
		return nil
	}
	if err := s.cp.CreateNamespace(s.ctx, kpNS, nil); err != nil {
		return err
	}
	var pods []string
	for i, tg := range s.targets {
		name := fmt.Sprintf("kp-%d", i)
		if err := s.createPod(kpNS, name, map[string]string{"app": "kp"}, tg.IP, nil); err != nil {
			return err
		}
		pods = append(pods, name)
	}
	n := len(pods)
	since := time.Now().Add(-time.Minute)

	log.Printf("kprofefe: %s over %d pods in %s", *kprofefeBin, n, kpNS)
	kp, kpNote, err := s.kprofefeOnce(n)
	if err != nil {
		return err
	}
	if kp.stored, err = s.storedPerType(pods, since); err != nil {
		return err
	}
	log.Printf("kprofefe: %.1f s, %.2f CPU-s, peak RSS %.1f MiB, stored %s", kp.wall, kp.cpu, mib(kp.maxRSS), kp.storedByType())

	op, opNote, err := s.operatorRound(n)
	if err != nil {
		return err
	}
	if op.stored, err = s.storedPerType([]string{kpService}, since); err != nil {
		return err
	}
	log.Printf("operator: one round %.1f s, %.2f CPU-s, peak RSS %.1f MiB, stored %s", op.wall, op.cpu, mib(op.maxRSS), op.storedByType())

	kpn := fmt.Sprintf("kprofefe (%s), %d pods, one run:", kpPin[:7], n)
	s.row(kpn+" wall time", fmt.Sprintf("%.1f s", kp.wall), "process start to exit: "+kpNote[0])
	s.row("  kprofefe CPU-s", fmt.Sprintf("%.2f", kp.cpu), "getrusage utime+stime of the child")
	s.row("  kprofefe peak RSS", fmt.Sprintf("%.1f MiB", mib(kp.maxRSS)), "getrusage maxrss of the child")
	s.row("  kprofefe profiles stored", fmt.Sprint(kp.storedTotal()), kp.storedByType()+"; "+kpNote[1])
	opn := fmt.Sprintf("operator, the same %d pods, one round:", n)
	s.row(opn+" wall time", fmt.Sprintf("%.1f s", op.wall), opNote[0])
	s.row("  operator CPU-s", fmt.Sprintf("%.2f", op.cpu), opNote[1])
	s.row("  operator peak RSS", fmt.Sprintf("%.1f MiB", mib(op.maxRSS)), "getrusage maxrss of the child")
	s.row("  operator profiles stored", fmt.Sprint(op.storedTotal()), op.storedByType()+"; "+opNote[2])
	s.row("operator/kprofefe wall, CPU-s, peak RSS", fmt.Sprintf("%.2f / %.2f / %.2f", op.wall/kp.wall, op.cpu/kp.cpu, float64(op.maxRSS)/float64(kp.maxRSS)),
		fmt.Sprintf("profiles stored %d vs %d", op.storedTotal(), kp.storedTotal()))
	return nil
}

// kprofefeOnce runs kprofefe over the pods of kpNS and returns its figures
// and two notes: how the run went, and the errors its log shows.
func (s *b) kprofefeOnce(n int) (r kpRun, note [2]string, err error) {
	logPath := filepath.Join(s.dir, "kprofefe.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return r, note, err
	}
	defer logf.Close()
	// 10 workers, each pod taking its 30 s CPU profile: a batch of 10 pods
	// per 30 s, and some slack.
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(60+60*((n+9)/10))*time.Second)
	defer cancel()
	// Outside a cluster: rest.InClusterConfig must fail so that it reads
	// --kubeconfig. It lists the pods with the admin's credentials.
	cmd := exec.CommandContext(ctx, *kprofefeBin, "--kubeconfig", s.cp.AdminKubeconfig, "--namespace", kpNS,
		"--selector", "app=kp", "--profefe-hostport", s.pf.URL)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBERNETES_SERVICE_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	runErr := cmd.Run()
	r.wall = time.Since(t0).Seconds()
	if cmd.ProcessState == nil {
		return r, note, fmt.Errorf("kprofefe: %w", runErr)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu = tv(ru.Utime) + tv(ru.Stime)
	r.maxRSS = ru.Maxrss * 1024
	b, _ := os.ReadFile(logPath)
	lg := string(b)
	var pushErr, empty int
	for _, l := range strings.Split(lg, "\n") {
		if strings.Contains(l, "Skip this profile") && strings.Contains(l, `"error"`) {
			pushErr++
			if strings.Contains(l, "profile is empty") {
				empty++
			}
		}
	}
	note[0] = fmt.Sprintf("list pods, then 10 workers each fetch a pod's 7 types at once (cpu %d s), push; exit %s", kpCPUSeconds, exitText(runErr))
	note[1] = fmt.Sprintf("log: %d stored, %d fetch errors, %d pushes refused by profefe (%d of them empty profiles); allocs fetched, then dropped (no profefe type)",
		strings.Count(lg, "Profile stored in profefe."), strings.Count(lg, "Impossible to gather the profile"), pushErr, empty)
	if runErr != nil {
		log.Printf("kprofefe failed (%v); log tail:\n%s", runErr, tailLines(lg, 20))
	}
	return r, note, nil
}

func exitText(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// operatorRound starts a fresh operator watching only kpNS, applies a
// policy for kpTypes over its pods, waits for the first round to be over
// (every capture answered and delivered), then stops the operator. Notes:
// the wall time's span, the CPU breakdown, the capture results.
func (s *b) operatorRound(n int) (r kpRun, note [3]string, err error) {
	t0 := time.Now()
	op, err := s.startOperator("operator-kp", "--namespace", kpNS)
	if err != nil {
		return r, note, err
	}
	defer op.stop()
	var prof strings.Builder
	for _, t := range kpTypes {
		if t == "cpu" {
			fmt.Fprintf(&prof, "  - type: cpu\n    seconds: %d\n", kpCPUSeconds)
		} else {
			fmt.Fprintf(&prof, "  - type: %s\n", t)
		}
	}
	y := fmt.Sprintf(`apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: kp
  namespace: %s
spec:
  schedule: %q
  selector:
    matchLabels:
      app: kp
  service: %s
  profiles:
%s`, kpNS, kpSchedule, kpService, prof.String())
	if _, err := s.cp.KubectlStdin(s.ctx, y, "apply", "-f", "-"); err != nil {
		return r, note, err
	}
	c0, err := procCPU(op.pid())
	if err != nil {
		return r, note, err
	}
	log.Printf("operator: policy %s/kp on %q for %s over %d pods; waiting for its first round", kpNS, kpSchedule, strings.Join(kpTypes, ","), n)
	want := float64(n * len(kpTypes))
	var m map[string]float64
	err = poll(s.ctx, 3*time.Minute, "one operator round over the kprofefe pods", func() error {
		if ex, werr := op.proc.Exited(); ex {
			return permanent{fmt.Errorf("operator exited (%v):\n%s", werr, op.proc.Tail(20))}
		}
		var err error
		if m, err = scrape(op.metrics); err != nil {
			return err
		}
		var captured, ok, delivered float64
		for k, v := range m {
			switch {
			case strings.HasPrefix(k, "profefe_operator_captures_total{"):
				captured += v
				if labelValue(k, "result") == "ok" {
					ok += v
				}
			case strings.HasPrefix(k, "profefe_operator_deliveries_total{"):
				delivered += v
			}
		}
		if captured < want || delivered < ok || m["profefe_operator_captures_inflight"] != 0 || m["profefe_operator_spool_profiles"] != 0 {
			return fmt.Errorf("captures %v of %v, %v ok, %v delivered, %v in flight, %v spooled", captured, want, ok, delivered,
				m["profefe_operator_captures_inflight"], m["profefe_operator_spool_profiles"])
		}
		return nil
	})
	if err != nil {
		return r, note, err
	}
	end := time.Now()
	c1, err := procCPU(op.pid())
	if err != nil {
		return r, note, err
	}
	pol, err := s.cp.Get(s.ctx, "/apis/profefe.com/v1alpha1/namespaces/"+kpNS+"/profilingpolicies/kp")
	if err != nil {
		return r, note, err
	}
	st, _ := pol["status"].(map[string]any)
	last, _ := st["lastScheduleTime"].(string)
	start, err := time.Parse(time.RFC3339, last)
	if err != nil {
		return r, note, fmt.Errorf("policy %s/kp: status.lastScheduleTime %q: %w", kpNS, last, err)
	}
	if err := op.stop(); err != nil {
		return r, note, err
	}
	ru := op.proc.Cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu = tv(ru.Utime) + tv(ru.Stime)
	r.maxRSS = ru.Maxrss * 1024
	r.wall = end.Sub(start).Seconds()
	note[0] = fmt.Sprintf("round start (status.lastScheduleTime) to its last delivery; %d captures, cpu %d s; process up %.0f s (%s)",
		int(want), kpCPUSeconds, end.Sub(t0).Seconds(), kpSchedule)
	note[1] = fmt.Sprintf("getrusage of the child, whole life (start, LIST+watch, the wait, the round); from the policy's apply to the round's end %.2f (/proc)", c1-c0)
	res := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, "profefe_operator_captures_total{") && v > 0 {
			res[labelValue(k, "result")] += v
		}
	}
	var rs []string
	for _, k := range sortedKeys(res) {
		rs = append(rs, fmt.Sprintf("%s %.0f", k, res[k]))
	}
	note[2] = "captures: " + strings.Join(rs, ", ")
	if res["empty"] > 0 {
		note[2] += " (empty profiles are skipped, not stored)"
	}
	return r, note, nil
}

// storedPerType counts the profiles profefe holds for the services, by type,
// created after since.
func (s *b) storedPerType(services []string, since time.Time) (map[string]int, error) {
	out := map[string]int{}
	for _, svc := range services {
		for _, t := range kpTypes {
			ps, err := s.pf.List(s.ctx, harness.ListQuery{Service: svc, Type: t, From: since, To: time.Now().Add(time.Hour), Limit: 1000000})
			if err != nil {
				return nil, fmt.Errorf("profefe: %s %s: %w", svc, t, err)
			}
			out[t] += len(ps)
		}
	}
	return out, nil
}

// labelValue returns the value of label name in a scraped key such as
// `name{a="x",b="y"}`.
func labelValue(key, name string) string {
	i := strings.Index(key, name+`="`)
	if i < 0 || (i > 0 && key[i-1] != '{' && key[i-1] != ',') {
		return ""
	}
	v := key[i+len(name)+2:]
	if j := strings.IndexByte(v, '"'); j >= 0 {
		return v[:j]
	}
	return ""
}

func sortedKeys(m map[string]float64) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
