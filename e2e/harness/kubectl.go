package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// KubectlError is a kubectl run that exited non-zero.
type KubectlError struct {
	Args   []string
	Err    error
	Stdout string
	Stderr string
}

func (e *KubectlError) Error() string {
	return fmt.Sprintf("kubectl %s: %v: %s", strings.Join(e.Args, " "), e.Err, strings.TrimSpace(e.Stderr))
}

// Kubectl runs the real kubectl (built at the apiserver's version, so there
// is no skew warning) as the admin, and returns its stdout. A non-zero exit
// is a *KubectlError carrying stdout and stderr.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) (string, error) {
	return cp.KubectlAs(ctx, cp.AdminKubeconfig, nil, args...)
}

// KubectlStdin is Kubectl with stdin (e.g. `apply -f -`).
func (cp *ControlPlane) KubectlStdin(ctx context.Context, stdin string, args ...string) (string, error) {
	return cp.KubectlAs(ctx, cp.AdminKubeconfig, strings.NewReader(stdin), args...)
}

// KubectlAs runs kubectl with another kubeconfig (e.g. a ServiceAccount's).
func (cp *ControlPlane) KubectlAs(ctx context.Context, kubeconfig string, stdin io.Reader, args ...string) (string, error) {
	out, _, err := RunKubectl(ctx, cp.Bins.Kubectl, kubeconfig, filepath.Join(cp.Dir, "home"), stdin, args...)
	return out, err
}

// KubectlFull runs kubectl as the admin and returns stdout and stderr (where
// kubectl writes notes such as "No resources found in ns namespace.").
func (cp *ControlPlane) KubectlFull(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	return RunKubectl(ctx, cp.Bins.Kubectl, cp.AdminKubeconfig, filepath.Join(cp.Dir, "home"), stdin, args...)
}

// RunKubectl runs bin with --kubeconfig=kubeconfig and args. HOME is set to
// home so kubectl's discovery cache never touches the user's ~/.kube, and
// KUBECONFIG is removed so nothing else is merged in.
func RunKubectl(ctx context.Context, bin, kubeconfig, home string, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", "", err
	}
	full := append([]string{"--kubeconfig=" + kubeconfig}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBECONFIG=") && !strings.HasPrefix(e, "HOME=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, "HOME="+home)
	cmd.Stdin = stdin
	var obuf, ebuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &obuf, &ebuf
	if err := cmd.Run(); err != nil {
		return obuf.String(), ebuf.String(), &KubectlError{Args: args, Err: err, Stdout: obuf.String(), Stderr: ebuf.String()}
	}
	return obuf.String(), ebuf.String(), nil
}

// CRDFiles are the CRDs users install, in crd/: ProfilingPolicy and
// ClusterProfilingPolicy.
var CRDFiles = []string{"profilingpolicies.profefe.com.yaml", "clusterprofilingpolicies.profefe.com.yaml"}

// InstallCRDs applies every CRD of crd/ (server-side) and waits until each
// is Established.
func (cp *ControlPlane) InstallCRDs(ctx context.Context) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	args := []string{"apply", "--server-side"}
	for _, f := range CRDFiles {
		args = append(args, "-f", filepath.Join(root, "crd", f))
	}
	if _, err := cp.Kubectl(ctx, args...); err != nil {
		return err
	}
	_, err = cp.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/profilingpolicies.profefe.com", "crd/clusterprofilingpolicies.profefe.com")
	return err
}
