package e2e

// The ProfilingPolicy CRD against a real API server and the real kubectl:
// samples apply, malformed policies are rejected with the intended message,
// kubectl explain teaches the API, and kubectl get shows the columns.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"profefe-operator/e2e/harness"
)

var metaNamespace = regexp.MustCompile(`(?m)^  namespace: (\S+)`)

func TestCRD(t *testing.T) {
	cp := harness.TestControlPlane(t)
	ctx := t.Context()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.InstallCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	ns := cp.TestNamespace(t)

	t.Run("samples-apply", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(root, "crd", "samples", "*.yaml"))
		if len(files) == 0 {
			t.Fatal("no samples in crd/samples")
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"apply", "-n", ns, "-f", f}
			// A sample that names its namespace is applied there.
			if m := metaNamespace.FindSubmatch(b); m != nil {
				if err := cp.CreateNamespace(ctx, string(m[1]), nil); err != nil && !harness.IsAlreadyExists(err) {
					t.Fatal(err)
				}
				args = []string{"apply", "-f", f}
			}
			if _, err := cp.Kubectl(ctx, args...); err != nil {
				t.Errorf("%s: %v", filepath.Base(f), err)
			}
		}
	})

	t.Run("invalid-rejected-with-message", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(root, "crd", "invalid", "*.yaml"))
		if len(files) < 10 {
			t.Fatalf("only %d invalid examples in crd/invalid", len(files))
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var expect string
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "# expect: "); ok {
					expect = strings.TrimSpace(v)
				}
			}
			if expect == "" {
				t.Errorf("%s has no '# expect:' line", filepath.Base(f))
				continue
			}
			_, stderr, err := cp.KubectlFull(ctx, nil, "apply", "-n", ns, "-f", f)
			if err == nil {
				t.Errorf("%s: the API server accepted it", filepath.Base(f))
				continue
			}
			if !strings.Contains(stderr, expect) {
				t.Errorf("%s: rejected, but not with %q:\n%s", filepath.Base(f), expect, stderr)
			}
		}
	})

	t.Run("explain-teaches", func(t *testing.T) {
		out, err := cp.Kubectl(ctx, "explain", "profilingpolicy.spec.schedule")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"DESCRIPTION", "@every", "cron"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl explain profilingpolicy.spec.schedule lacks %q:\n%s", want, out)
			}
		}
		out, err = cp.Kubectl(ctx, "explain", "profilingpolicy.spec.profiles.type")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"cpu", "heap", "allocs", "goroutine", "mutex", "block", "threadcreate"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl explain profiles.type lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("get-columns", func(t *testing.T) {
		out, err := cp.Kubectl(ctx, "get", "ppol", "-n", ns)
		if err != nil {
			t.Fatal(err)
		}
		header := strings.SplitN(out, "\n", 2)[0]
		for _, col := range []string{"NAME", "SCHEDULE", "SUSPEND", "TARGETS", "LAST CAPTURE", "ERRORS", "READY", "AGE"} {
			if !strings.Contains(header, col) {
				t.Errorf("kubectl get ppol header %q lacks %s", header, col)
			}
		}
		if _, err := cp.Kubectl(ctx, "get", "profiling", "-n", ns); err != nil {
			t.Errorf("category 'profiling': %v", err)
		}
	})
}
