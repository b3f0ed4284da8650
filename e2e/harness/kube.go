package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Object is a Kubernetes object as decoded JSON.
type Object = map[string]any

// Kube is a small Kubernetes REST client over net/http: client certificate or
// bearer token, JSON in and out. It exists so the harness needs no client-go.
type Kube struct {
	Server string // https://127.0.0.1:PORT
	HTTP   *http.Client
	Token  string // bearer token, if not using a client certificate
	caPEM  []byte
}

func newKube(server string, caPEM []byte, cert *tls.Certificate, token string) *Kube {
	tc := &tls.Config{RootCAs: certPool(caPEM), MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &Kube{
		Server: server,
		Token:  token,
		caPEM:  caPEM,
		HTTP: &http.Client{
			Timeout:   60 * time.Second,
			Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 8},
		},
	}
}

// WithToken returns a client for the same server authenticating with token.
func (k *Kube) WithToken(token string) *Kube { return newKube(k.Server, k.caPEM, nil, token) }

// APIError is a non-2xx answer from the API server.
type APIError struct {
	Method, Path string
	Code         int
	Body         string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Code, strings.TrimSpace(e.Body))
}

// StatusCode returns the HTTP status of an *APIError, else 0.
func StatusCode(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}

func IsNotFound(err error) bool      { return StatusCode(err) == http.StatusNotFound }
func IsConflict(err error) bool      { return StatusCode(err) == http.StatusConflict }
func IsForbidden(err error) bool     { return StatusCode(err) == http.StatusForbidden }
func IsAlreadyExists(err error) bool { return StatusCode(err) == http.StatusConflict }

// Do sends a request. body may be nil, []byte or any JSON-encodable value;
// PATCH bodies are sent as application/merge-patch+json. out may be nil,
// *[]byte (raw body) or a JSON decoding target.
func (k *Kube) Do(ctx context.Context, method, path string, body, out any) error {
	ct := "application/json"
	if method == http.MethodPatch {
		ct = "application/merge-patch+json"
	}
	return k.DoContentType(ctx, method, path, ct, body, out)
}

// DoContentType is Do with an explicit request Content-Type (e.g.
// application/strategic-merge-patch+json or application/apply-patch+yaml).
func (k *Kube) DoContentType(ctx context.Context, method, path, contentType string, body, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.Server+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "profefe-operator-e2e")
	if k.Token != "" {
		req.Header.Set("Authorization", "Bearer "+k.Token)
	}
	resp, err := k.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{Method: method, Path: path, Code: resp.StatusCode, Body: string(raw)}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = raw
		return nil
	default:
		return json.Unmarshal(raw, out)
	}
}

// Get returns the object at path, e.g. /api/v1/namespaces/ns/pods/p.
func (k *Kube) Get(ctx context.Context, path string) (Object, error) {
	var o Object
	return o, k.Do(ctx, http.MethodGet, path, nil, &o)
}

// Create POSTs obj to the collection at path and returns the created object.
func (k *Kube) Create(ctx context.Context, path string, obj any) (Object, error) {
	var o Object
	return o, k.Do(ctx, http.MethodPost, path, obj, &o)
}

// Patch merge-patches the object at path.
func (k *Kube) Patch(ctx context.Context, path string, patch any) (Object, error) {
	var o Object
	return o, k.Do(ctx, http.MethodPatch, path, patch, &o)
}

// Delete deletes the object at path at once (gracePeriodSeconds=0: there is
// no kubelet to finish a graceful pod deletion). Not found is not an error.
func (k *Kube) Delete(ctx context.Context, path string) error {
	err := k.Do(ctx, http.MethodDelete, path, map[string]any{"gracePeriodSeconds": 0}, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// CreateNamespace creates a namespace. Namespaces never finish deleting on
// a control plane without kube-controller-manager, so each test makes its own.
func (k *Kube) CreateNamespace(ctx context.Context, name string, labels map[string]string) error {
	_, err := k.Create(ctx, "/api/v1/namespaces", Object{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": Object{"name": name, "labels": labels},
	})
	return err
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// TestNamespace creates a namespace named after t plus a random suffix.
func (k *Kube) TestNamespace(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	name := base + "-" + RandHex(3)
	if err := k.CreateNamespace(context.Background(), name, nil); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// RandHex returns 2n random hex digits.
func RandHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// OwnerRef is a metadata.ownerReferences entry.
type OwnerRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller bool   `json:"controller,omitempty"`
}

// Pod describes a pod for CreatePod. Only Namespace and Name are required.
type Pod struct {
	Namespace   string
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	Owners      []OwnerRef
	Image       string // default "example.invalid/pproftarget:v1" (never pulled: there is no kubelet)
	Container   string // container name, default "app"
	NodeName    string // default "e2e-node"
	Port        int    // containerPort to declare, if any
}

// CreatePod creates the pod. It stays Pending until MarkRunning: there is no
// kubelet, and no scheduler (NodeName is set directly).
func (k *Kube) CreatePod(ctx context.Context, p Pod) (Object, error) {
	if p.Image == "" {
		p.Image = "example.invalid/pproftarget:v1"
	}
	if p.Container == "" {
		p.Container = "app"
	}
	if p.NodeName == "" {
		p.NodeName = "e2e-node"
	}
	c := Object{"name": p.Container, "image": p.Image}
	if p.Port != 0 {
		c["ports"] = []Object{{"name": "pprof", "containerPort": p.Port, "protocol": "TCP"}}
	}
	meta := Object{"name": p.Name, "namespace": p.Namespace}
	labels := map[string]string{}
	for k, v := range p.Labels {
		labels[k] = v
	}
	// The Deployment controller labels the pods of ReplicaSet
	// "<deployment>-<hash>" with pod-template-hash=<hash>; that label is
	// how a pod's Deployment is told from a bare ReplicaSet's.
	for _, o := range p.Owners {
		if o.Kind == "ReplicaSet" && strings.HasSuffix(o.Name, "-"+podTemplateHash) {
			if _, ok := labels["pod-template-hash"]; !ok {
				labels["pod-template-hash"] = podTemplateHash
			}
		}
	}
	if len(labels) > 0 {
		meta["labels"] = labels
	}
	if p.Annotations != nil {
		meta["annotations"] = p.Annotations
	}
	if p.Owners != nil {
		meta["ownerReferences"] = p.Owners
	}
	return k.Create(ctx, "/api/v1/namespaces/"+p.Namespace+"/pods", Object{
		"apiVersion": "v1", "kind": "Pod", "metadata": meta,
		"spec": Object{"nodeName": p.NodeName, "containers": []Object{c}},
	})
}

// PodStatus is what SetPodStatus writes.
type PodStatus struct {
	Phase string // Pending, Running, Succeeded, Failed
	Ready bool
	IP    string // podIP, e.g. 127.0.1.7; empty leaves no IP
}

// MarkRunning does the kubelet's job: phase Running, Ready=True, podIP ip.
func (k *Kube) MarkRunning(ctx context.Context, ns, name, ip string) error {
	return k.SetPodStatus(ctx, ns, name, PodStatus{Phase: "Running", Ready: true, IP: ip})
}

// SetPodStatus PATCHes pods/status the way a kubelet would report it:
// phase, Ready/ContainersReady/Initialized/PodScheduled conditions, podIP(s),
// hostIP, startTime and one running container status per container.
func (k *Kube) SetPodStatus(ctx context.Context, ns, name string, s PodStatus) error {
	pod, err := k.Get(ctx, "/api/v1/namespaces/"+ns+"/pods/"+name)
	if err != nil {
		return err
	}
	return k.SetPodStatusOf(ctx, pod, s)
}

// SetPodStatusOf is SetPodStatus for a pod object already at hand (e.g.
// what CreatePod returned): it saves the GET, which matters when creating
// tens of thousands of pods. Only the pod's name, namespace and containers
// are read.
func (k *Kube) SetPodStatusOf(ctx context.Context, pod Object, s PodStatus) error {
	meta, _ := pod["metadata"].(Object)
	ns, _ := meta["namespace"].(string)
	name, _ := meta["name"].(string)
	if ns == "" || name == "" {
		return fmt.Errorf("SetPodStatusOf: no metadata.namespace/name in the pod")
	}
	path := "/api/v1/namespaces/" + ns + "/pods/" + name
	now := time.Now().UTC().Format(time.RFC3339)
	ready := "False"
	if s.Ready {
		ready = "True"
	}
	var cstat []Object
	spec, _ := pod["spec"].(Object)
	containers, _ := spec["containers"].([]any)
	for _, c := range containers {
		c, _ := c.(Object)
		st := Object{"waiting": Object{"reason": "ContainerCreating"}}
		if s.Phase == "Running" {
			st = Object{"running": Object{"startedAt": now}}
		}
		cstat = append(cstat, Object{
			"name": c["name"], "image": c["image"], "imageID": "",
			"ready": s.Ready, "started": s.Phase == "Running", "restartCount": 0, "state": st,
		})
	}
	status := Object{
		"phase":     s.Phase,
		"hostIP":    "127.0.0.1",
		"hostIPs":   []Object{{"ip": "127.0.0.1"}},
		"startTime": now,
		"conditions": []Object{
			{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
			{"type": "Initialized", "status": "True", "lastTransitionTime": now},
			{"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
			{"type": "Ready", "status": ready, "lastTransitionTime": now},
		},
		"containerStatuses": cstat,
	}
	if s.IP != "" {
		status["podIP"] = s.IP
		status["podIPs"] = []Object{{"ip": s.IP}}
	}
	_, err := k.Patch(ctx, path+"/status", Object{"status": status})
	return err
}

// DeletePod deletes a pod at once.
func (k *Kube) DeletePod(ctx context.Context, ns, name string) error {
	return k.Delete(ctx, "/api/v1/namespaces/"+ns+"/pods/"+name)
}

// CreateWorkload creates an owner for pods and returns the OwnerRef the pods
// should carry. kind is Deployment (which creates a Deployment and a
// ReplicaSet "<name>-5d4c8" owned by it, and returns the ReplicaSet),
// ReplicaSet, StatefulSet, DaemonSet or Job. Nothing reconciles them: no
// controller-manager runs, so they never create pods themselves.
func (k *Kube) CreateWorkload(ctx context.Context, ns, kind, name string, labels map[string]string) (OwnerRef, error) {
	if len(labels) == 0 {
		labels = map[string]string{"app": name}
	}
	tmpl := Object{
		"metadata": Object{"labels": labels},
		"spec":     Object{"containers": []Object{{"name": "app", "image": "example.invalid/pproftarget:v1"}}},
	}
	spec := Object{"selector": Object{"matchLabels": labels}, "template": tmpl}
	var group, resource string
	switch kind {
	case "Deployment":
		group, resource = "apps/v1", "deployments"
	case "ReplicaSet":
		group, resource = "apps/v1", "replicasets"
	case "StatefulSet":
		group, resource = "apps/v1", "statefulsets"
		spec["serviceName"] = name
	case "DaemonSet":
		group, resource = "apps/v1", "daemonsets"
	case "Job":
		group, resource = "batch/v1", "jobs"
		tmpl["spec"].(Object)["restartPolicy"] = "Never"
		spec["manualSelector"] = true
	default:
		return OwnerRef{}, fmt.Errorf("CreateWorkload: unsupported kind %q", kind)
	}
	obj, err := k.Create(ctx, "/apis/"+group+"/namespaces/"+ns+"/"+resource, Object{
		"apiVersion": group, "kind": kind,
		"metadata": Object{"name": name, "namespace": ns, "labels": labels},
		"spec":     spec,
	})
	if err != nil {
		return OwnerRef{}, err
	}
	ref := OwnerRef{APIVersion: group, Kind: kind, Name: name, UID: uidOf(obj), Controller: true}
	if kind != "Deployment" {
		return ref, nil
	}
	rsName := name + "-" + podTemplateHash
	rs, err := k.Create(ctx, "/apis/apps/v1/namespaces/"+ns+"/replicasets", Object{
		"apiVersion": "apps/v1", "kind": "ReplicaSet",
		"metadata": Object{"name": rsName, "namespace": ns, "labels": labels,
			"ownerReferences": []OwnerRef{ref}},
		"spec": spec,
	})
	if err != nil {
		return OwnerRef{}, err
	}
	return OwnerRef{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rsName, UID: uidOf(rs), Controller: true}, nil
}

// podTemplateHash is the hash CreateWorkload gives a Deployment's ReplicaSet.
const podTemplateHash = "5d4c8"

func uidOf(o Object) string {
	m, _ := o["metadata"].(Object)
	s, _ := m["uid"].(string)
	return s
}

// CreateServiceAccount creates a ServiceAccount (no admission plugin or
// controller makes one for you here).
func (k *Kube) CreateServiceAccount(ctx context.Context, ns, name string) error {
	_, err := k.Create(ctx, "/api/v1/namespaces/"+ns+"/serviceaccounts", Object{
		"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": Object{"name": name, "namespace": ns},
	})
	return err
}

// CreateToken asks the TokenRequest API for a token of ServiceAccount ns/sa.
func (k *Kube) CreateToken(ctx context.Context, ns, sa string, ttl time.Duration) (string, error) {
	var tr struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	err := k.Do(ctx, http.MethodPost, "/api/v1/namespaces/"+ns+"/serviceaccounts/"+sa+"/token", Object{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
		"spec": Object{"expirationSeconds": int64(ttl / time.Second)},
	}, &tr)
	if err == nil && tr.Status.Token == "" {
		err = errors.New("TokenRequest returned no token")
	}
	return tr.Status.Token, err
}

// ServiceAccountKubeconfig gets a one-hour TokenRequest token for ns/sa and
// writes a kubeconfig using it to path (default namespace ns). It returns a
// client authenticating the same way.
func (k *Kube) ServiceAccountKubeconfig(ctx context.Context, ns, sa, path string) (*Kube, error) {
	token, err := k.CreateToken(ctx, ns, sa, time.Hour)
	if err != nil {
		return nil, err
	}
	err = WriteKubeconfig(path, KubeconfigParams{
		Server: k.Server, CAPEM: k.caPEM, User: "system:serviceaccount:" + ns + ":" + sa,
		Token: token, Namespace: ns,
	})
	if err != nil {
		return nil, err
	}
	return k.WithToken(token), nil
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
