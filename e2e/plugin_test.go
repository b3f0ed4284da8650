package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"profefe-operator/e2e/harness"
)

// The kubectl-profefe plugin, run as a user runs it, against the real
// kube-apiserver, the real profefe and real Go pprof targets.

// kpResult is one run of the plugin.
type kpResult struct {
	Args   []string
	Stdout string
	Stderr string
	Code   int
}

func (r kpResult) String() string {
	return fmt.Sprintf("kubectl-profefe %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

// lines returns the non-empty lines of s.
func kpLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func kpBinary(t testing.TB) string {
	t.Helper()
	dir, err := harness.BuildDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kubectl-profefe", "kubectl-profefe")
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		t.Fatalf("%s is not built (cmake --preset ci && cmake --build --preset ci, and PPOP_BUILD_DIR=build/ci): %v", bin, err)
	}
	return bin
}

// runKP runs the plugin with a clean environment: HOME is a temp folder (so
// no ~/.kube/config is read), KUBECONFIG and PROFEFE_URL come only from env.
func runKP(t testing.TB, env []string, args ...string) kpResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kpBinary(t), args...)
	var base []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBECONFIG=") && !strings.HasPrefix(e, "PROFEFE_URL=") && !strings.HasPrefix(e, "HOME=") {
			base = append(base, e)
		}
	}
	cmd.Env = append(append(base, "HOME="+t.TempDir()), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := kpResult{Args: args, Stdout: o.String(), Stderr: e.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("kubectl-profefe %s did not exit normally (crash or timeout): %v\n%s", strings.Join(args, " "), err, r)
	}
	return r
}

// mustKP runs the plugin and requires exit 0 and a silent stderr.
func mustKP(t testing.TB, env []string, args ...string) kpResult {
	t.Helper()
	r := runKP(t, env, args...)
	if r.Code != 0 || strings.TrimSpace(r.Stderr) != "" {
		t.Fatalf("want success and no stderr: %s", r)
	}
	return r
}

// kpWantOneError requires exit 1, nothing on stdout and exactly one stderr
// line "error: ..." containing want.
func kpWantOneError(t testing.TB, r kpResult, want string) {
	t.Helper()
	errs := kpLines(r.Stderr)
	if r.Code != 1 || len(errs) != 1 || !strings.HasPrefix(errs[0], "error: ") || !strings.Contains(errs[0], want) || r.Stdout != "" {
		t.Fatalf("want exit 1 and one stderr line \"error: ...%s...\": %s", want, r)
	}
	t.Logf("%s -> %s", strings.Join(r.Args, " "), errs[0])
}

// kpCaptured is one summary line of `capture`.
type kpCaptured struct {
	NS, Pod, Type string
	File          string // with --output-dir
	ID, Service   string // with --profefe-url
}

// kpParseCaptured parses capture's stdout: "ns/pod type FILE" or
// "ns/pod type id=ID service=S" per profile.
func kpParseCaptured(t testing.TB, r kpResult) []kpCaptured {
	t.Helper()
	var out []kpCaptured
	for _, l := range kpLines(r.Stdout) {
		f := strings.Fields(l)
		nsPod := strings.SplitN(f[0], "/", 2)
		if len(f) < 3 || len(nsPod) != 2 {
			t.Fatalf("unexpected capture line %q in %s", l, r)
		}
		c := kpCaptured{NS: nsPod[0], Pod: nsPod[1], Type: f[1]}
		if strings.HasPrefix(f[2], "id=") && len(f) == 4 && strings.HasPrefix(f[3], "service=") {
			c.ID, c.Service = strings.TrimPrefix(f[2], "id="), strings.TrimPrefix(f[3], "service=")
		} else if len(f) == 3 {
			c.File = f[2]
		} else {
			t.Fatalf("unexpected capture line %q in %s", l, r)
		}
		out = append(out, c)
	}
	return out
}

// kpPodsOf returns the sorted "ns/pod type" keys of captures.
func kpPodsOf(cs []kpCaptured) []string {
	var s []string
	for _, c := range cs {
		s = append(s, c.NS+"/"+c.Pod+" "+c.Type)
	}
	sort.Strings(s)
	return s
}

func kpParseProfileFile(t testing.TB, path string) *profile.Profile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s is not a pprof profile: %v", path, err)
	}
	return p
}

// kpPod is a pod for the plugin tests, served by a real pproftarget.
type kpPod struct {
	NS, Name    string
	Labels      map[string]string
	Annotations map[string]string
	Owner       *harness.OwnerRef
	Port        int      // 0: no target, pod stays Pending
	Flags       []string // pproftarget flags
	IP          string   // default harness.AllocIP()
}

func (p *kpPod) start(t *testing.T, cp *harness.ControlPlane) {
	t.Helper()
	ctx := t.Context()
	var owners []harness.OwnerRef
	if p.Owner != nil {
		owners = []harness.OwnerRef{*p.Owner}
	}
	if _, err := cp.CreatePod(ctx, harness.Pod{Namespace: p.NS, Name: p.Name, Labels: p.Labels,
		Annotations: p.Annotations, Owners: owners, Port: p.Port}); err != nil {
		t.Fatal(err)
	}
	if p.Port == 0 {
		return
	}
	if p.IP == "" {
		p.IP = harness.AllocIP()
	}
	harness.TestTarget(t, p.IP, p.Port, p.Flags...)
	if err := cp.MarkRunning(ctx, p.NS, p.Name, p.IP); err != nil {
		t.Fatal(err)
	}
}

var kpEnabled = map[string]string{"profefe.com/enable": "true"}

// kpContextKubeconfig writes a copy of the admin kubeconfig whose context
// names namespace ns.
func kpContextKubeconfig(t *testing.T, cp *harness.ControlPlane, ns string) string {
	t.Helper()
	crt, err := os.ReadFile(filepath.Join(cp.Dir, "pki", "admin.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(cp.Dir, "pki", "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ctx-ns.kubeconfig")
	if err := harness.WriteKubeconfig(path, harness.KubeconfigParams{Server: cp.APIServerURL, CAPEM: cp.CA.CertPEM,
		User: "admin", ClientCertPEM: crt, ClientKeyPEM: key, Namespace: ns}); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPlugin covers capture (to a directory and to profefe; by name,
// selector, namespace and -A; the context namespace), the profefe queries,
// load, pprof and merge, and the error paths.
func TestPlugin(t *testing.T) {
	cp := harness.TestControlPlane(t)
	pf := harness.TestProfefe(t)
	ctx := t.Context()
	ns1, ns2, ns3 := cp.TestNamespace(t), cp.TestNamespace(t), cp.TestNamespace(t)
	kc := "--kubeconfig=" + cp.AdminKubeconfig
	pfURL := "--profefe-url=" + pf.URL

	webLabels := map[string]string{"app": "web", "tier": "backend", "app.kubernetes.io/version": "1.4.2"}
	web, err := cp.CreateWorkload(ctx, ns1, "Deployment", "web", webLabels)
	if err != nil {
		t.Fatal(err)
	}
	api, err := cp.CreateWorkload(ctx, ns2, "StatefulSet", "api", map[string]string{"app": "api", "tier": "backend"})
	if err != nil {
		t.Fatal(err)
	}
	// Pods of a Deployment carry their ReplicaSet's pod-template-hash.
	webPodLabels := map[string]string{"pod-template-hash": "5d4c8"}
	for k, v := range webLabels {
		webPodLabels[k] = v
	}
	pods := []*kpPod{
		{NS: ns1, Name: "web-5d4c8-aaaaa", Labels: webPodLabels, Annotations: kpEnabled, Owner: &web, Port: 6060},
		{NS: ns1, Name: "web-5d4c8-bbbbb", Labels: webPodLabels, Annotations: kpEnabled, Owner: &web, Port: 6060},
		// port, path and service annotations, all honoured
		{NS: ns1, Name: "custom", Labels: map[string]string{"app": "custom"}, Port: 7070,
			Flags: []string{"-path", "/custom/pprof"},
			Annotations: map[string]string{"profefe.com/enable": "true", "profefe.com/port": "7070",
				"profefe.com/path": "/custom/pprof", "profefe.com/service": "custom-svc"}},
		// matched by app=web but not annotated, and annotated but Pending
		{NS: ns1, Name: "web-unannotated", Labels: map[string]string{"app": "web"}, Port: 6060},
		{NS: ns1, Name: "web-pending", Labels: map[string]string{"app": "web"}, Annotations: kpEnabled},
		{NS: ns2, Name: "api-0", Labels: map[string]string{"app": "api", "tier": "backend"}, Annotations: kpEnabled, Owner: &api, Port: 6060},
		{NS: ns3, Name: "good", Labels: map[string]string{"app": "mixed"}, Annotations: kpEnabled, Port: 6060},
		{NS: ns3, Name: "broken", Labels: map[string]string{"app": "mixed"}, Annotations: kpEnabled, Port: 6060, Flags: []string{"-mode=500"}},
	}
	for _, p := range pods {
		p.start(t, cp)
	}

	t.Run("capture-by-name-to-directory", func(t *testing.T) {
		dir := t.TempDir()
		r := mustKP(t, nil, kc, "capture", "web-5d4c8-aaaaa", "-n", ns1, "--type", "heap", "--type=goroutine", "--output-dir", dir)
		cs := kpParseCaptured(t, r)
		if got, want := kpPodsOf(cs), []string{ns1 + "/web-5d4c8-aaaaa goroutine", ns1 + "/web-5d4c8-aaaaa heap"}; !slices.Equal(got, want) {
			t.Fatalf("captured %v, want %v", got, want)
		}
		for _, c := range cs {
			// the directory sink's naming: DIR/<ns>/<pod>/<type>-<time>.pb.gz
			rel, err := filepath.Rel(dir, c.File)
			if err != nil || !strings.HasPrefix(rel, filepath.Join(ns1, "web-5d4c8-aaaaa", c.Type+"-")) || !strings.HasSuffix(rel, ".pb.gz") {
				t.Errorf("file %q is not named DIR/%s/web-5d4c8-aaaaa/%s-TIME.pb.gz", c.File, ns1, c.Type)
			}
			p := kpParseProfileFile(t, c.File)
			if len(p.Sample) == 0 {
				t.Errorf("%s: no samples", c.File)
			}
			if c.Type == "heap" && !slices.Contains(sampleTypes(p), "inuse_space") {
				t.Errorf("%s: sample types %v are not a heap profile's", c.File, sampleTypes(p))
			}
		}
	})

	t.Run("capture-by-selector-to-profefe", func(t *testing.T) {
		r := mustKP(t, nil, kc, "capture", "-n", ns1, "-l", "app=web", "--type", "heap", pfURL)
		cs := kpParseCaptured(t, r)
		// web-unannotated and web-pending match app=web but are left out
		if got, want := kpPodsOf(cs), []string{ns1 + "/web-5d4c8-aaaaa heap", ns1 + "/web-5d4c8-bbbbb heap"}; !slices.Equal(got, want) {
			t.Fatalf("captured %v, want %v", got, want)
		}
		list, err := pf.List(ctx, harness.ListQuery{Service: "web", Type: "heap", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Service != "web" { // the Deployment's name, not the pod's
				t.Errorf("%s/%s stored as service %q, want web", c.NS, c.Pod, c.Service)
			}
			i := slices.IndexFunc(list, func(m harness.ProfileMeta) bool { return m.ID == c.ID })
			if i < 0 {
				t.Fatalf("profile %s of %s not in profefe: %+v", c.ID, c.Pod, list)
			}
			l := list[i].LabelMap()
			if l["pod"] != c.Pod || l["namespace"] != ns1 || l["version"] != "1.4.2" || l["container"] != "app" || l["node"] != "e2e-node" {
				t.Errorf("profile %s labels %v", c.ID, l)
			}
		}
	})

	t.Run("capture-by-namespace-all-default-types", func(t *testing.T) {
		dir := t.TempDir()
		t0 := time.Now()
		r := mustKP(t, nil, kc, "capture", "-n", ns1, "--seconds", "3", "--output-dir", dir)
		// Three pods' 3 s CPU profiles one after another would take 9 s.
		if el := time.Since(t0); el > 7*time.Second {
			t.Errorf("capturing 3 pods with --seconds 3 took %v: not in parallel", el)
		}
		cs := kpParseCaptured(t, r)
		var want []string
		for _, pod := range []string{"custom", "web-5d4c8-aaaaa", "web-5d4c8-bbbbb"} {
			for _, typ := range []string{"cpu", "goroutine", "heap"} {
				want = append(want, ns1+"/"+pod+" "+typ)
			}
		}
		sort.Strings(want)
		if got := kpPodsOf(cs); !slices.Equal(got, want) {
			t.Fatalf("captured %v, want %v", got, want)
		}
		for _, c := range cs {
			p := kpParseProfileFile(t, c.File)
			if c.Type == "cpu" && (p.DurationNanos < int64(2900*time.Millisecond) || p.DurationNanos > int64(6*time.Second)) {
				t.Errorf("%s: CPU profile of %v, want about --seconds 3", c.File, time.Duration(p.DurationNanos))
			}
		}
	})

	t.Run("capture-all-namespaces-to-profefe", func(t *testing.T) {
		r := mustKP(t, nil, kc, "capture", "-A", "-l", "tier=backend", "--type", "goroutine", pfURL)
		cs := kpParseCaptured(t, r)
		want := []string{ns1 + "/web-5d4c8-aaaaa goroutine", ns1 + "/web-5d4c8-bbbbb goroutine", ns2 + "/api-0 goroutine"}
		sort.Strings(want)
		if got := kpPodsOf(cs); !slices.Equal(got, want) {
			t.Fatalf("captured %v, want %v", got, want)
		}
		for _, c := range cs {
			if want := map[string]string{ns1: "web", ns2: "api"}[c.NS]; c.Service != want || c.ID == "" {
				t.Errorf("%s/%s: id %q service %q, want service %s", c.NS, c.Pod, c.ID, c.Service, want)
			}
		}
	})

	t.Run("capture-honours-port-path-service-annotations", func(t *testing.T) {
		r := mustKP(t, nil, kc, "capture", "custom", "-n", ns1, "--type", "heap", pfURL)
		cs := kpParseCaptured(t, r)
		if len(cs) != 1 || cs[0].Service != "custom-svc" {
			t.Fatalf("want one heap profile stored as custom-svc: %s", r)
		}
	})

	t.Run("namespace-defaults-to-the-context", func(t *testing.T) {
		kcfg := kpContextKubeconfig(t, cp, ns2)
		dir := t.TempDir()
		// No -n: the context's namespace (ns2), through --kubeconfig ...
		r := mustKP(t, nil, "--kubeconfig", kcfg, "capture", "api-0", "--type", "heap", "--output-dir", dir)
		if cs := kpParseCaptured(t, r); len(cs) != 1 || cs[0].NS != ns2 || !strings.HasPrefix(cs[0].File, filepath.Join(dir, ns2, "api-0")+"/") {
			t.Fatalf("want api-0 in %s captured: %s", ns2, r)
		}
		// ... and through $KUBECONFIG; a selector without -n also stays in ns2.
		r = mustKP(t, []string{"KUBECONFIG=" + kcfg}, "capture", "-l", "tier=backend", "--type", "heap", "--output-dir", dir)
		if got := kpPodsOf(kpParseCaptured(t, r)); !slices.Equal(got, []string{ns2 + "/api-0 heap"}) {
			t.Fatalf("capture -l tier=backend in the context namespace captured %v", got)
		}
		// A pod of another namespace is not found there; -n still wins.
		kpWantOneError(t, runKP(t, nil, "--kubeconfig", kcfg, "capture", "web-5d4c8-aaaaa", "--type", "heap", "--output-dir", dir),
			`pod "web-5d4c8-aaaaa" not found in namespace "`+ns2+`"`)
		mustKP(t, nil, "--kubeconfig", kcfg, "-n", ns1, "capture", "web-5d4c8-aaaaa", "--type", "heap", "--output-dir", dir)
	})

	t.Run("annotation-and-phase-rules", func(t *testing.T) {
		dir := t.TempDir()
		kpWantOneError(t, runKP(t, nil, kc, "capture", "web-unannotated", "-n", ns1, "--type", "heap", "--output-dir", dir),
			"is not annotated profefe.com/enable=true")
		r := mustKP(t, nil, kc, "capture", "web-unannotated", "-n", ns1, "--type", "heap", "--output-dir", dir, "--ignore-annotation")
		if len(kpParseCaptured(t, r)) != 1 {
			t.Fatalf("--ignore-annotation did not capture: %s", r)
		}
		kpWantOneError(t, runKP(t, nil, kc, "capture", "web-pending", "-n", ns1, "--output-dir", dir), "is not Running")
		kpWantOneError(t, runKP(t, nil, kc, "capture", "-n", ns1, "-l", "app=nothing", "--output-dir", dir), "no Running pods annotated")
	})

	t.Run("a-failed-capture-exits-non-zero", func(t *testing.T) {
		dir := t.TempDir()
		r := runKP(t, nil, kc, "capture", "-n", ns3, "--type", "heap", "--output-dir", dir)
		errs := kpLines(r.Stderr)
		if r.Code != 1 || len(errs) != 1 || !strings.Contains(errs[0], ns3+"/broken heap") || !strings.Contains(errs[0], "HTTP 500") {
			t.Fatalf("want exit 1 and one error about broken's HTTP 500: %s", r)
		}
		// the good pod in the same run is still captured
		if got := kpPodsOf(kpParseCaptured(t, r)); !slices.Equal(got, []string{ns3 + "/good heap"}) {
			t.Fatalf("captured %v, want the good pod", got)
		}
	})

	t.Run("get-services", func(t *testing.T) {
		r := mustKP(t, nil, "get", "services", pfURL)
		got := kpLines(r.Stdout)
		if len(got) < 2 || got[0] != "SERVICE" || !slices.Contains(got, "web") || !slices.Contains(got, "api") || !slices.Contains(got, "custom-svc") {
			t.Fatalf("get services table: %s", r)
		}
		var svcs []string
		if err := json.Unmarshal([]byte(mustKP(t, nil, "get", "services", "-o", "json", pfURL).Stdout), &svcs); err != nil || !slices.Contains(svcs, "web") {
			t.Fatalf("get services -o json: %v %v", svcs, err)
		}
		// An empty profefe: profefe's 404 is an empty answer, not an error.
		empty := harness.TestProfefe(t)
		r = runKP(t, []string{"PROFEFE_URL=" + empty.URL}, "get", "services")
		if r.Code != 0 || r.Stdout != "" || strings.TrimSpace(r.Stderr) != "No services found." {
			t.Fatalf("get services on an empty profefe: %s", r)
		}
	})

	t.Run("get-profiles", func(t *testing.T) {
		list, err := pf.List(ctx, harness.ListQuery{Service: "web", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)})
		if err != nil || len(list) == 0 {
			t.Fatalf("no web profiles in profefe: %v", err)
		}
		r := mustKP(t, []string{"PROFEFE_URL=" + pf.URL}, "get", "profiles", "--service", "web")
		rows := kpLines(r.Stdout)
		if got := strings.Fields(rows[0]); !slices.Equal(got, []string{"ID", "SERVICE", "TYPE", "CREATED", "LABELS"}) {
			t.Fatalf("header %q", rows[0])
		}
		if len(rows) != len(list)+1 {
			t.Fatalf("%d rows for %d profiles: %s", len(rows)-1, len(list), r)
		}
		for _, m := range list {
			if !strings.Contains(r.Stdout, m.ID) {
				t.Errorf("profile %s missing from the table", m.ID)
			}
		}
		for _, row := range rows[1:] {
			f := strings.Fields(row)
			if f[1] != "web" || !strings.HasPrefix(f[4], "container=app,namespace="+ns1+",") {
				t.Errorf("row %q", row)
			}
			if _, err := time.Parse(time.RFC3339, f[3]); err != nil {
				t.Errorf("CREATED %q is not RFC 3339", f[3])
			}
		}
		// -o wide adds AGE; -o json is profefe's metadata; -o yaml too.
		if h := strings.Fields(kpLines(mustKP(t, nil, "get", "profiles", "--service", "web", "-o", "wide", pfURL).Stdout)[0]); !slices.Contains(h, "AGE") {
			t.Errorf("-o wide header %v lacks AGE", h)
		}
		var metas []harness.ProfileMeta
		out := mustKP(t, nil, "get", "profiles", "--service", "web", "--type", "heap", "-l", "pod=web-5d4c8-aaaaa", "-o", "json", pfURL).Stdout
		if err := json.Unmarshal([]byte(out), &metas); err != nil || len(metas) == 0 {
			t.Fatalf("-o json: %v\n%s", err, out)
		}
		for _, m := range metas {
			if m.Type != "heap" || m.LabelMap()["pod"] != "web-5d4c8-aaaaa" {
				t.Errorf("--type heap -l pod=web-5d4c8-aaaaa returned %+v", m)
			}
		}
		y := mustKP(t, nil, "get", "profiles", "--service", "web", "-o", "yaml", pfURL).Stdout
		if strings.Count("\n"+y, "\n- id: ") != len(list) {
			t.Errorf("-o yaml does not list %d profiles:\n%s", len(list), y)
		}
		// --from/--to: durations and RFC 3339; a range in the past is empty.
		past := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
		for _, args := range [][]string{
			{"--from", "48h", "--to", "47h"},
			{"--from", past, "--to", "-47h"},
			{"--service", "no-such-service"},
		} {
			full := append([]string{"get", "profiles", "--service", "web", pfURL}, args...)
			r := runKP(t, nil, full...)
			if r.Code != 0 || r.Stdout != "" || strings.TrimSpace(r.Stderr) != "No profiles found." {
				t.Errorf("empty result: %s", r)
			}
		}
		if n := len(kpLines(mustKP(t, nil, "get", "profiles", "--service", "web", "--from", "10m", "--to", "now", pfURL).Stdout)); n != len(list)+1 {
			t.Errorf("--from 10m --to now: %d lines, want %d", n, len(list)+1)
		}
		kpWantOneError(t, runKP(t, nil, "get", "profiles", "--service", "web", "--from", "now", "--to", "1h", pfURL), "is after --to")
		kpWantOneError(t, runKP(t, nil, "get", "profiles", "--service", "web", "--from", "yesterday", pfURL), `invalid --from "yesterday"`)
	})

	t.Run("load-round-trips-every-type", func(t *testing.T) {
		ip := harness.AllocIP()
		tg := harness.TestTarget(t, ip, 6060, "-mutex", "-block")
		dir := t.TempDir()
		raw := map[string][]byte{}
		var files []string
		for _, typ := range []string{"cpu", "heap", "allocs", "goroutine", "mutex", "block", "threadcreate"} {
			url := tg.URL + "/debug/pprof/" + typ
			if typ == "cpu" {
				url = tg.URL + "/debug/pprof/profile?seconds=1"
			}
			var b []byte
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				var p *profile.Profile
				if b, p = fetchProfile(t, url); len(p.Sample) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s profile still empty", typ)
				}
			}
			f := filepath.Join(dir, typ+".pb.gz")
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
			raw[typ] = b
			files = append(files, f)
		}
		r := mustKP(t, nil, append([]string{"load", "--service", "loaded", "-l", "origin=e2e", pfURL}, files...)...)
		got := map[string][2]string{} // file type -> detected type, id
		for _, l := range kpLines(r.Stdout) {
			f := strings.Fields(l)
			if len(f) != 4 || !strings.HasPrefix(f[2], "id=") || f[3] != "service=loaded" {
				t.Fatalf("load line %q", l)
			}
			got[strings.TrimSuffix(filepath.Base(f[0]), ".pb.gz")] = [2]string{f[1], strings.TrimPrefix(f[2], "id=")}
		}
		list, err := pf.List(ctx, harness.ListQuery{Service: "loaded", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		for typ, b := range raw {
			want := typ
			if typ == "allocs" {
				want = "heap" // profefe has no allocs type
			}
			g, ok := got[typ]
			if !ok || g[0] != want {
				t.Errorf("%s.pb.gz loaded as %q, want %s", typ, g[0], want)
				continue
			}
			stored, err := pf.Get(ctx, g[1])
			if err != nil || !bytes.Equal(stored, b) {
				t.Errorf("%s: profefe holds %d bytes (%v), not the %d loaded", typ, len(stored), err, len(b))
			}
			i := slices.IndexFunc(list, func(m harness.ProfileMeta) bool { return m.ID == g[1] })
			if i < 0 || list[i].Type != want || list[i].LabelMap()["origin"] != "e2e" {
				t.Errorf("%s: listed as %+v", typ, list)
			} else if typ == "allocs" && list[i].LabelMap()["pprof_type"] != "allocs" {
				t.Errorf("allocs stored without pprof_type=allocs: %v", list[i].LabelMap())
			}
		}
		// --type overrides detection
		r = mustKP(t, nil, "load", "--service", "loaded-other", "--type", "other", files[1], pfURL)
		if f := strings.Fields(r.Stdout); len(f) != 4 || f[1] != "other" {
			t.Errorf("load --type other: %s", r)
		}
		bad := filepath.Join(dir, "not-a-profile.txt")
		os.WriteFile(bad, []byte("hello"), 0o644)
		kpWantOneError(t, runKP(t, nil, "load", "--service", "x", bad, pfURL), "not a pprof profile")
		kpWantOneError(t, runKP(t, nil, "load", "--service", "x", filepath.Join(dir, "missing.pb.gz"), pfURL), "No such file")
	})

	t.Run("pprof-and-merge-output-parses", func(t *testing.T) {
		list, err := pf.List(ctx, harness.ListQuery{Service: "web", Type: "heap", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute)})
		if err != nil || len(list) < 2 {
			t.Fatalf("want 2 heap profiles of web: %v %v", list, err)
		}
		dir := t.TempDir()
		one := filepath.Join(dir, "one.pb.gz")
		r := runKP(t, nil, "pprof", list[0].ID, "-o", one, pfURL)
		if r.Code != 0 || r.Stdout != "" || !strings.Contains(r.Stderr, "go tool pprof "+one) {
			t.Fatalf("pprof -o: %s", r)
		}
		p1 := kpParseProfileFile(t, one)
		two := filepath.Join(dir, "two.pb.gz")
		runKP(t, nil, "pprof", list[1].ID, "-o", two, pfURL)
		p2 := kpParseProfileFile(t, two)
		merged := filepath.Join(dir, "merged.pb.gz")
		runKP(t, nil, "pprof", list[0].ID, list[1].ID, "-o", merged, pfURL)
		pm := kpParseProfileFile(t, merged)
		// Merging adds up samples with the same stack, so totals add up.
		total := func(p *profile.Profile) int64 {
			i := slices.Index(sampleTypes(p), "alloc_space")
			if i < 0 {
				t.Fatalf("no alloc_space in %v", sampleTypes(p))
			}
			return sumValues(p, i)
		}
		if got, want := total(pm), total(p1)+total(p2); got != want {
			t.Errorf("merged profile holds %d bytes of alloc_space, its parts %d", got, want)
		}
		// stdout when it is not a terminal (here: a pipe)
		r = mustKP(t, nil, "pprof", list[0].ID, pfURL)
		if _, err := profile.Parse(strings.NewReader(r.Stdout)); err != nil {
			t.Errorf("pprof to stdout does not parse: %v", err)
		}
		rangeFile := filepath.Join(dir, "range.pb.gz")
		runKP(t, nil, "merge", "--service", "web", "--type", "heap", "--from", "1h", "-o", rangeFile, pfURL)
		if pr := kpParseProfileFile(t, rangeFile); !slices.Contains(sampleTypes(pr), "inuse_space") {
			t.Errorf("merged range sample types %v", sampleTypes(pr))
		}
		// merge -l: only the labelled pod's profiles
		var aID string
		for _, m := range list {
			if m.LabelMap()["pod"] == "web-5d4c8-aaaaa" {
				aID = m.ID
			}
		}
		aFile, aMerged := filepath.Join(dir, "a.pb.gz"), filepath.Join(dir, "a-merged.pb.gz")
		mustKP(t, nil, "pprof", aID, "-o", "-", pfURL) // stdout, explicitly
		runKP(t, nil, "pprof", aID, "-o", aFile, pfURL)
		r = runKP(t, nil, "merge", "--service", "web", "--type", "heap", "-l", "pod=web-5d4c8-aaaaa", "-o", aMerged, pfURL)
		if r.Code != 0 {
			t.Fatalf("merge -l: %s", r)
		}
		if got, want := total(kpParseProfileFile(t, aMerged)), total(kpParseProfileFile(t, aFile)); got != want {
			t.Errorf("merge -l pod=web-5d4c8-aaaaa holds %d bytes of alloc_space, that pod's one profile %d", got, want)
		}
		if gt, err := exec.LookPath("go"); err == nil {
			out, err := exec.Command(gt, "tool", "pprof", "-top", rangeFile).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Type: inuse_space") {
				t.Errorf("go tool pprof -top %s: %v\n%s", rangeFile, err, out)
			}
		}
		kpWantOneError(t, runKP(t, nil, "merge", "--service", "web", "--type", "mutex", "-o", filepath.Join(dir, "none"), pfURL), "no mutex profiles of service web")
	})

	t.Run("errors-are-one-line", func(t *testing.T) {
		port, _ := harness.FreePort("127.0.0.1")
		deadPF := fmt.Sprintf("--profefe-url=http://127.0.0.1:%d", port)
		kpWantOneError(t, runKP(t, nil, "get", "services", deadPF), "cannot reach profefe")
		kpWantOneError(t, runKP(t, nil, "get", "profiles", "--service", "web", deadPF), "cannot reach profefe")
		kpWantOneError(t, runKP(t, nil, "pprof", "abc", "-o", filepath.Join(t.TempDir(), "x"), deadPF), "cannot reach profefe")
		r := runKP(t, nil, kc, "capture", "web-5d4c8-aaaaa", "-n", ns1, "--type", "heap", deadPF)
		if errs := kpLines(r.Stderr); r.Code != 1 || len(errs) != 1 || !strings.Contains(errs[0], "cannot push to profefe") {
			t.Fatalf("capture to an unreachable profefe: %s", r)
		}

		// --request-timeout bounds a profefe that accepts and never answers.
		hung := harness.TestTarget(t, harness.AllocIP(), 6060, "-mode=hung")
		t0 := time.Now()
		kpWantOneError(t, runKP(t, nil, "get", "services", "--profefe-url", hung.URL, "--request-timeout=1s"), "timed out")
		if el := time.Since(t0); el > 10*time.Second {
			t.Errorf("--request-timeout=1s gave up after %v", el)
		}

		// An API server nobody listens on.
		dead := filepath.Join(t.TempDir(), "dead.kubeconfig")
		if err := harness.WriteKubeconfig(dead, harness.KubeconfigParams{Server: fmt.Sprintf("https://127.0.0.1:%d", port),
			CAPEM: cp.CA.CertPEM, User: "u", Token: "t"}); err != nil {
			t.Fatal(err)
		}
		kpWantOneError(t, runKP(t, nil, "--kubeconfig", dead, "capture", "-l", "app=web"), "cannot reach the API server")
		kpWantOneError(t, runKP(t, nil, "--kubeconfig", dead, "capture", "a", "b", "c"), "cannot reach the API server")
		kpWantOneError(t, runKP(t, nil, "--kubeconfig", filepath.Join(t.TempDir(), "missing"), "capture"), "missing")

		kpWantOneError(t, runKP(t, nil, kc, "capture", "no-such-pod", "-n", ns1), `pod "no-such-pod" not found in namespace "`+ns1+`"`)

		kpWantOneError(t, runKP(t, nil, "capture", "--bogus"), "unknown flag: --bogus")
		kpWantOneError(t, runKP(t, nil, "get", "profiles", "--seconds", "3"), "unknown flag --seconds")
		kpWantOneError(t, runKP(t, nil, "get", "profiles"), "needs --service")
		kpWantOneError(t, runKP(t, nil, "capture", "--type", "wall"), `invalid --type "wall"`)
		kpWantOneError(t, runKP(t, nil, "frobnicate"), `unknown command "frobnicate"`)
		kpWantOneError(t, runKP(t, nil, "capture", "-n"), "flag needs an argument")
	})

	// Once the binary is on PATH, the real kubectl runs it as `kubectl profefe`.
	t.Run("kubectl-runs-the-plugin", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, cp.Bins.Kubectl, "profefe", "capture", "web-5d4c8-aaaaa", "-n", ns1,
			"--type", "heap", "--output-dir", t.TempDir(), kc)
		var env []string
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "PATH=") && !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "KUBECONFIG=") {
				env = append(env, e)
			}
		}
		cmd.Env = append(env, "HOME="+t.TempDir(), "PATH="+filepath.Dir(kpBinary(t))+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), ns1+"/web-5d4c8-aaaaa heap ") {
			t.Fatalf("kubectl profefe capture: %v\n%s", err, out)
		}
	})

	t.Run("help-on-every-command", func(t *testing.T) {
		for _, c := range [][]string{{"capture"}, {"get", "profiles"}, {"get", "services"}, {"load"}, {"pprof"}, {"merge"}, {}} {
			r := mustKP(t, nil, append(c, "-h")...)
			if !strings.Contains(r.Stdout, "Usage:") || !strings.Contains(r.Stdout, "kubectl profefe") {
				t.Errorf("%v -h: %s", c, r)
			}
		}
	})
}

// TestPluginViaAPIServer captures through the API server's pod proxy. The
// API server refuses to proxy to loopback pod IPs, so the test makes a
// network namespace with a 10.x address on a dummy interface, and re-runs
// itself inside it: control plane, profefe, target and plugin all live in
// that namespace, and no traffic leaves it.
func TestPluginViaAPIServer(t *testing.T) {
	if ip := os.Getenv("PPOP_KP_NETNS_IP"); ip != "" {
		kpViaAPIServerInside(t, ip)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (ip netns add); the API server will not proxy to loopback pod IPs")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip to create a network namespace")
	}
	kpBinary(t)
	name := "ppop-kp-" + harness.RandHex(3)
	ip := "10.213.7.2"
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("netns", "add", name); err != nil {
		t.Skipf("cannot create a network namespace here: %v", err)
	}
	t.Cleanup(func() { _ = run("netns", "del", name) })
	// The pod address lives on a dummy interface or, where the dummy driver
	// is missing, on a veth pair whose two ends both stay in the namespace.
	if err := run("-n", name, "link", "set", "lo", "up"); err != nil {
		t.Skipf("cannot set up the network namespace: %v", err)
	}
	var setup [][]string
	if run("-n", name, "link", "add", "kp0", "type", "dummy") != nil {
		setup = [][]string{{"-n", name, "link", "add", "kp0", "type", "veth", "peer", "name", "kp1"},
			{"-n", name, "link", "set", "kp1", "up"}}
	}
	setup = append(setup, []string{"-n", name, "addr", "add", ip + "/24", "dev", "kp0"},
		[]string{"-n", name, "link", "set", "kp0", "up"})
	for _, args := range setup {
		if err := run(args...); err != nil {
			t.Skipf("cannot set up the network namespace: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", name, os.Args[0],
		"-test.run", "^TestPluginViaAPIServer$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "PPOP_KP_NETNS_IP="+ip)
	out, err := cmd.CombinedOutput()
	t.Logf("inside network namespace %s:\n%s", name, out)
	if err != nil {
		t.Fatalf("the test inside the network namespace failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestPluginViaAPIServer") {
		t.Fatalf("the test inside the network namespace did not pass")
	}
}

func kpViaAPIServerInside(t *testing.T, ip string) {
	cp := harness.TestControlPlane(t)
	pf := harness.TestProfefe(t)
	ctx := t.Context()
	ns := cp.TestNamespace(t)
	pod := &kpPod{NS: ns, Name: "remote", Labels: map[string]string{"app": "remote"}, Annotations: kpEnabled, Port: 6060, IP: ip}
	pod.start(t, cp)
	loop := &kpPod{NS: ns, Name: "loopback", Labels: map[string]string{"app": "loop"}, Annotations: kpEnabled, Port: 6060}
	loop.start(t, cp)

	// A user allowed to list pods but not yet to proxy to them.
	if err := cp.CreateServiceAccount(ctx, ns, "user"); err != nil {
		t.Fatal(err)
	}
	kcfg := filepath.Join(t.TempDir(), "user.kubeconfig")
	if _, err := cp.ServiceAccountKubeconfig(ctx, ns, "user", kcfg); err != nil {
		t.Fatal(err)
	}
	role := func(verbsProxy string) string {
		return `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: profiler}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get, list]}
` + verbsProxy + `---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: profiler}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: profiler}
subjects:
- {kind: ServiceAccount, name: user, namespace: ` + ns + `}
`
	}
	if _, err := cp.KubectlStdin(ctx, role(""), "apply", "-n", ns, "-f", "-"); err != nil {
		t.Fatal(err)
	}
	kc := "--kubeconfig=" + kcfg
	dir := t.TempDir()
	// RBAC reaches the authorizer through a watch: wait until getting the
	// pod is allowed, so only the proxy is left to refuse.
	var r kpResult
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r = runKP(t, nil, kc, "capture", "remote", "--via-apiserver", "--type", "heap", "--output-dir", dir)
		if !strings.Contains(r.Stderr, "getting pod") || time.Now().After(deadline) {
			break
		}
	}
	// Without pods/proxy the API server refuses: the capture goes through it.
	if errs := kpLines(r.Stderr); r.Code != 1 || len(errs) != 1 || !strings.Contains(errs[0], "HTTP 403") {
		t.Fatalf("without pods/proxy: want one HTTP 403 error: %s", r)
	}
	t.Logf("without pods/proxy: %s", kpLines(r.Stderr)[0])

	if _, err := cp.KubectlStdin(ctx, role("- {apiGroups: [\"\"], resources: [pods/proxy], verbs: [get]}\n"), "apply", "-n", ns, "-f", "-"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r = runKP(t, nil, kc, "capture", "remote", "--via-apiserver", "--type", "heap,goroutine,cpu", "--seconds", "1", "--output-dir", dir)
		if r.Code == 0 || time.Now().After(deadline) {
			break
		}
	}
	if r.Code != 0 {
		t.Fatalf("capture --via-apiserver with pods/proxy: %s", r)
	}
	cs := kpParseCaptured(t, r)
	if got, want := kpPodsOf(cs), []string{ns + "/remote cpu", ns + "/remote goroutine", ns + "/remote heap"}; !slices.Equal(got, want) {
		t.Fatalf("captured %v, want %v", got, want)
	}
	for _, c := range cs {
		if p := kpParseProfileFile(t, c.File); len(p.Sample) == 0 && c.Type != "cpu" {
			t.Errorf("%s: no samples", c.File)
		}
	}

	// Pushed to profefe through the proxy, by selector.
	r = mustKP(t, nil, kc, "capture", "-l", "app=remote", "--via-apiserver", "--type", "heap", "--profefe-url", pf.URL)
	cs = kpParseCaptured(t, r)
	if len(cs) != 1 || cs[0].ID == "" || cs[0].Service != "remote" {
		t.Fatalf("capture --via-apiserver --profefe-url: %s", r)
	}
	if _, err := pf.Get(ctx, cs[0].ID); err != nil {
		t.Errorf("profile %s not in profefe: %v", cs[0].ID, err)
	}

	// The API server will not proxy to a loopback pod IP: one clear line.
	r = runKP(t, nil, kc, "capture", "loopback", "--via-apiserver", "--type", "heap", "--output-dir", dir)
	if errs := kpLines(r.Stderr); r.Code != 1 || len(errs) != 1 || !strings.Contains(errs[0], ns+"/loopback heap") {
		t.Fatalf("loopback pod through the proxy: %s", r)
	}
	t.Logf("loopback pod through the proxy: %s", kpLines(r.Stderr)[0])
}
