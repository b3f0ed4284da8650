package e2e

// The operator's command line: --help, --version, bad flags, and --check,
// which loads the configuration, says what it would use, and exits.

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"profefe-operator/e2e/harness"
)

func runOperator(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bdir, err := harness.BuildDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), filepath.Join(bdir, "operator", "profefe-operator"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=/nonexistent/kubeconfig", "KUBERNETES_SERVICE_HOST=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestOperatorCLI(t *testing.T) {
	if out, code := runOperator(t, "--version"); code != 0 || !strings.HasPrefix(out, "profefe-operator ") {
		t.Errorf("--version: %d %q", code, out)
	}
	if out, code := runOperator(t, "--help"); code != 0 || !strings.Contains(out, "--leader-elect") || !strings.Contains(out, "--spool-dir") {
		t.Errorf("--help: %d %q", code, out)
	}
	if out, code := runOperator(t, "--max-inflight=0"); code != 2 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "--max-inflight") {
		t.Errorf("a bad flag must be one line and exit 2: %d %q", code, out)
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "good.kubeconfig")
	if err := os.WriteFile(good, []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: "t"}
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: web}
current-context: ctx
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runOperator(t, "--check", "--kubeconfig", good, "--profefe-url", "http://127.0.0.1:10100")
	if code != 0 || !strings.Contains(out, "configuration ok") || !strings.Contains(out, "https://127.0.0.1:6443") {
		t.Errorf("--check with a good kubeconfig: %d %q", code, out)
	}

	bad := filepath.Join(dir, "bad.kubeconfig")
	if err := os.WriteFile(bad, []byte("clusters: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = runOperator(t, "--check", "--kubeconfig", bad)
	if code != 1 || !strings.Contains(out, bad) {
		t.Errorf("--check with a broken kubeconfig must fail naming the file: %d %q", code, out)
	}
	out, code = runOperator(t, "--check", "--kubeconfig", filepath.Join(dir, "missing"))
	if code != 1 || !strings.Contains(out, "missing") {
		t.Errorf("--check with a missing kubeconfig: %d %q", code, out)
	}
}
