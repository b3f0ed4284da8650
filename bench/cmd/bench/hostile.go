package main

// The hostile-pod memory rows (-types hostile): what pods that answer with
// an endless body, or with a gzip bomb, cost the operator in memory. Each
// mode gets a pproftarget of its own, -hostile-pods pod objects on its IP
// and a fresh operator with one heap policy on "@every 1s" over them, for
// -seconds. The rows give the operator's peak RSS (VmHWM) against its RSS
// before the policy, and the captures by result: the operator must refuse
// each body at its size cap (too_large) or as no profile (not_profile),
// holding no more than its in-flight byte budget.

import (
	"fmt"
	"log"
	"sort"
	"strings"
	"time"

	"profefe-operator/e2e/harness"
)

func (s *b) runHostile() error {
	const ns = "bench-hostile"
	if err := s.cp.CreateNamespace(s.ctx, ns, nil); err != nil {
		return err
	}
	for _, mode := range []string{"huge", "gzipbomb"} {
		ip := harness.AllocIP()
		tg, err := harness.StartTarget(s.ctx, s.dir, ip, podPort, "-mode", mode)
		if err != nil {
			return err
		}
		app := "hostile-" + mode
		err = parallel(s.ctx, mode+" pods created", s.o.workers, s.o.hostilePods, func(i int) error {
			return s.createPod(ns, fmt.Sprintf("%s-%03d", app, i), map[string]string{"app": app}, ip, nil)
		})
		if err != nil {
			tg.Stop()
			return err
		}
		op, err := s.startOperator("operator-"+app, "--namespace", ns)
		if err != nil {
			tg.Stop()
			return err
		}
		rss0, _, err := procRSS(op.pid())
		if err == nil {
			_, err = s.cp.Create(s.ctx, "/apis/profefe.com/v1alpha1/namespaces/"+ns+"/profilingpolicies",
				policyObject(ns, app, map[string]string{"app": app}, "@every 1s", "heap", false))
		}
		if err == nil {
			log.Printf("hostile: %s: %d pods, heap every second, %v", mode, s.o.hostilePods, time.Duration(s.o.seconds*float64(time.Second)))
			err = sleep(s.ctx, s.o.seconds)
		}
		var m map[string]float64
		if err == nil {
			m, err = scrape(op.metrics)
		}
		rss1, hwm1, perr := procRSS(op.pid())
		if err == nil {
			err = perr
		}
		op.stop()
		tg.Stop()
		if err != nil {
			return err
		}
		res := map[string]float64{}
		for k, v := range m {
			if !strings.HasPrefix(k, "profefe_operator_captures_total{") || !strings.Contains(k, `policy="`+ns+"/"+app+`"`) {
				continue
			}
			if i := strings.Index(k, `result="`); i >= 0 {
				r := k[i+len(`result="`):]
				res[r[:strings.IndexByte(r, '"')]] += v
			}
		}
		var parts []string
		for r, v := range res {
			parts = append(parts, fmt.Sprintf("%s %.0f", r, v))
		}
		sort.Strings(parts)
		what := map[string]string{"huge": "an endless body", "gzipbomb": "an endless gzip stream of zeros"}[mode]
		s.row(fmt.Sprintf("hostile %s: operator peak RSS, %d pods", mode, s.o.hostilePods), fmt.Sprintf("%.1f MiB", mib(hwm1)),
			fmt.Sprintf("pods answer %s; RSS %.1f MiB before the policy, %.1f MiB after %gs; captures: %s",
				what, mib(rss0), mib(rss1), s.o.seconds, strings.Join(parts, ", ")))
	}
	return nil
}
