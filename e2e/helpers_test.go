package e2e

import (
	"bytes"
	"context"
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
