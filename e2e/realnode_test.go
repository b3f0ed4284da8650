package e2e

// TestRealNode: the operator installed the way a user installs it, onto a
// real node. Inside a network namespace the test creates: etcd +
// kube-apiserver, containerd + runc + the CNI bridge, kubelet,
// kube-scheduler, kube-controller-manager, kube-proxy and a cluster DNS.
// `kubectl apply -k` of config/default (through the digest overlay
// scripts/image.sh writes, with imagePullPolicy Never) runs the operator and
// profefe as real pods from the images scripts/image.sh --e2e built and
// `ctr images import` loaded; demo Go services run as real pods too.
//
// Run by scripts/test.sh in its own step (PPOP_REALNODE=1). Where the node
// cannot run (not root, no containerd/runc/CNI, no writable cgroups, no
// network namespaces) it is skipped with the reason.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"profefe-operator/e2e/harness"
)

const realNodeTimeout = 15 * time.Minute

func TestRealNode(t *testing.T) {
	if os.Getenv("PPOP_REALNODE") == "" && os.Getenv(harness.NetnsEnv) == "" {
		t.Skip("SKIP real-node suite: not requested; scripts/test.sh runs it in its own step (PPOP_REALNODE=1)")
	}
	if testing.Short() {
		t.Skip("SKIP real-node suite: -short")
	}
	if err := harness.NodePrereqs(); err != nil {
		t.Skipf("SKIP real-node suite: %v", err)
	}
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	images := os.Getenv("PPOP_IMAGE_DIR")
	if images == "" {
		images = filepath.Join(root, "build", "image")
	}
	for _, f := range []string{"profefe-operator.oci.tar", "profefe.oci.tar", "pproftarget.oci.tar", "pause.oci.tar", "kustomization.yaml"} {
		if _, err := os.Stat(filepath.Join(images, f)); err != nil {
			t.Fatalf("%s: %v (run scripts/image.sh --e2e first)", filepath.Join(images, f), err)
		}
	}
	if _, err := harness.FindNodeBinaries(); err != nil {
		t.Fatal(err)
	}
	if !harness.RunInNetns(t, realNodeTimeout) {
		return
	}

	// --- inside the network namespace ---
	t0 := time.Now()
	step := func(format string, args ...any) {
		t.Logf("[+%5.1fs] %s", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), realNodeTimeout-time.Minute)
	defer cancel()
	if err := harness.SetupNodeNetwork(); err != nil {
		t.Skipf("SKIP real-node suite: cannot set up the node's bridge: %v", err)
	}
	dir := t.TempDir()
	bins, err := harness.FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	if bins.KubeAPIServer, err = harness.NodeAPIServerWrapper(dir, bins.KubeAPIServer); err != nil {
		t.Fatal(err)
	}
	step("starting etcd and kube-apiserver on %s", harness.NodeIP)
	cp, err := harness.StartControlPlane(ctx, harness.ControlPlaneOptions{
		Dir: filepath.Join(dir, "cp"), ExtraAPIServerFlags: harness.NodeAPIServerFlags(), Binaries: &bins})
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	var node *harness.Node
	t.Cleanup(func() {
		if t.Failed() {
			procs := []*harness.Proc{cp.EtcdProc(), cp.APIServerProc()}
			if node != nil {
				procs = append(procs, node.Procs()...)
			}
			for _, p := range procs {
				if p != nil {
					t.Logf("--- tail of %s (%s):\n%s", p.Name, p.LogPath, p.Tail(25))
				}
			}
		}
		cp.Stop()
	})
	if err := cp.ServeOnNodeIP(ctx); err != nil {
		t.Fatalf("apiserver on the node IP: %v", err)
	}
	step("starting the node (containerd, kubelet, scheduler, controller-manager, kube-proxy, DNS)")
	node, err = harness.StartNode(ctx, cp, filepath.Join(dir, "node"), "localhost/profefe-operator-e2e/pause:dev",
		filepath.Join(images, "pause.oci.tar"), t.Logf)
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	t.Cleanup(func() {
		step("tearing the node down")
		if t.Failed() {
			out, _ := cp.Kubectl(context.Background(), "get", "pods", "-A", "-o", "wide")
			t.Logf("pods:\n%s", out)
			ev, _ := cp.Kubectl(context.Background(), "get", "events", "-A", "--sort-by=.lastTimestamp")
			t.Logf("events:\n%s", rnTailLines(ev, 40))
			for _, sel := range []string{"app.kubernetes.io/name=profefe-operator", "app.kubernetes.io/name=profefe-collector"} {
				logs, err := cp.Kubectl(context.Background(), "logs", "-n", operatorNS, "-l", sel, "--tail=15", "--prefix")
				t.Logf("logs of %s: %v\n%s", sel, err, logs)
			}
		}
		// pods first, so kubelet stops them itself where it still can
		cp.Kubectl(context.Background(), "delete", "pods", "--all", "-A", "--grace-period=1", "--wait=false")
		if err := node.Stop(); err != nil {
			t.Errorf("node teardown: %v", err)
		}
	})

	step("importing the images (ctr -n k8s.io images import)")
	for _, f := range []string{"profefe-operator.oci.tar", "profefe.oci.tar", "pproftarget.oci.tar"} {
		if err := node.ImportImage(ctx, filepath.Join(images, f)); err != nil {
			t.Fatal(err)
		}
	}

	// The overlay a user would write: scripts/image.sh's digest overlay of
	// config/default, with images never pulled (there is no registry).
	overlay, err := os.MkdirTemp(filepath.Dir(images), "realnode-overlay-")
	if err != nil {
		t.Fatal(err)
	}
	base, err := filepath.Rel(overlay, images)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(overlay) })
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- `+base+`
patches:
- target: {kind: Deployment}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/imagePullPolicy
      value: Never
`), 0o644); err != nil {
		t.Fatal(err)
	}
	step("kubectl apply -k (config/default by digest, imagePullPolicy Never)")
	if out, err := cp.Kubectl(ctx, "apply", "--server-side", "-k", overlay); err != nil {
		t.Fatalf("kubectl apply -k: %v", err)
	} else {
		t.Logf("%s", out)
	}
	for _, d := range []string{"profefe-collector", "profefe-operator"} {
		if out, err := cp.Kubectl(ctx, "rollout", "status", "-n", operatorNS, "deployment/"+d, "--timeout=90s"); err != nil {
			t.Fatalf("rollout of %s: %v\n%s", d, err, out)
		}
	}
	step("operator and profefe are Running and Ready (probes checked by kubelet)")

	t.Run("operator pods as installed", func(t *testing.T) {
		pods := rnOperatorPods(t, ctx, cp)
		if len(pods) != 2 {
			t.Fatalf("want 2 operator pods, got %d", len(pods))
		}
		for _, p := range pods {
			if p.Spec.ServiceAccountName != "profefe-operator" {
				t.Errorf("%s runs as ServiceAccount %q", p.Metadata.Name, p.Spec.ServiceAccountName)
			}
			c := p.Spec.Containers[0]
			if c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("%s: root filesystem is not read-only", p.Metadata.Name)
			}
			if !strings.Contains(c.Image, "@sha256:") {
				t.Errorf("%s: image %q is not by digest", p.Metadata.Name, c.Image)
			}
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s: probes missing", p.Metadata.Name)
			}
			if !p.ready() {
				t.Errorf("%s is not Ready (the readiness probe, run by kubelet)", p.Metadata.Name)
			}
			for _, cs := range p.Status.ContainerStatuses {
				if cs.RestartCount != 0 {
					t.Errorf("%s restarted %d times", p.Metadata.Name, cs.RestartCount)
				}
			}
		}
		// in-cluster configuration on its ServiceAccount: it took the Lease
		out, err := cp.Kubectl(ctx, "get", "lease", "-n", operatorNS, "profefe-operator-leader", "-o", "jsonpath={.spec.holderIdentity}")
		if err != nil || out == "" {
			t.Errorf("no leader Lease (in-cluster config or RBAC broken?): %q %v", out, err)
		}
	})

	step("demo Go services as real pods, and a ProfilingPolicy")
	const demoNS = "demo"
	if _, err := cp.KubectlStdin(ctx, demoManifests, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if out, err := cp.Kubectl(ctx, "rollout", "status", "-n", demoNS, "deployment/web", "--timeout=120s"); err != nil {
		t.Fatalf("demo rollout: %v\n%s", err, out)
	}
	collector := rnProfefeURL(t, ctx, cp)
	if _, err := cp.KubectlStdin(ctx, demoPolicy, "apply", "-n", demoNS, "-f", "-"); err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Minute)

	t.Run("captures land in profefe and kubectl get ppol shows them", func(t *testing.T) {
		eventually(t, 90*time.Second, "profiles of service web in profefe", func() error {
			n, err := rnCountProfiles(ctx, collector, "web", since)
			if err == nil && n < 4 {
				err = fmt.Errorf("%d profiles", n)
			}
			return err
		})
		eventually(t, 30*time.Second, "kubectl get ppol shows captures", func() error {
			out, err := cp.Kubectl(ctx, "get", "ppol", "-n", demoNS)
			if err != nil {
				return err
			}
			if !strings.Contains(out, "web") || rnPolicySucceeded(ctx, cp, demoNS, "web") == 0 {
				return fmt.Errorf("kubectl get ppol:\n%s", out)
			}
			t.Logf("kubectl get ppol -n %s:\n%s", demoNS, out)
			return nil
		})
	})
	step("profiles are landing; rolling restart of the operator")

	t.Run("rolling restart loses no profile and the PDB holds", func(t *testing.T) {
		before := rnPolicySucceeded(ctx, cp, demoNS, "web")
		if _, err := cp.Kubectl(ctx, "rollout", "restart", "-n", operatorNS, "deployment/profefe-operator"); err != nil {
			t.Fatal(err)
		}
		// Through the rollout, at least one operator pod stays Ready.
		done := make(chan error, 1)
		go func() {
			out, err := cp.Kubectl(ctx, "rollout", "status", "-n", operatorNS, "deployment/profefe-operator", "--timeout=180s")
			if err != nil {
				err = fmt.Errorf("%v: %s", err, out)
			}
			done <- err
		}()
		minReady := 99
	watch:
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("rollout restart: %v", err)
				}
				break watch
			case <-time.After(250 * time.Millisecond):
				r := 0
				for _, p := range rnOperatorPods(t, ctx, cp) {
					if p.ready() && p.Metadata.DeletionTimestamp == "" {
						r++
					}
				}
				minReady = min(minReady, r)
			}
		}
		if minReady < 1 {
			t.Errorf("during the rollout no operator pod was Ready at some point")
		}
		t.Logf("rollout done; at least %d operator pod(s) Ready throughout", minReady)
		// Captures go on under the new leader.
		eventually(t, 60*time.Second, "captures continue after the rollout", func() error {
			if n := rnPolicySucceeded(ctx, cp, demoNS, "web"); n <= before+4 {
				return fmt.Errorf("capturesSucceeded %d (before the rollout %d)", n, before)
			}
			return nil
		})
		// No profile lost: everything counted as stored is in profefe.
		if _, err := cp.Kubectl(ctx, "patch", "ppol", "web", "-n", demoNS, "--type=merge", "-p", `{"spec":{"suspend":true}}`); err != nil {
			t.Fatal(err)
		}
		var last string
		eventually(t, 60*time.Second, "profefe holds every profile the policy counts as stored", func() error {
			stored := rnPolicySucceeded(ctx, cp, demoNS, "web")
			n, err := rnCountProfiles(ctx, collector, "web", since)
			if err != nil {
				return err
			}
			now := fmt.Sprintf("%d/%d", n, stored)
			if n < stored || now != last {
				last = now
				return fmt.Errorf("profefe has %d, capturesSucceeded %d", n, stored)
			}
			t.Logf("profefe holds %d profiles; capturesSucceeded %d", n, stored)
			return nil
		})

		// The PDB: of the two operator pods, one may be evicted, not both.
		pods := rnOperatorPods(t, ctx, cp)
		var names []string
		for _, p := range pods {
			if p.Metadata.DeletionTimestamp == "" {
				names = append(names, p.Metadata.Name)
			}
		}
		if len(names) != 2 {
			t.Fatalf("want 2 operator pods after the rollout, got %v", names)
		}
		eventually(t, 30*time.Second, "PDB allows one disruption", func() error {
			out, err := cp.Kubectl(ctx, "get", "pdb", "-n", operatorNS, "profefe-operator", "-o", "jsonpath={.status.disruptionsAllowed}")
			if err == nil && out != "1" {
				err = fmt.Errorf("disruptionsAllowed=%q", out)
			}
			return err
		})
		evict := func(name string) error {
			return cp.Do(ctx, "POST", "/api/v1/namespaces/"+operatorNS+"/pods/"+name+"/eviction", map[string]any{
				"apiVersion": "policy/v1", "kind": "Eviction",
				"metadata": map[string]any{"name": name, "namespace": operatorNS},
			}, nil)
		}
		if err := evict(names[0]); err != nil {
			t.Fatalf("evicting the first operator pod: %v", err)
		}
		err := evict(names[1])
		if harness.StatusCode(err) != http.StatusTooManyRequests {
			t.Errorf("evicting the second operator pod: want 429 from the PodDisruptionBudget, got %v", err)
		} else {
			t.Logf("second eviction refused by the PDB: %v", err)
		}
		if out, err := cp.Kubectl(ctx, "rollout", "status", "-n", operatorNS, "deployment/profefe-operator", "--timeout=120s"); err != nil {
			t.Errorf("operator did not recover after the eviction: %v\n%s", err, out)
		}
	})
	step("real-node suite done")
}

const demoManifests = `apiVersion: v1
kind: Namespace
metadata:
  name: demo
  labels:
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        profefe.com/enable: "true"
        profefe.com/service: web
    spec:
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: web
        image: localhost/profefe-operator-e2e/pproftarget:dev
        imagePullPolicy: Never
        args: ["-addr=0.0.0.0:6060", "-exit-with-parent=false", "-cpu=0.02", "-retain-mb=2"]
        ports:
        - {name: pprof, containerPort: 6060}
        readinessProbe:
          httpGet: {path: /debug/pprof/cmdline, port: pprof}
          periodSeconds: 2
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: ["ALL"]}
        resources:
          requests: {cpu: 10m, memory: 32Mi}
          limits: {memory: 128Mi}
`

const demoPolicy = `apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: web
spec:
  schedule: "@every 5s"
  selector:
    matchLabels: {app: web}
  profiles:
  - type: heap
  - type: goroutine
`

type rnPod struct {
	Metadata struct {
		Name              string `json:"name"`
		DeletionTimestamp string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		ServiceAccountName string `json:"serviceAccountName"`
		Containers         []struct {
			Image           string `json:"image"`
			SecurityContext struct {
				ReadOnlyRootFilesystem *bool `json:"readOnlyRootFilesystem"`
			} `json:"securityContext"`
			LivenessProbe  any `json:"livenessProbe"`
			ReadinessProbe any `json:"readinessProbe"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		PodIP      string `json:"podIP"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		ContainerStatuses []struct {
			RestartCount int `json:"restartCount"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

func (p rnPod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

func rnListPods(t *testing.T, ctx context.Context, cp *harness.ControlPlane, ns, selector string) []rnPod {
	t.Helper()
	var list struct {
		Items []rnPod `json:"items"`
	}
	if err := cp.Do(ctx, "GET", "/api/v1/namespaces/"+ns+"/pods?labelSelector="+url.QueryEscape(selector), nil, &list); err != nil {
		t.Fatalf("list pods: %v", err)
	}
	return list.Items
}

func rnOperatorPods(t *testing.T, ctx context.Context, cp *harness.ControlPlane) []rnPod {
	return rnListPods(t, ctx, cp, operatorNS, "app.kubernetes.io/name=profefe-operator")
}

// profefeURL is the collector pod's address (the test runs in the node's
// network namespace, so pod IPs are reachable).
func rnProfefeURL(t *testing.T, ctx context.Context, cp *harness.ControlPlane) string {
	pods := rnListPods(t, ctx, cp, operatorNS, "app.kubernetes.io/name=profefe-collector")
	if len(pods) != 1 || pods[0].Status.PodIP == "" {
		t.Fatalf("want one profefe collector pod with an IP, got %d", len(pods))
	}
	return "http://" + pods[0].Status.PodIP + ":10100"
}

// countProfiles counts heap and goroutine profiles of service in profefe.
func rnCountProfiles(ctx context.Context, base, service string, since time.Time) (int, error) {
	total := 0
	for _, typ := range []string{"heap", "goroutine"} {
		q := url.Values{"service": {service}, "type": {typ},
			"from": {since.UTC().Format(harness.TimeFormat)}, "to": {time.Now().Add(time.Hour).UTC().Format(harness.TimeFormat)},
			"limit": {"100000"}}
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/0/profiles?"+q.Encode(), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		var body struct {
			Code int               `json:"code"`
			Body []json.RawMessage `json:"body"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("profefe /api/0/profiles: %v", err)
		}
		total += len(body.Body)
	}
	return total, nil
}

func rnPolicySucceeded(ctx context.Context, cp *harness.ControlPlane, ns, name string) int {
	out, err := cp.Kubectl(ctx, "get", "ppol", name, "-n", ns, "-o", "jsonpath={.status.capturesSucceeded}")
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(strings.TrimSpace(out))
	return n
}

func rnTailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
