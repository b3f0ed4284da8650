package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// fetch GETs url with a timeout and a 64 MiB cap, returning status and body.
func fetch(t testing.TB, url string, timeout time.Duration) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, b
}

// fetchProfile GETs url, requires 200 and a parseable pprof profile.
func fetchProfile(t testing.TB, url string) ([]byte, *profile.Profile) {
	t.Helper()
	code, b := fetch(t, url, 30*time.Second)
	if code != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d: %.200s", url, code, b)
	}
	p, err := profile.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("GET %s: not a pprof profile: %v", url, err)
	}
	return b, p
}

func sampleTypes(p *profile.Profile) []string {
	var s []string
	for _, st := range p.SampleType {
		s = append(s, st.Type)
	}
	return s
}

// sumValues adds up sample values of sample type index i.
func sumValues(p *profile.Profile, i int) int64 {
	var n int64
	for _, s := range p.Sample {
		n += s.Value[i]
	}
	return n
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// pollInterval is how often eventually and waitUntil look again.
const pollInterval = 250 * time.Millisecond

// waitUntil polls f every pollInterval until it returns nil or timeout
// passes, and returns nil or f's last error (the last observed state),
// prefixed with what and the time waited. Tests synchronise on observed
// state through this (or eventually), never on a bare sleep.
func waitUntil(timeout time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not true after %v; last observed: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// eventually is waitUntil that fails t (Fatal) on timeout.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	if err := waitUntil(timeout, what, f); err != nil {
		t.Fatal(err)
	}
}
