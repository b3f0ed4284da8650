package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"profefe-operator/e2e/harness"
)

const k8sVersion = "v1.34.4"

// crdFile is the ProfilingPolicy CRD users install: crd/profilingpolicies.profefe.com.yaml.
func crdFile(t *testing.T) string {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "crd", "profilingpolicies.profefe.com.yaml")
}

// TestSmoke proves every real part once: the control plane answers the real
// kubectl, a CRD installs, a no-kubelet pod runs on a loopback IP where a real
// Go pprof server listens, and profefe stores and returns its heap profile.
func TestSmoke(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	cp := harness.TestControlPlane(t)
	t.Logf("control plane ready in %v (apiserver %s, etcd %s)", time.Since(t0).Round(time.Millisecond), cp.APIServerURL, cp.EtcdURL)
	pf := harness.TestProfefe(t)
	ctx := t.Context()
	ns := cp.TestNamespace(t)

	t.Run("kubectl-version", func(t *testing.T) {
		out, stderr, err := cp.KubectlFull(ctx, nil, "version", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Client struct{ GitVersion string } `json:"clientVersion"`
			Server struct{ GitVersion string } `json:"serverVersion"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("kubectl version -o json: %v\n%s", err, out)
		}
		if v.Client.GitVersion != k8sVersion || v.Server.GitVersion != k8sVersion {
			t.Errorf("kubectl %q, apiserver %q; want both %s", v.Client.GitVersion, v.Server.GitVersion, k8sVersion)
		}
		if strings.TrimSpace(stderr) != "" {
			t.Errorf("kubectl version wrote to stderr (version skew warning?): %s", stderr)
		}
	})

	t.Run("crd", func(t *testing.T) {
		if _, err := cp.Kubectl(ctx, "apply", "-f", crdFile(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := cp.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/profilingpolicies.profefe.com"); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := cp.KubectlFull(ctx, nil, "get", "profilingpolicies", "-n", ns)
		if err != nil || !strings.Contains(stderr, "No resources found in "+ns+" namespace.") {
			t.Fatalf("kubectl get profilingpolicies on an empty namespace: err=%v stderr=%q", err, stderr)
		}
		root, _ := harness.RepoRoot()
		if _, err := cp.Kubectl(ctx, "apply", "-n", ns, "-f", filepath.Join(root, "e2e", "testdata", "policy.yaml")); err != nil {
			t.Fatal(err)
		}
		for _, resource := range []string{"profilingpolicies", "ppol", "profiling"} {
			out, err := cp.Kubectl(ctx, "get", resource, "-n", ns)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "smoke") || !strings.Contains(out, "NAME") {
				t.Errorf("kubectl get %s: no policy 'smoke' in:\n%s", resource, out)
			}
		}
	})

	// A pod with a loopback pod IP, owned by a ReplicaSet of a Deployment,
	// served by a real pproftarget bound to that IP.
	ip := harness.AllocIP()
	harness.TestTarget(t, ip, 6060)
	pod := "smoke-5d4c8-x7k2q"
	var heap []byte

	t.Run("pod", func(t *testing.T) {
		labels := map[string]string{"app": "smoke", "app.kubernetes.io/version": "1.0.0"}
		owner, err := cp.CreateWorkload(ctx, ns, "Deployment", "smoke", labels)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cp.CreatePod(ctx, harness.Pod{
			Namespace: ns, Name: pod, Labels: labels, Port: 6060,
			Annotations: map[string]string{"profefe.com/enable": "true", "profefe.com/port": "6060"},
			Owners:      []harness.OwnerRef{owner},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := cp.MarkRunning(ctx, ns, pod, ip); err != nil {
			t.Fatal(err)
		}
		out, err := cp.Kubectl(ctx, "get", "pod", pod, "-n", ns, "-o",
			`jsonpath={.status.phase} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status} {.metadata.ownerReferences[0].kind}`)
		if err != nil {
			t.Fatal(err)
		}
		if want := "Running " + ip + " True ReplicaSet"; out != want {
			t.Fatalf("pod status %q, want %q", out, want)
		}
		// Capture from the IP the API server reports, as the operator will.
		obj, err := cp.Get(ctx, "/api/v1/namespaces/"+ns+"/pods/"+pod)
		if err != nil {
			t.Fatal(err)
		}
		podIP := obj["status"].(map[string]any)["podIP"].(string)
		var p *profile.Profile
		heap, p = fetchProfile(t, "http://"+podIP+":6060/debug/pprof/heap")
		if !isGzip(heap) {
			t.Errorf("heap profile is not gzipped")
		}
		t.Logf("heap profile from pod %s (%s): %d bytes, %d samples, types %v", pod, podIP, len(heap), len(p.Sample), sampleTypes(p))
	})
	if heap == nil {
		t.FailNow()
	}

	t.Run("profefe", func(t *testing.T) {
		labels := map[string]string{"namespace": ns, "pod": pod, "version": "1.0.0"}
		meta, err := pf.Push(ctx, "smoke", "heap", labels, heap)
		if err != nil {
			t.Fatal(err)
		}
		if meta.ID == "" || meta.Service != "smoke" || meta.Type != "heap" {
			t.Fatalf("push answered %+v", meta)
		}
		list, err := pf.List(ctx, harness.ListQuery{
			Service: "smoke", Type: "heap",
			From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute),
		})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(list, func(m harness.ProfileMeta) bool { return m.ID == meta.ID })
		if i < 0 {
			t.Fatalf("profile %s not listed: %+v", meta.ID, list)
		}
		if got := list[i].LabelMap(); got["pod"] != pod || got["namespace"] != ns {
			t.Errorf("listed labels %v, want pod=%s namespace=%s", got, pod, ns)
		}
		raw, err := pf.Get(ctx, meta.ID)
		if err != nil {
			t.Fatal(err)
		}
		p, err := profile.Parse(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("profile %s from profefe does not parse: %v", meta.ID, err)
		}
		for _, want := range []string{"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"} {
			if !slices.Contains(sampleTypes(p), want) {
				t.Errorf("stored heap profile sample types %v lack %s", sampleTypes(p), want)
			}
		}
		if len(p.Sample) == 0 {
			t.Errorf("stored heap profile has no samples")
		}
		services, err := pf.Services(ctx)
		if err != nil || !slices.Contains(services, "smoke") {
			t.Errorf("services %v (%v), want smoke among them", services, err)
		}
	})

	// Outage tests stop and restart profefe; stored profiles survive.
	t.Run("profefe-restart", func(t *testing.T) {
		if err := pf.StopServer(); err != nil {
			t.Fatal(err)
		}
		if _, err := pf.Push(ctx, "smoke", "heap", nil, heap); err == nil {
			t.Fatal("push to a stopped profefe succeeded")
		}
		if err := pf.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		list, err := pf.List(ctx, harness.ListQuery{Service: "smoke", Type: "heap",
			From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)})
		if err != nil || len(list) != 1 {
			t.Fatalf("after restart: %d profiles (%v), want the 1 pushed before", len(list), err)
		}
	})

	// DESIGN section 4: a mutex profile of a program that did not enable the
	// mutex profiler has no samples, and profefe rejects it.
	t.Run("profefe-rejects-empty-profile", func(t *testing.T) {
		raw, p := fetchProfile(t, "http://"+ip+":6060/debug/pprof/mutex")
		if len(p.Sample) != 0 {
			t.Fatalf("mutex profile of a target without -mutex has %d samples", len(p.Sample))
		}
		_, err := pf.Push(ctx, "smoke", "mutex", nil, raw)
		var pe *harness.ProfefeError
		if !errors.As(err, &pe) || pe.Code != 400 {
			t.Fatalf("pushing an empty profile: %v, want HTTP 400", err)
		}
		t.Logf("profefe on an empty profile: %v", err)
	})

	// A ServiceAccount token from the TokenRequest API, used by the real
	// kubectl: RBAC denies until a Role grants, as for the operator later.
	t.Run("serviceaccount-rbac", func(t *testing.T) {
		if err := cp.CreateServiceAccount(ctx, ns, "reader"); err != nil {
			t.Fatal(err)
		}
		kc := filepath.Join(t.TempDir(), "reader.kubeconfig")
		sa, err := cp.ServiceAccountKubeconfig(ctx, ns, "reader", kc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sa.Get(ctx, "/api/v1/namespaces/"+ns+"/pods"); !harness.IsForbidden(err) {
			t.Fatalf("listing pods before any RoleBinding: %v, want 403", err)
		}
		out, _ := cp.KubectlAs(ctx, kc, nil, "auth", "can-i", "list", "pods")
		if strings.TrimSpace(out) != "no" {
			t.Fatalf("kubectl auth can-i list pods before binding: %q, want no", out)
		}
		rbac := `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-pod-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: ServiceAccount, name: reader, namespace: ` + ns + `}
`
		if _, err := cp.KubectlStdin(ctx, rbac, "apply", "-n", ns, "-f", "-"); err != nil {
			t.Fatal(err)
		}
		// RBAC changes reach the authorizer through a watch: wait briefly.
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := cp.KubectlAs(ctx, kc, nil, "get", "pods", "-o", "name")
			if err == nil {
				if strings.TrimSpace(out) != "pod/"+pod {
					t.Fatalf("kubectl get pods as the ServiceAccount: %q", out)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kubectl get pods as the ServiceAccount after binding: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := cp.KubectlAs(ctx, kc, nil, "get", "pods", "-n", "default"); err == nil {
			t.Errorf("the ServiceAccount can list pods outside its namespace")
		}
	})

	// Watch-resume tests restart the apiserver; data in etcd must survive.
	t.Run("apiserver-restart", func(t *testing.T) {
		t1 := time.Now()
		if err := cp.RestartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("kube-apiserver restarted in %v", time.Since(t1).Round(time.Millisecond))
		out, err := cp.Kubectl(ctx, "get", "pod", pod, "-n", ns, "-o", "jsonpath={.status.podIP}")
		if err != nil || out != ip {
			t.Fatalf("after restart: pod IP %q, err %v", out, err)
		}
	})
	t.Logf("smoke test took %v", time.Since(t0).Round(time.Millisecond))
}
