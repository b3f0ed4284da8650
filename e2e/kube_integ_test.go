package e2e

// Runs kube/'s C integration programs (build/<preset>/kube/kube_integ_*)
// against a real kube-apiserver: list+watch with selectors, pagination and
// a forced 410; authentication by client cert, token file, exec plugin and
// a ServiceAccount TokenRequest token; leader election with takeover; and
// status writes, conflict retry and Event deduplication. Each program
// prints ok/FAIL lines and exits non-zero on any failure.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"profefe-operator/e2e/harness"
)

func TestKubeClientIntegration(t *testing.T) {
	bdir, err := harness.BuildDir()
	if err != nil {
		t.Fatal(err)
	}
	cp := harness.TestControlPlane(t)
	for _, prog := range []string{"kube_integ_watch", "kube_integ_auth", "kube_integ_leader", "kube_integ_writes"} {
		t.Run(prog, func(t *testing.T) {
			bin := filepath.Join(bdir, "kube", prog)
			if _, err := os.Stat(bin); err != nil {
				t.Fatalf("%v (build the C tree first)", err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, cp.AdminKubeconfig)
			cmd.Env = os.Environ()
			out, err := cmd.CombinedOutput()
			oks := strings.Count(string(out), "\nok - ") + map[bool]int{true: 1}[strings.HasPrefix(string(out), "ok - ")]
			if err != nil || strings.Contains(string(out), "FAIL - ") || oks == 0 {
				t.Fatalf("%s: %v (%d ok):\n%s", prog, err, oks, out)
			}
			t.Logf("%s: %d checks passed", prog, oks)
		})
	}
}
