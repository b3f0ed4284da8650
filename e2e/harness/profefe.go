package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Profefe is a running profefe server with badger storage in a temp folder.
type Profefe struct {
	URL  string // http://127.0.0.1:PORT
	Addr string // 127.0.0.1:PORT
	Dir  string
	Proc *Proc

	http   *http.Client
	bin    string
	ownDir bool
}

// StartProfefe starts `profefe -addr 127.0.0.1:PORT -storage-type badger
// -badger.dir DIR/badger` and waits until GET /api/0/version answers.
// dir == "" makes a temporary folder that Stop removes.
func StartProfefe(ctx context.Context, dir string) (_ *Profefe, err error) {
	bins, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	pf := &Profefe{Dir: dir, http: &http.Client{Timeout: 30 * time.Second}}
	if pf.Dir == "" {
		if pf.Dir, err = os.MkdirTemp("", "ppop-profefe-"); err != nil {
			return nil, err
		}
		pf.ownDir = true
	} else if err = os.MkdirAll(pf.Dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			pf.Stop()
		}
	}()
	port, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	pf.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	pf.URL = "http://" + pf.Addr
	pf.bin = bins.Profefe
	if err = pf.StartServer(ctx); err != nil {
		return nil, err
	}
	return pf, nil
}

// StartServer starts the profefe process (again, after StopServer) on the
// same address and badger folder, and waits until it answers.
func (pf *Profefe) StartServer(ctx context.Context) error {
	if pf.Proc != nil {
		if exited, _ := pf.Proc.Exited(); !exited {
			return errors.New("profefe is already running")
		}
	}
	var err error
	pf.Proc, err = StartProc("profefe", filepath.Join(pf.Dir, "profefe.log"), os.Environ(), pf.bin,
		"-addr", pf.Addr, "-storage-type", "badger", "-badger.dir", filepath.Join(pf.Dir, "badger"),
		"-log.level", "warn")
	if err != nil {
		return err
	}
	return waitFor(ctx, "profefe /api/0/version", pf.Proc, 50*time.Millisecond, func() error {
		resp, err := pf.http.Get(pf.URL + "/api/0/version")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("profefe /api/0/version: HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

// StopServer stops the profefe process only (an outage); stored profiles
// survive in the badger folder for StartServer.
func (pf *Profefe) StopServer() error {
	if pf.Proc == nil {
		return nil
	}
	return pf.Proc.Stop(15 * time.Second)
}

// TestProfefe starts profefe for t and stops it in t.Cleanup.
func TestProfefe(t testing.TB) *Profefe {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pf, err := StartProfefe(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("start profefe: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- tail of profefe (%s):\n%s", pf.Proc.LogPath, pf.Proc.Tail(15))
		}
		if err := pf.Stop(); err != nil {
			t.Errorf("stop profefe: %v", err)
		}
	})
	return pf
}

// Stop stops profefe (it flushes badger on SIGTERM) and removes Dir if it
// made it.
func (pf *Profefe) Stop() error {
	var errs []error
	if pf.Proc != nil {
		errs = append(errs, pf.Proc.Stop(15*time.Second))
	}
	if pf.ownDir {
		errs = append(errs, os.RemoveAll(pf.Dir))
	}
	return errors.Join(errs...)
}

// ProfileMeta is one stored profile as profefe's API describes it.
type ProfileMeta struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Service   string    `json:"service"`
	Labels    []Label   `json:"labels"`
	CreatedAt time.Time `json:"created_at"`
}

// Label is a profefe label.
type Label struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// LabelMap returns the labels as a map.
func (m ProfileMeta) LabelMap() map[string]string {
	out := map[string]string{}
	for _, l := range m.Labels {
		out[l.Key] = l.Value
	}
	return out
}

// ProfefeError is a non-2xx answer: {"code":N,"error":"..."}.
type ProfefeError struct {
	Code    int
	Message string
}

func (e *ProfefeError) Error() string { return fmt.Sprintf("profefe: HTTP %d: %s", e.Code, e.Message) }

// TimeFormat is the time format of profefe's query parameters (UTC).
const TimeFormat = "2006-01-02T15:04:05"

// EncodeLabels renders labels as profefe wants them: k=v,k2=v2, sorted.
func EncodeLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// Push POSTs a raw (gzipped) pprof profile and returns what profefe stored.
func (pf *Profefe) Push(ctx context.Context, service, typ string, labels map[string]string, profile []byte) (ProfileMeta, error) {
	q := url.Values{"service": {service}, "type": {typ}}
	if len(labels) > 0 {
		q.Set("labels", EncodeLabels(labels))
	}
	var meta ProfileMeta
	err := pf.do(ctx, http.MethodPost, "/api/0/profiles?"+q.Encode(), profile, &meta)
	return meta, err
}

// ListQuery selects profiles; Service, From and To are required by profefe.
type ListQuery struct {
	Service  string
	Type     string
	From, To time.Time
	Labels   map[string]string
	Limit    int
}

// List returns the profiles matching q. profefe answers 404 "nothing found"
// when none match; List returns an empty slice then.
func (pf *Profefe) List(ctx context.Context, q ListQuery) ([]ProfileMeta, error) {
	v := url.Values{
		"service": {q.Service},
		"from":    {q.From.UTC().Format(TimeFormat)},
		"to":      {q.To.UTC().Format(TimeFormat)},
	}
	if q.Type != "" {
		v.Set("type", q.Type)
	}
	if len(q.Labels) > 0 {
		v.Set("labels", EncodeLabels(q.Labels))
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	var metas []ProfileMeta
	err := pf.do(ctx, http.MethodGet, "/api/0/profiles?"+v.Encode(), nil, &metas)
	var pe *ProfefeError
	if errors.As(err, &pe) && pe.Code == http.StatusNotFound {
		return nil, nil
	}
	return metas, err
}

// Services returns the service names profefe knows (none: empty slice).
func (pf *Profefe) Services(ctx context.Context) ([]string, error) {
	var s []string
	err := pf.do(ctx, http.MethodGet, "/api/0/services", nil, &s)
	var pe *ProfefeError
	if errors.As(err, &pe) && pe.Code == http.StatusNotFound {
		return nil, nil
	}
	return s, err
}

// Get downloads a stored profile (raw pprof) by id; "id1+id2" merges.
func (pf *Profefe) Get(ctx context.Context, id string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pf.URL+"/api/0/profiles/"+id, nil)
	if err != nil {
		return nil, err
	}
	resp, err := pf.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, decodeProfefeError(resp.StatusCode, b)
	}
	return b, nil
}

// WaitFor polls List every 100 ms until at least n profiles match or ctx ends.
func (pf *Profefe) WaitFor(ctx context.Context, q ListQuery, n int) ([]ProfileMeta, error) {
	var got []ProfileMeta
	err := waitFor(ctx, fmt.Sprintf("%d profiles of %s in profefe", n, q.Service), pf.Proc, 100*time.Millisecond, func() error {
		var err error
		if got, err = pf.List(ctx, q); err != nil {
			return err
		}
		if len(got) < n {
			return fmt.Errorf("have %d", len(got))
		}
		return nil
	})
	return got, err
}

func (pf *Profefe) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, pf.URL+path, rd)
	if err != nil {
		return err
	}
	resp, err := pf.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return decodeProfefeError(resp.StatusCode, b)
	}
	var env struct {
		Code int             `json:"code"`
		Body json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("profefe %s %s: %w: %.200s", method, path, err, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(env.Body, out)
}

func decodeProfefeError(code int, b []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(b))
	}
	return &ProfefeError{Code: code, Message: e.Error}
}
