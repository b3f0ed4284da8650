package harness

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NetnsEnv names the network namespace a re-executed test runs in.
const NetnsEnv = "PPOP_REALNODE_NETNS"

// RunInNetns runs the calling test inside a network namespace it creates, so
// that a node's bridge, addresses, iptables rules and pods never touch the
// host's network. In the test process it creates the namespace, re-executes
// the test binary there for this test only (with a mount namespace of its
// own), streams its output, fails t if the child
// failed, then removes what the child left (processes, kubepods cgroups) and
// the namespace; it returns false. In the re-executed child it returns true:
// the caller runs the test's body.
func RunInNetns(t *testing.T, timeout time.Duration) bool {
	t.Helper()
	if os.Getenv(NetnsEnv) != "" {
		return true
	}
	ns := "ppop-e2e-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("SKIP real-node suite: cannot create a network namespace (ip netns add: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	defer func() {
		killNetnsPids(ns)
		removeKubepodsCgroups()
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", ns, err, out)
		}
	}()
	// A mount namespace of its own (mounts made there, by containerd and
	// kubelet, stay there; the host's, like /sys/fs/cgroup, are seen), and the
	// new network namespace. (`ip netns exec` would hide the cgroup mounts
	// behind a fresh /sys.)
	args := []string{"--mount", "--propagation", "slave", "--", "nsenter", "--net=/run/netns/" + ns, "--",
		os.Args[0], "-test.run=^" + t.Name() + "$", "-test.v", "-test.count=1", "-test.timeout=" + timeout.String()}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), NetnsEnv+"="+ns)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var out strings.Builder
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(io.MultiWriter(os.Stdout, &out), pr)
	}()
	t.Logf("real-node suite: running inside network namespace %s", ns)
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare/nsenter: %v", err)
	}
	err := cmd.Wait()
	pw.Close()
	<-copied
	text := out.String()
	switch {
	case err != nil:
		t.Fatalf("the real-node suite failed in network namespace %s (%v); its output is above", ns, err)
	case strings.Contains(text, "--- SKIP: "+t.Name()):
		reason := "see the output above"
		for _, l := range strings.Split(text, "\n") {
			if i := strings.Index(l, "SKIP real-node suite:"); i >= 0 {
				reason = strings.TrimSpace(l[i+len("SKIP real-node suite:"):])
			}
		}
		t.Skipf("SKIP real-node suite: %s", reason)
	}
	return false
}

// killNetnsPids SIGKILLs every process left in the namespace.
func killNetnsPids(ns string) {
	for i := 0; i < 3; i++ {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "warning: processes still in network namespace %s\n", ns)
}
