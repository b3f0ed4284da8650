package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ControlPlaneOptions tune StartControlPlane. The zero value is fine.
type ControlPlaneOptions struct {
	// Dir holds certificates, etcd data, kubeconfigs and logs. Empty means a
	// new temporary folder, removed by Stop.
	Dir string
	// ExtraAPIServerFlags are appended to the kube-apiserver command line.
	ExtraAPIServerFlags []string
	// Binaries overrides FindBinaries.
	Binaries *Binaries
}

// ControlPlane is a running etcd + kube-apiserver on 127.0.0.1. It embeds an
// admin client (client certificate in group system:masters).
type ControlPlane struct {
	*Kube

	Dir             string
	Bins            Binaries
	EtcdURL         string // http://127.0.0.1:PORT
	APIServerURL    string // https://127.0.0.1:PORT
	AdminKubeconfig string // path of a kubeconfig for the admin user
	CA              *CA

	etcd      *Proc
	apiserver *Proc
	apiArgs   []string
	admin     KeyPair
	ownDir    bool
}

const apiServerIP = "127.0.0.1"

// StartControlPlane starts etcd and kube-apiserver on loopback, the way
// controller-runtime's envtest does, and waits until /readyz answers ok.
func StartControlPlane(ctx context.Context, opts ControlPlaneOptions) (_ *ControlPlane, err error) {
	cp := &ControlPlane{Dir: opts.Dir}
	if opts.Binaries != nil {
		cp.Bins = *opts.Binaries
	} else if cp.Bins, err = FindBinaries(); err != nil {
		return nil, err
	}
	if cp.Dir == "" {
		if cp.Dir, err = os.MkdirTemp("", "ppop-cp-"); err != nil {
			return nil, err
		}
		cp.ownDir = true
	} else if err = os.MkdirAll(cp.Dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	// A port from FreePort can be taken by someone else before the server
	// binds it; such a start is retried on fresh ports.
	for attempt := 1; ; attempt++ {
		if err = cp.startEtcd(ctx); err == nil || attempt == 3 || !lostPortRace(cp.etcd) {
			break
		}
		cp.etcd.Stop(time.Second)
		os.RemoveAll(filepath.Join(cp.Dir, "etcd"))
	}
	if err != nil {
		return nil, err
	}
	if err = cp.writeCredentials(opts.ExtraAPIServerFlags); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if err = cp.StartAPIServer(ctx); err == nil || attempt == 3 || !lostPortRace(cp.apiserver) {
			break
		}
		cp.apiserver.Stop(time.Second)
		if err = cp.listenOn(0); err != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return cp, nil
}

// lostPortRace tells whether p exited because its port was taken.
func lostPortRace(p *Proc) bool {
	if p == nil {
		return false
	}
	exited, _ := p.Exited()
	return exited && strings.Contains(p.Tail(40), "address already in use")
}

// TestControlPlane starts a control plane for t and stops it in t.Cleanup.
// On failure the tails of the etcd and kube-apiserver logs are logged.
func TestControlPlane(t testing.TB) *ControlPlane {
	t.Helper()
	// Generous: on a loaded 2-core machine kube-apiserver can take a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cp, err := StartControlPlane(ctx, ControlPlaneOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*Proc{cp.etcd, cp.apiserver} {
				if p != nil {
					t.Logf("--- tail of %s (%s):\n%s", p.Name, p.LogPath, p.Tail(15))
				}
			}
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return cp
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	client, err := FreePort(apiServerIP)
	if err != nil {
		return err
	}
	peer, err := FreePort(apiServerIP)
	if err != nil {
		return err
	}
	cu := fmt.Sprintf("http://%s:%d", apiServerIP, client)
	pu := fmt.Sprintf("http://%s:%d", apiServerIP, peer)
	cp.EtcdURL = cu
	args := []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls=" + cu,
		"--advertise-client-urls=" + cu,
		"--listen-peer-urls=" + pu,
		"--initial-advertise-peer-urls=" + pu,
		"--initial-cluster=e2e=" + pu,
		"--unsafe-no-fsync=true", // throwaway data; fsync dominates on slow disks
		"--log-level=warn",
	}
	cp.etcd, err = StartProc("etcd", filepath.Join(cp.Dir, "etcd.log"), os.Environ(), cp.Bins.Etcd, args...)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	return waitFor(ctx, "etcd /health", cp.etcd, 100*time.Millisecond, func() error {
		resp, err := hc.Get(cu + "/health")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"health":"true"`) {
			return fmt.Errorf("etcd /health: %d %s", resp.StatusCode, b)
		}
		return nil
	})
}

// writeCredentials makes the CA, the serving and admin certificates, the
// ServiceAccount keys, the admin kubeconfig and the apiserver command line.
func (cp *ControlPlane) writeCredentials(extra []string) (err error) {
	pki := filepath.Join(cp.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	if cp.CA, err = NewCA("profefe-operator-e2e-ca"); err != nil {
		return err
	}
	serving, err := cp.CA.Issue("kube-apiserver", nil,
		[]net.IP{net.ParseIP(apiServerIP)}, []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}, true)
	if err != nil {
		return err
	}
	admin, err := cp.CA.Issue("admin", []string{"system:masters"}, nil, nil, false)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.crt":      cp.CA.CertPEM,
		"serving.crt": serving.CertPEM, "serving.key": serving.KeyPEM,
		"admin.crt": admin.CertPEM, "admin.key": admin.KeyPEM,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(pki, name), b, 0o600); err != nil {
			return err
		}
	}
	if err := writeServiceAccountKeys(filepath.Join(pki, "sa.key"), filepath.Join(pki, "sa.pub")); err != nil {
		return err
	}
	cp.admin = admin
	cp.AdminKubeconfig = filepath.Join(cp.Dir, "admin.kubeconfig")
	cp.apiArgs = append([]string{
		"--etcd-servers=" + cp.EtcdURL,
		"--bind-address=" + apiServerIP,
		"--advertise-address=" + apiServerIP,
		"--secure-port=0", // set by listenOn
		"--cert-dir=" + pki,
		"--tls-cert-file=" + filepath.Join(pki, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "serving.key"),
		"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
	}, extra...)
	return cp.listenOn(0)
}

// listenOn sets the apiserver's port (0: a free one) in its flags, the admin
// kubeconfig and the admin client.
func (cp *ControlPlane) listenOn(port int) (err error) {
	if port == 0 {
		if port, err = FreePort(apiServerIP); err != nil {
			return err
		}
	}
	cp.APIServerURL = fmt.Sprintf("https://%s:%d", apiServerIP, port)
	for i, a := range cp.apiArgs {
		if strings.HasPrefix(a, "--secure-port=") {
			cp.apiArgs[i] = "--secure-port=" + strconv.Itoa(port)
		}
	}
	if err := WriteKubeconfig(cp.AdminKubeconfig, KubeconfigParams{
		Server: cp.APIServerURL, CAPEM: cp.CA.CertPEM, User: "admin",
		ClientCertPEM: cp.admin.CertPEM, ClientKeyPEM: cp.admin.KeyPEM, Namespace: "default",
	}); err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(cp.admin.CertPEM, cp.admin.KeyPEM)
	if err != nil {
		return err
	}
	cp.Kube = newKube(cp.APIServerURL, cp.CA.CertPEM, &pair, "")
	return nil
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer) on the
// same port with the same flags, and waits for /readyz.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	if cp.apiserver != nil {
		if exited, _ := cp.apiserver.Exited(); !exited {
			return errors.New("kube-apiserver is already running")
		}
	}
	var err error
	cp.apiserver, err = StartProc("kube-apiserver", filepath.Join(cp.Dir, "kube-apiserver.log"), os.Environ(), cp.Bins.KubeAPIServer, cp.apiArgs...)
	if err != nil {
		return err
	}
	return cp.WaitReady(ctx)
}

// StopAPIServer stops kube-apiserver gracefully (SIGTERM), leaving etcd up.
// Clients see their watches end, as on a real apiserver rollout.
func (cp *ControlPlane) StopAPIServer() error {
	if cp.apiserver == nil {
		return nil
	}
	return cp.apiserver.Stop(30 * time.Second)
}

// CompactEtcd compacts etcd's history up to its current revision, as
// kube-apiserver does every few minutes: a watch that resumes from an older
// resourceVersion is then answered 410 Gone, once the apiserver's watch
// cache no longer holds it either (after RestartAPIServer), and its client
// must relist. Returns the revision compacted to.
func (cp *ControlPlane) CompactEtcd(ctx context.Context) (int64, error) {
	post := func(path string, body, out any) error {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, cp.EtcdURL+path, bytes.NewReader(b))
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("etcd %s: %d %s", path, resp.StatusCode, rb)
		}
		return json.Unmarshal(rb, out)
	}
	var r struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	// A range over a key that does not exist still carries the revision.
	if err := post("/v3/kv/range", map[string]any{"key": "AA=="}, &r); err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(r.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd revision %q: %w", r.Header.Revision, err)
	}
	var ignored map[string]any
	if err := post("/v3/kv/compaction", map[string]any{"revision": strconv.FormatInt(rev, 10), "physical": true}, &ignored); err != nil {
		return 0, err
	}
	return rev, nil
}

// RestartAPIServer stops and starts kube-apiserver; data in etcd survives.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	if err := cp.StopAPIServer(); err != nil {
		return err
	}
	return cp.StartAPIServer(ctx)
}

// WaitReady waits until GET /readyz answers 200 "ok".
func (cp *ControlPlane) WaitReady(ctx context.Context) error {
	return waitFor(ctx, "kube-apiserver /readyz", cp.apiserver, 200*time.Millisecond, func() error {
		var body []byte
		err := cp.Do(ctx, "GET", "/readyz", nil, &body)
		if err == nil && strings.TrimSpace(string(body)) != "ok" {
			err = fmt.Errorf("/readyz: %s", body)
		}
		return err
	})
}

// Stop stops kube-apiserver, then etcd, and removes Dir if it made it.
func (cp *ControlPlane) Stop() error {
	var errs []error
	if cp.apiserver != nil {
		errs = append(errs, cp.apiserver.Stop(30*time.Second))
	}
	if cp.etcd != nil {
		errs = append(errs, cp.etcd.Stop(10*time.Second))
	}
	if cp.ownDir {
		errs = append(errs, os.RemoveAll(cp.Dir))
	}
	return errors.Join(errs...)
}

// APIServerLog and EtcdLog are the log file paths.
func (cp *ControlPlane) APIServerLog() string { return filepath.Join(cp.Dir, "kube-apiserver.log") }
func (cp *ControlPlane) EtcdLog() string      { return filepath.Join(cp.Dir, "etcd.log") }

// KubeconfigParams describe one cluster, user and context.
type KubeconfigParams struct {
	Server        string
	CAPEM         []byte
	User          string
	ClientCertPEM []byte // client certificate, or
	ClientKeyPEM  []byte
	Token         string // a bearer token
	Namespace     string
}

// WriteKubeconfig writes a one-context kubeconfig file (mode 0600).
func WriteKubeconfig(path string, p KubeconfigParams) error {
	b64 := func(b []byte) string { return base64Std(b) }
	var user string
	if p.Token != "" {
		user = fmt.Sprintf("    token: %q\n", p.Token)
	} else {
		user = fmt.Sprintf("    client-certificate-data: %s\n    client-key-data: %s\n", b64(p.ClientCertPEM), b64(p.ClientKeyPEM))
	}
	ns := p.Namespace
	if ns == "" {
		ns = "default"
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %q
    certificate-authority-data: %s
users:
- name: %q
  user:
%scontexts:
- name: e2e
  context:
    cluster: e2e
    user: %q
    namespace: %q
current-context: e2e
preferences: {}
`, p.Server, b64(p.CAPEM), p.User, user, p.User, ns)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

func certPool(caPEM []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return pool
}

// APIServerProc and EtcdProc are the running processes (nil before start).
func (cp *ControlPlane) APIServerProc() *Proc { return cp.apiserver }
func (cp *ControlPlane) EtcdProc() *Proc      { return cp.etcd }
