// Package harness runs the real parts the e2e tests of profefe-operator stand
// on: etcd and kube-apiserver (with an admin client certificate and RBAC), the
// real kubectl, the real profefe server, and pproftarget processes that play
// pods on loopback addresses. Nothing is mocked and every connection goes to
// 127.0.0.0/8.
//
// Every Start* function returns a handle with a Stop method; the Test*
// variants take a testing.TB, fail it on error and register Stop with
// t.Cleanup. Processes run in their own process group and, on Linux, get
// SIGKILL when the test binary dies, so nothing is left behind.
package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Binaries are the paths of the real programs built by e2e/tools/build.sh.
type Binaries struct {
	KubeAPIServer string // PPOP_KUBE_APISERVER
	Etcd          string // PPOP_ETCD
	Kubectl       string // PPOP_KUBECTL
	Profefe       string // PPOP_PROFEFE
}

var (
	binsOnce sync.Once
	bins     Binaries
	binsErr  error
)

// FindBinaries returns the binaries named by the PPOP_* environment variables
// (as printed by `e2e/tools/build.sh --print-env`). When any is unset it runs
// build.sh --print-env, which builds what is missing once per machine.
func FindBinaries() (Binaries, error) {
	binsOnce.Do(func() { bins, binsErr = findBinaries() })
	return bins, binsErr
}

func findBinaries() (Binaries, error) {
	env := map[string]string{}
	keys := []string{"PPOP_KUBE_APISERVER", "PPOP_ETCD", "PPOP_KUBECTL", "PPOP_PROFEFE"}
	missing := false
	for _, k := range keys {
		env[k] = os.Getenv(k)
		if env[k] == "" {
			missing = true
		}
	}
	if missing {
		root, err := E2EDir()
		if err != nil {
			return Binaries{}, err
		}
		script := filepath.Join(root, "tools", "build.sh")
		cmd := exec.Command("bash", script, "--print-env")
		cmd.Stderr = os.Stderr // build progress, so nobody stares at a silent terminal
		out, err := cmd.Output()
		if err != nil {
			return Binaries{}, fmt.Errorf("%s --print-env: %w", script, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
			if ok && env[k] == "" {
				env[k] = v
			}
		}
	}
	b := Binaries{
		KubeAPIServer: env["PPOP_KUBE_APISERVER"],
		Etcd:          env["PPOP_ETCD"],
		Kubectl:       env["PPOP_KUBECTL"],
		Profefe:       env["PPOP_PROFEFE"],
	}
	for i, p := range []string{b.KubeAPIServer, b.Etcd, b.Kubectl, b.Profefe} {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return Binaries{}, fmt.Errorf("%s=%q is not a built binary (run e2e/tools/build.sh)", keys[i], p)
		}
	}
	return b, nil
}

// E2EDir returns the e2e/ folder of the repository: $PPOP_E2E_DIR, else the
// nearest parent of the working directory holding the e2e go.mod, else the
// folder this source file was compiled from.
func E2EDir() (string, error) {
	if d := os.Getenv("PPOP_E2E_DIR"); d != "" {
		return d, nil
	}
	isE2E := func(d string) bool {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		return err == nil && bytes.Contains(b, []byte("module profefe-operator/e2e\n"))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if isE2E(d) {
				return d, nil
			}
			if isE2E(filepath.Join(d, "e2e")) {
				return filepath.Join(d, "e2e"), nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		if d := filepath.Dir(filepath.Dir(file)); isE2E(d) {
			return d, nil
		}
	}
	return "", errors.New("cannot find the e2e folder (set PPOP_E2E_DIR)")
}

// RepoRoot returns the repository root (the parent of e2e/).
func RepoRoot() (string, error) {
	d, err := E2EDir()
	if err != nil {
		return "", err
	}
	return filepath.Dir(d), nil
}

// BuildDir returns the C build folder holding the operator and
// kubectl-profefe binaries: $PPOP_BUILD_DIR, else <repo>/build.
func BuildDir() (string, error) {
	if d := os.Getenv("PPOP_BUILD_DIR"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "build"), nil
}

// CacheDir returns $PPOP_CACHE, else ~/.cache/profefe-operator, the folder
// build.sh builds into.
func CacheDir() string {
	if d := os.Getenv("PPOP_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "profefe-operator-cache")
	}
	return filepath.Join(home, ".cache", "profefe-operator")
}
