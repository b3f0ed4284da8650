// Command devenv runs the demo environment of profefe-operator on loopback:
// a real kube-apiserver + etcd, a real profefe, and N pproftarget processes
// playing the pods of a Deployment "demo" (owner chain Deployment ->
// ReplicaSet -> Pod, annotated profefe.com/enable=true). It writes an env file
// once everything is up, stays up until SIGINT/SIGTERM, then stops every
// process and removes what it made.
//
//	go run ./cmd/devenv -env-file /tmp/ppop.env -targets 3
//	. /tmp/ppop.env; kubectl --kubeconfig "$KUBECONFIG" get pods -n "$PPOP_NAMESPACE" -o wide
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"profefe-operator/e2e/harness"
)

func main() {
	envFile := flag.String("env-file", "", "write KUBECONFIG=, PROFEFE_URL=, ... here once ready (removed on exit)")
	n := flag.Int("targets", 3, "number of demo pods (pproftarget processes)")
	ns := flag.String("namespace", "demo", "namespace of the demo pods")
	dir := flag.String("dir", "", "state folder (default: a temporary one, removed on exit)")
	port := flag.Int("port", 6060, "pprof port of the demo pods")
	targetFlags := flag.String("target-flags", "-mutex -block", "extra pproftarget flags for every pod")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("devenv: ")
	if err := run(*envFile, *n, *ns, *dir, *port, strings.Fields(*targetFlags)); err != nil {
		log.Fatal(err)
	}
}

func run(envFile string, n int, ns, dir string, port int, targetFlags []string) (err error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-sigs; cancel() }()

	if dir == "" {
		if dir, err = os.MkdirTemp("", "ppop-devenv-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	var stops []func() error
	defer func() {
		log.Printf("stopping %d processes", len(stops))
		for i := len(stops) - 1; i >= 0; i-- {
			if e := stops[i](); e != nil {
				log.Printf("stop: %v", e)
			}
		}
		if envFile != "" {
			os.Remove(envFile)
		}
		if e := harness.KillLeftovers(); e != nil {
			log.Print(e)
		}
		log.Print("stopped")
	}()

	t0 := time.Now()
	if _, err := harness.FindBinaries(); err != nil { // builds on first use, with progress
		return err
	}
	log.Printf("starting etcd and kube-apiserver in %s", dir)
	startCtx, cancelStart := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelStart()
	cp, err := harness.StartControlPlane(startCtx, harness.ControlPlaneOptions{Dir: filepath.Join(dir, "cp")})
	if err != nil {
		return err
	}
	stops = append(stops, cp.Stop)
	log.Printf("kube-apiserver ready at %s (%v)", cp.APIServerURL, time.Since(t0).Round(time.Millisecond))

	if err := os.MkdirAll(filepath.Join(dir, "profefe"), 0o755); err != nil {
		return err
	}
	pf, err := harness.StartProfefe(startCtx, filepath.Join(dir, "profefe"))
	if err != nil {
		return err
	}
	stops = append(stops, pf.Stop)
	log.Printf("profefe ready at %s", pf.URL)

	if err := cp.CreateNamespace(startCtx, ns, nil); err != nil {
		return err
	}
	labels := map[string]string{"app": "demo", "app.kubernetes.io/version": "1.0.0"}
	owner, err := cp.CreateWorkload(startCtx, ns, "Deployment", "demo", labels)
	if err != nil {
		return err
	}
	var targets []string
	for i := 0; i < n; i++ {
		ip := harness.AllocIP()
		tg, err := harness.StartTarget(startCtx, dir, ip, port, targetFlags...)
		if err != nil {
			return err
		}
		stops = append(stops, tg.Stop)
		name := fmt.Sprintf("%s-%s", owner.Name, harness.RandHex(3)[:5])
		_, err = cp.CreatePod(startCtx, harness.Pod{
			Namespace: ns, Name: name, Labels: labels, Port: port, Owners: []harness.OwnerRef{owner},
			Annotations: map[string]string{"profefe.com/enable": "true", "profefe.com/port": fmt.Sprint(port)},
		})
		if err != nil {
			return err
		}
		if err := cp.MarkRunning(startCtx, ns, name, ip); err != nil {
			return err
		}
		targets = append(targets, tg.Addr)
		log.Printf("pod %s/%s Running, podIP %s, pprof at %s/debug/pprof/", ns, name, ip, tg.URL)
	}

	if envFile != "" {
		env := fmt.Sprintf("KUBECONFIG=%s\nPROFEFE_URL=%s\nPPOP_NAMESPACE=%s\nPPOP_KUBECTL=%s\nPPOP_TARGETS=%s\nPPOP_DEVENV_DIR=%s\n",
			cp.AdminKubeconfig, pf.URL, ns, cp.Bins.Kubectl, strings.Join(targets, ","), dir)
		tmp := envFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(env), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, envFile); err != nil {
			return err
		}
	}
	fmt.Printf("\nready in %v\n  KUBECONFIG=%s\n  PROFEFE_URL=%s\n  kubectl:   %s\n  namespace: %s (%d pods)\n",
		time.Since(t0).Round(time.Millisecond), cp.AdminKubeconfig, pf.URL, cp.Bins.Kubectl, ns, n)
	if envFile != "" {
		fmt.Printf("  env file:  %s\n", envFile)
	}
	fmt.Println("press Ctrl-C (or send SIGTERM) to stop and clean up")

	select {
	case <-ctx.Done():
		return nil
	case <-cp.APIServerProc().Done():
		return fmt.Errorf("kube-apiserver exited; see %s", cp.APIServerLog())
	case <-pf.Proc.Done():
		return fmt.Errorf("profefe exited; see %s", pf.Proc.LogPath)
	}
}
