package harness

// A real node for the real-node suite: containerd + runc + the CNI bridge
// plugin, kubelet, kube-scheduler, kube-controller-manager and kube-proxy
// (built by `tools/build.sh --node` from the same wrapper module as
// kube-apiserver), and a small cluster DNS. Everything runs inside the
// network namespace the calling test process lives in (see RunInNetns in
// netns.go): the node's address is on a bridge there, never on the host.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NodeBinaries are the node parts: PPOP_KUBELET etc. from build.sh --node.
type NodeBinaries struct {
	Kubelet, ControllerManager, Scheduler, Proxy string
}

// Node network constants: all inside the test's network namespace.
const (
	NodeName     = "ppop-node"
	NodeIP       = "10.88.0.1"
	PodCIDR      = "10.88.0.0/16"
	ServiceCIDR  = "10.0.0.0/24" // the harness's --service-cluster-ip-range
	APIServiceIP = "10.0.0.1"
	bridgeName   = "ppop0"
	cniBinDir    = "/usr/lib/cni"
)

// FindNodeBinaries reads PPOP_KUBELET, PPOP_KUBE_CONTROLLER_MANAGER,
// PPOP_KUBE_SCHEDULER and PPOP_KUBE_PROXY, else runs build.sh --node --print-env.
func FindNodeBinaries() (NodeBinaries, error) {
	keys := []string{"PPOP_KUBELET", "PPOP_KUBE_CONTROLLER_MANAGER", "PPOP_KUBE_SCHEDULER", "PPOP_KUBE_PROXY"}
	env := map[string]string{}
	missing := false
	for _, k := range keys {
		if env[k] = os.Getenv(k); env[k] == "" {
			missing = true
		}
	}
	if missing {
		root, err := E2EDir()
		if err != nil {
			return NodeBinaries{}, err
		}
		cmd := exec.Command("bash", filepath.Join(root, "tools", "build.sh"), "--node", "--print-env")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return NodeBinaries{}, fmt.Errorf("tools/build.sh --node --print-env: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
			if ok && env[k] == "" {
				env[k] = v
			}
		}
	}
	b := NodeBinaries{env[keys[0]], env[keys[1]], env[keys[2]], env[keys[3]]}
	for i, p := range []string{b.Kubelet, b.ControllerManager, b.Scheduler, b.Proxy} {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return NodeBinaries{}, fmt.Errorf("%s=%q is not a built binary (run e2e/tools/build.sh --node)", keys[i], p)
		}
	}
	return b, nil
}

// NodePrereqs tells why a real node cannot run on this machine, or nil.
// The reason is meant for t.Skip, word for word.
func NodePrereqs() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, containerd, kubelet); run as root")
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "unshare", "nsenter", "iptables", "iptables-restore", "mount", "umount"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed (Debian: containerd runc iproute2 iptables)", bin)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			return fmt.Errorf("CNI plugin %s/%s is missing (Debian: containernetworking-plugins)", cniBinDir, p)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		return errors.New("no /sys/fs/cgroup: kubelet needs cgroups")
	}
	probe := "/sys/fs/cgroup/memory/ppop-probe"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		probe = "/sys/fs/cgroup/ppop-probe"
	}
	if err := os.Mkdir(probe, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("cannot create a cgroup (%v): kubelet and runc need writable cgroups", err)
	}
	os.Remove(probe)
	return nil
}

// Node is a running node.
type Node struct {
	CP   *ControlPlane
	Dir  string
	Bins NodeBinaries
	Sock string // containerd's socket

	containerd, kubelet, scheduler, controllerManager, proxy *Proc
	dns                                                      *clusterDNS
}

// SetupNodeNetwork brings up lo and the node's bridge with NodeIP in the
// current network namespace (the one RunInNetns made).
func SetupNodeNetwork() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", NodeIP + "/16", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
}

// NodeAPIServerFlags are the extra kube-apiserver flags a node needs: reachable
// on the node's address (pods reach it through the kubernetes Service), the
// Node authorizer (added to RBAC: the flag appends), the Service's endpoints
// kept, and the ServiceAccount admission plugin back on (see NodeAPIServerWrapper).
func NodeAPIServerFlags() []string {
	return []string{
		"--bind-address=0.0.0.0",
		"--advertise-address=" + NodeIP,
		"--authorization-mode=Node",
		"--endpoint-reconciler-type=lease",
		"--kubelet-preferred-address-types=InternalIP",
	}
}

// NodeAPIServerWrapper writes a script that runs kube-apiserver without the
// harness's --disable-admission-plugins=ServiceAccount: real pods need their
// ServiceAccount token volume, which that plugin adds.
func NodeAPIServerWrapper(dir, apiserver string) (string, error) {
	path := filepath.Join(dir, "kube-apiserver-node")
	script := `#!/bin/bash
args=()
for a in "$@"; do
  [[ "$a" == --disable-admission-plugins=ServiceAccount ]] || args+=("$a")
done
exec ` + strconv.Quote(apiserver) + ` "${args[@]}"
`
	return path, os.WriteFile(path, []byte(script), 0o755)
}

// ServeOnNodeIP gives kube-apiserver a serving certificate for the node's
// address and the kubernetes Service's, and restarts it.
func (cp *ControlPlane) ServeOnNodeIP(ctx context.Context) error {
	serving, err := cp.CA.Issue("kube-apiserver", nil,
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(NodeIP), net.ParseIP(APIServiceIP)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, true)
	if err != nil {
		return err
	}
	pki := filepath.Join(cp.Dir, "pki")
	if err := os.WriteFile(filepath.Join(pki, "serving.crt"), serving.CertPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pki, "serving.key"), serving.KeyPEM, 0o600); err != nil {
		return err
	}
	return cp.RestartAPIServer(ctx)
}

// logf is where StartNode reports progress (t.Logf in tests).
type logf func(format string, args ...any)

// StartNode starts containerd, the cluster DNS, kubelet, kube-scheduler,
// kube-controller-manager and kube-proxy, and waits for the Node to be Ready.
// sandboxImage is containerd's pod sandbox ("pause") image, imported first
// from sandboxArchive.
func StartNode(ctx context.Context, cp *ControlPlane, dir string, sandboxImage, sandboxArchive string, log logf) (_ *Node, err error) {
	n := &Node{CP: cp, Dir: dir}
	if n.Bins, err = FindNodeBinaries(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "pki"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	n.Sock = filepath.Join(dir, "containerd", "containerd.sock")
	t0 := time.Now()

	// containerd with the CRI plugin and the CNI bridge.
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(dir, "containerd", "root"), filepath.Join(dir, "containerd", "state"), n.Sock,
		filepath.Join(dir, "containerd", "ttrpc.sock"), filepath.Join(dir, "containerd", "opt"),
		sandboxImage, cniBinDir, filepath.Join(dir, "cni", "net.d"))
	if err := os.WriteFile(filepath.Join(dir, "containerd", "config.toml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	// containerd sets up each pod's loopback itself; the list holds the bridge.
	cni := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "ppop", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]]}}
]}`, bridgeName, filepath.Join(dir, "cni", "ipam"), PodCIDR, NodeIP)
	if err := os.WriteFile(filepath.Join(dir, "cni", "net.d", "10-ppop.conflist"), []byte(cni), 0o644); err != nil {
		return nil, err
	}
	log("node: starting containerd (%s)", filepath.Join(dir, "containerd.log"))
	if n.containerd, err = StartProc("containerd", filepath.Join(dir, "containerd.log"), os.Environ(),
		"containerd", "--config", filepath.Join(dir, "containerd", "config.toml")); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "containerd", n.containerd, 100*time.Millisecond, func() error {
		_, err := n.Ctr(ctx, "version")
		return err
	}); err != nil {
		return nil, err
	}
	log("node: importing the sandbox image %s", sandboxImage)
	if err := n.ImportImage(ctx, sandboxArchive); err != nil {
		return nil, err
	}

	// The cluster DNS (Services only) on the node's address.
	if n.dns, err = startClusterDNS(cp, NodeIP+":53"); err != nil {
		return nil, err
	}
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+NodeIP+"\n"), 0o644); err != nil {
		return nil, err
	}

	// kubelet: a client certificate in system:nodes, the Node authorizer's subject.
	kc, err := cp.CA.Issue("system:node:"+NodeName, []string{"system:nodes"}, nil, nil, false)
	if err != nil {
		return nil, err
	}
	kubeletKubeconfig := filepath.Join(dir, "kubelet.kubeconfig")
	if err := WriteKubeconfig(kubeletKubeconfig, KubeconfigParams{Server: cp.APIServerURL, CAPEM: cp.CA.CertPEM,
		User: "system:node:" + NodeName, ClientCertPEM: kc.CertPEM, ClientKeyPEM: kc.KeyPEM}); err != nil {
		return nil, err
	}
	caFile := filepath.Join(cp.Dir, "pki", "ca.crt")
	port, err := FreePort(NodeIP)
	if err != nil {
		return nil, err
	}
	healthz, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	kcfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://%s
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: %q}
authorization: {mode: AlwaysAllow}
clusterDNS: [%s]
clusterDomain: cluster.local
resolvConf: %q
rotateCertificates: false
serverTLSBootstrap: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "1Mi", "nodefs.available": "1%%", "imagefs.available": "1%%", "nodefs.inodesFree": "1%%"}
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
fileCheckFrequency: 5s
volumePluginDir: %q
`, NodeIP, port, healthz, n.Sock, caFile, NodeIP, resolv, filepath.Join(dir, "kubelet", "volume-plugins"))
	kcfgPath := filepath.Join(dir, "kubelet-config.yaml")
	if err := os.WriteFile(kcfgPath, []byte(kcfg), 0o644); err != nil {
		return nil, err
	}
	log("node: starting kubelet (%s)", filepath.Join(dir, "kubelet.log"))
	if n.kubelet, err = StartProc("kubelet", filepath.Join(dir, "kubelet.log"), os.Environ(), n.Bins.Kubelet,
		"--config="+kcfgPath, "--kubeconfig="+kubeletKubeconfig, "--root-dir="+filepath.Join(dir, "kubelet"),
		"--cert-dir="+filepath.Join(dir, "kubelet", "pki"), "--hostname-override="+NodeName, "--node-ip="+NodeIP,
		"--v=1"); err != nil {
		return nil, err
	}

	// The control loops the node's workloads need: scheduling, Deployments,
	// ReplicaSets, EndpointSlices, the PDB's status, garbage collection.
	pki := filepath.Join(cp.Dir, "pki")
	sched, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	log("node: starting kube-scheduler, kube-controller-manager and kube-proxy")
	if n.scheduler, err = StartProc("kube-scheduler", filepath.Join(dir, "kube-scheduler.log"), os.Environ(), n.Bins.Scheduler,
		"--kubeconfig="+cp.AdminKubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(sched)); err != nil {
		return nil, err
	}
	kcm, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	if n.controllerManager, err = StartProc("kube-controller-manager", filepath.Join(dir, "kube-controller-manager.log"), os.Environ(),
		n.Bins.ControllerManager, "--kubeconfig="+cp.AdminKubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(kcm), "--root-ca-file="+filepath.Join(pki, "ca.crt"),
		"--service-account-private-key-file="+filepath.Join(pki, "sa.key"), "--use-service-account-credentials=false",
		"--cluster-cidr="+PodCIDR, "--service-cluster-ip-range="+ServiceCIDR,
		"--node-monitor-grace-period=20s"); err != nil {
		return nil, err
	}
	ph, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	pm, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	if n.proxy, err = StartProc("kube-proxy", filepath.Join(dir, "kube-proxy.log"), os.Environ(), n.Bins.Proxy,
		"--kubeconfig="+cp.AdminKubeconfig, "--hostname-override="+NodeName, "--proxy-mode=iptables",
		"--cluster-cidr="+PodCIDR, "--masquerade-all", "--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--healthz-bind-address=127.0.0.1:"+strconv.Itoa(ph), "--metrics-bind-address=127.0.0.1:"+strconv.Itoa(pm)); err != nil {
		return nil, err
	}

	log("node: waiting for Node %s to be Ready", NodeName)
	if err := waitFor(ctx, "Node "+NodeName+" Ready", n.kubelet, 250*time.Millisecond, func() error {
		out, err := cp.Kubectl(ctx, "get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if out != "True" {
			return fmt.Errorf("Ready=%q", out)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	log("node: %s Ready %.1fs after containerd started", NodeName, time.Since(t0).Seconds())
	return n, nil
}

// Ctr runs ctr against the node's containerd in the k8s.io namespace.
func (n *Node) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.Sock, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// ImportImage loads an OCI archive (scripts/image.sh) into the node's
// containerd, under its name and also as NAME@DIGEST, the reference a
// by-digest manifest asks for (a pull records both; an import only the name).
func (n *Node) ImportImage(ctx context.Context, archive string) error {
	if _, err := n.Ctr(ctx, "images", "import", archive); err != nil {
		return err
	}
	name, digest, err := archiveRef(archive)
	if err != nil {
		return err
	}
	repo := name
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo = name[:i]
	}
	_, err = n.Ctr(ctx, "images", "tag", "--force", name, repo+"@"+digest)
	return err
}

// archiveRef reads the image name and manifest digest from an OCI archive's index.json.
func archiveRef(archive string) (name, digest string, err error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			return "", "", fmt.Errorf("%s: no index.json: %v", archive, err)
		}
		if h.Name != "index.json" {
			continue
		}
		var idx struct {
			Manifests []struct {
				Digest      string            `json:"digest"`
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			return "", "", fmt.Errorf("%s: index.json: %v", archive, err)
		}
		if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["io.containerd.image.name"] == "" {
			return "", "", fmt.Errorf("%s: want one named manifest in index.json", archive)
		}
		return idx.Manifests[0].Annotations["io.containerd.image.name"], idx.Manifests[0].Digest, nil
	}
}

// Procs are the node's processes, for log tails.
func (n *Node) Procs() []*Proc {
	var ps []*Proc
	for _, p := range []*Proc{n.containerd, n.kubelet, n.scheduler, n.controllerManager, n.proxy} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Stop tears the node down in order: pods (kubelet stops them when drained is
// too slow; containerd's tasks are killed instead), kubelet and the control
// loops, containerd's tasks and shims, then containerd, the mounts under the
// node's folder deepest first, the kubepods cgroups, and the bridge.
func (n *Node) Stop() error {
	var errs []error
	for _, p := range []*Proc{n.proxy, n.controllerManager, n.scheduler, n.kubelet} {
		if p != nil {
			errs = append(errs, p.Stop(10*time.Second))
		}
	}
	if n.dns != nil {
		n.dns.Close()
	}
	if n.containerd != nil {
		if exited, _ := n.containerd.Exited(); !exited {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			if out, err := n.Ctr(ctx, "tasks", "ls", "-q"); err == nil {
				for _, id := range strings.Fields(out) {
					n.Ctr(ctx, "tasks", "kill", "-s", "SIGKILL", id)
				}
				for _, id := range strings.Fields(out) {
					for i := 0; i < 20; i++ {
						if _, err := n.Ctr(ctx, "tasks", "delete", "-f", id); err == nil {
							break
						}
						time.Sleep(100 * time.Millisecond)
					}
				}
			}
			cancel()
		}
		errs = append(errs, n.containerd.Stop(10*time.Second))
	}
	killShims(n.Dir)
	errs = append(errs, unmountUnder(n.Dir))
	errs = append(errs, removeKubepodsCgroups())
	exec.Command("ip", "link", "delete", bridgeName).Run()
	return errors.Join(errs...)
}

// killShims kills containerd-shim-runc-v2 processes whose command line names
// the node's folder (containerd's state lives there), and what runs in them.
func killShims(dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if bytes.Contains(cmdline, []byte("containerd-shim")) && bytes.Contains(cmdline, []byte(dir)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder unmounts every mount point under dir, deepest first.
func unmountUnder(dir string) error {
	var last error
	for try := 0; try < 5; try++ {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		var mps []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
				mps = append(mps, f[4])
			}
		}
		if len(mps) == 0 {
			return nil
		}
		// deepest first: longer paths are below shorter ones
		sortByDepth(mps)
		last = nil
		for _, mp := range mps {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("umount %s: %w", mp, err)
			}
		}
	}
	return last
}

func sortByDepth(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && strings.Count(s[j], "/") > strings.Count(s[j-1], "/"); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// removeKubepodsCgroups kills what is left in the kubepods cgroups and removes
// them, deepest first, in every hierarchy (cgroup v1) or the unified one.
func removeKubepodsCgroups() error {
	var roots []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		roots = []string{"/sys/fs/cgroup"}
	} else {
		ents, _ := os.ReadDir("/sys/fs/cgroup")
		for _, e := range ents {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	var dirs []string
	for _, r := range roots {
		for _, top := range []string{"kubepods", "kubepods.slice"} {
			filepath.WalkDir(filepath.Join(r, top), func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
		}
	}
	sortByDepth(dirs)
	var last error
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	for _, d := range dirs {
		var err error
		for i := 0; i < 50; i++ {
			if err = os.Remove(d); err == nil || os.IsNotExist(err) {
				err = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			last = fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return last
}

// clusterDNS answers A queries for <service>.<namespace>.svc.cluster.local
// with the Service's ClusterIP, looked up through the API server; other names
// get NXDOMAIN. It stands in for CoreDNS, which is not part of the build.
type clusterDNS struct {
	cp   *ControlPlane
	conn net.PacketConn
	mu   sync.Mutex
	done chan struct{}
}

func startClusterDNS(cp *ControlPlane, addr string) (*clusterDNS, error) {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster DNS on %s: %w", addr, err)
	}
	d := &clusterDNS{cp: cp, conn: c, done: make(chan struct{})}
	go d.serve()
	return d, nil
}

func (d *clusterDNS) Close() { d.conn.Close(); <-d.done }

func (d *clusterDNS) serve() {
	defer close(d.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		q := append([]byte(nil), buf[:n]...)
		go func() {
			if resp := d.answer(q); resp != nil {
				d.conn.WriteTo(resp, from)
			}
		}()
	}
}

// answer builds the reply to one query (one question, as resolvers send).
func (d *clusterDNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	// the question: labels, then type and class
	i := 12
	var labels []string
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l&0xc0 != 0 || i+1+l > len(q) {
			return nil
		}
		labels = append(labels, strings.ToLower(string(q[i+1:i+1+l])))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qend := i + 5
	qtype := binary.BigEndian.Uint16(q[i+1 : i+3])
	name := strings.Join(labels, ".")
	resp := make([]byte, 0, 512)
	resp = append(resp, q[0], q[1])
	flags := uint16(0x8180) // response, recursion desired+available
	var ip net.IP
	found := false
	if parts := strings.Split(name, "."); len(parts) == 5 && strings.HasSuffix(name, ".svc.cluster.local") {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var svc struct {
			Spec struct {
				ClusterIP string `json:"clusterIP"`
			} `json:"spec"`
		}
		err := d.cp.Do(ctx, "GET", "/api/v1/namespaces/"+parts[1]+"/services/"+parts[0], nil, &svc)
		cancel()
		if err == nil {
			found = true
			ip = net.ParseIP(svc.Spec.ClusterIP).To4()
		}
	}
	if !found {
		flags |= 3 // NXDOMAIN
	}
	ancount := 0
	if found && qtype == 1 && ip != nil {
		ancount = 1
	}
	resp = binary.BigEndian.AppendUint16(resp, flags)
	resp = binary.BigEndian.AppendUint16(resp, 1)
	resp = binary.BigEndian.AppendUint16(resp, uint16(ancount))
	resp = binary.BigEndian.AppendUint16(resp, 0)
	resp = binary.BigEndian.AppendUint16(resp, 0)
	resp = append(resp, q[12:qend]...)
	if ancount == 1 {
		resp = append(resp, 0xc0, 12) // the name in the question
		resp = binary.BigEndian.AppendUint16(resp, 1)
		resp = binary.BigEndian.AppendUint16(resp, 1)
		resp = binary.BigEndian.AppendUint32(resp, 5)
		resp = binary.BigEndian.AppendUint16(resp, 4)
		resp = append(resp, ip...)
	}
	return resp
}
