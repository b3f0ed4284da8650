// Package e2e holds the end-to-end tests of profefe-operator. They run real
// parts only (see harness): kube-apiserver + etcd, kubectl, profefe and Go
// pprof programs on loopback addresses.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"profefe-operator/e2e/harness"
)

// TestMain fails the run if any process a test started is still alive after
// all tests finished (and kills it), so leaks show up as failures.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := harness.KillLeftovers(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
