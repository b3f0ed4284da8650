// Command pproftarget is the Go service the e2e tests profile: a net/http/pprof
// server that burns some CPU, allocates, holds goroutines and, by flag,
// generates mutex and block contention. Its -mode flag turns it into a hostile
// endpoint instead, so tests can prove the operator bounds every capture.
//
//	pproftarget -addr 127.0.1.7:6060 [-mutex] [-block] [-mode normal|slow|hung|garbage|huge|500]
//
// Modes (every path is affected, not just /debug/pprof):
//
//	normal   the real net/http/pprof handlers under -path (default /debug/pprof)
//	slow     200, then the real profile trickled at -slow-rate bytes/s
//	hung     accepts the request and never answers (until the client gives up)
//	garbage  200 with -garbage-size random bytes that are not a profile
//	huge     200 with an endless body starting with the gzip magic (-huge-size caps it)
//	gzipbomb 200 with a valid gzip stream of zeros that never ends: a few KB
//	         on the wire per MB inflated (-huge-size caps the zeros)
//	500      always HTTP 500 with a message
//
// By default the program exits when its parent dies (-exit-with-parent).
//
// -write-timeout sets the server's WriteTimeout. Go up to 1.22 answered
// /profile?seconds=N with N >= WriteTimeout with HTTP 400 "profile duration
// exceeds server's WriteTimeout"; newer Go (this program's) extends the write
// deadline instead. -legacy-write-timeout restores the old answer, so tests
// can cover services built with an older Go.
package main

import (
	"compress/gzip"
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type config struct {
	addr         string
	path         string
	mode         string
	mutex        bool
	block        bool
	writeTimeout time.Duration
	legacyWT     bool
	cpu          float64
	goroutines   int
	retainMB     int
	slowRate     int
	garbageSize  int
	hugeSize     int64
	withParent   bool
	logRequests  bool
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:6060", "listen address (ip:port)")
	flag.StringVar(&c.path, "path", "/debug/pprof", "path prefix of the pprof handlers")
	flag.StringVar(&c.mode, "mode", "normal", "normal|slow|hung|garbage|huge|gzipbomb|500")
	flag.BoolVar(&c.mutex, "mutex", false, "enable the mutex profiler and generate lock contention")
	flag.BoolVar(&c.block, "block", false, "enable the block profiler and generate blocking")
	flag.DurationVar(&c.writeTimeout, "write-timeout", 0, "http.Server WriteTimeout (0 = none)")
	flag.BoolVar(&c.legacyWT, "legacy-write-timeout", false, "answer /profile?seconds >= -write-timeout with 400, as Go <= 1.22 did")
	flag.Float64Var(&c.cpu, "cpu", 0.05, "fraction of one core to burn (0..1)")
	flag.IntVar(&c.goroutines, "goroutines", 50, "extra goroutines to hold parked")
	flag.IntVar(&c.retainMB, "retain-mb", 8, "MiB of heap kept live (inuse) while churning allocations")
	flag.IntVar(&c.slowRate, "slow-rate", 16, "slow mode: bytes per second")
	flag.IntVar(&c.garbageSize, "garbage-size", 4096, "garbage mode: body size in bytes")
	flag.Int64Var(&c.hugeSize, "huge-size", 0, "huge mode: body size in bytes (0 = endless)")
	flag.BoolVar(&c.withParent, "exit-with-parent", true, "exit when the process that started this one dies (no strays after a killed test run)")
	flag.BoolVar(&c.logRequests, "log-requests", false, "log every request's arrival as \"request <unix ms> <uri>\" on stderr")
	flag.Parse()

	var h http.Handler
	switch c.mode {
	case "normal":
		h = pprofMux(c.path)
		if c.legacyWT && c.writeTimeout > 0 {
			h = legacyWriteTimeout(h, c.writeTimeout)
		}
	case "slow":
		h = slowHandler(pprofMux(c.path), c.path, c.slowRate)
	case "hung":
		h = http.HandlerFunc(hungHandler)
	case "garbage":
		h = garbageHandler(c.garbageSize)
	case "huge":
		h = hugeHandler(c.hugeSize)
	case "gzipbomb":
		h = gzipBombHandler(c.hugeSize)
	case "500":
		h = http.HandlerFunc(failHandler)
	default:
		log.Fatalf("pproftarget: unknown -mode %q", c.mode)
	}

	if c.logRequests {
		h = logRequests(h)
	}
	if c.withParent {
		go exitWithParent()
	}
	startWorkload(c)

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		log.Fatalf("pproftarget: %v", err)
	}
	srv := &http.Server{Handler: h, WriteTimeout: c.writeTimeout, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Close()
	}()
	log.Printf("pproftarget: mode=%s serving %s on http://%s", c.mode, c.path, ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("pproftarget: %v", err)
	}
}

// logRequests writes one line per request as it arrives, before it is
// served: "request <unix ms> <request uri>".
func logRequests(next http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fmt.Fprintf(os.Stderr, "request %d %s\n", time.Now().UnixMilli(), r.URL.RequestURI())
		mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// exitWithParent exits once this process is orphaned (re-parented to init or
// a subreaper), so a test runner that dies or forgets to stop its targets
// leaves no process burning CPU behind.
func exitWithParent() {
	parent := os.Getppid()
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != parent {
			log.Printf("pproftarget: parent %d is gone; exiting", parent)
			os.Exit(0)
		}
	}
}

// pprofMux serves the standard pprof handlers under prefix. pprof.Index only
// recognises names under "/debug/pprof/", so other prefixes are rewritten.
func pprofMux(prefix string) http.Handler {
	std := http.NewServeMux()
	std.HandleFunc("/debug/pprof/", pprof.Index)
	std.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	std.HandleFunc("/debug/pprof/profile", pprof.Profile)
	std.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	std.HandleFunc("/debug/pprof/trace", pprof.Trace)

	prefix = "/" + strings.Trim(prefix, "/")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	if prefix == "/debug/pprof" {
		mux.Handle("/debug/pprof/", std)
		return mux
	}
	mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/debug/pprof/" + strings.TrimPrefix(r.URL.Path, prefix+"/")
		r2.URL.RawPath = ""
		std.ServeHTTP(w, r2)
	})
	return mux
}

// legacyWriteTimeout rejects CPU profiles at least as long as the server's
// WriteTimeout, as net/http/pprof did up to Go 1.22.
func legacyWriteTimeout(next http.Handler, wt time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/profile") {
			sec, err := strconv.ParseFloat(r.FormValue("seconds"), 64)
			if err == nil && sec >= wt.Seconds() {
				w.Header().Set("X-Go-Pprof", "1")
				http.Error(w, "profile duration exceeds server's WriteTimeout", http.StatusBadRequest)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// slowHandler renders the real answer first, then sends it at rate bytes/s.
func slowHandler(real http.Handler, prefix string, rate int) http.Handler {
	if rate < 1 {
		rate = 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		real.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		body := rec.Body.Bytes()
		chunk := max(1, rate/4)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for len(body) > 0 {
			n := min(chunk, len(body))
			if _, err := w.Write(body[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			body = body[n:]
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	})
}

// hungHandler has read the request and never writes a byte of the reply.
func hungHandler(w http.ResponseWriter, r *http.Request) {
	<-r.Context().Done()
}

func garbageHandler(size int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, size)
		rand.Read(b)
		b[0] = 'G' // never the gzip magic, never a valid proto by luck
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(b)
	})
}

// hugeHandler streams a body that looks like gzip for its first two bytes and
// then never ends (or ends after size bytes).
func hugeHandler(size int64) http.Handler {
	block := make([]byte, 64<<10)
	rand.Read(block)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		first := append([]byte{0x1f, 0x8b}, block[2:]...)
		var sent int64
		for size == 0 || sent < size {
			b := block
			if sent == 0 {
				b = first
			}
			if size > 0 && int64(len(b)) > size-sent {
				b = b[:size-sent]
			}
			n, err := w.Write(b)
			sent += int64(n)
			if err != nil {
				return
			}
		}
	})
}

// gzipBombHandler streams gzip (best compression) of zeros: endless, or
// size zeros when size > 0.
func gzipBombHandler(size int64) http.Handler {
	zeros := make([]byte, 1<<20)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return
		}
		defer zw.Close()
		for sent := int64(0); size == 0 || sent < size; {
			b := zeros
			if size > 0 && int64(len(b)) > size-sent {
				b = b[:size-sent]
			}
			n, err := zw.Write(b)
			sent += int64(n)
			if err != nil {
				return
			}
		}
	})
}

func failHandler(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "pproftarget: injected failure (mode=500)", http.StatusInternalServerError)
}

// Workload --------------------------------------------------------------

var sink []byte // keeps allocations from being optimised away

func startWorkload(c config) {
	for i := 0; i < c.goroutines; i++ {
		go parked(make(chan struct{}))
	}
	go allocate(c.retainMB)
	if c.cpu > 0 {
		go burn(min(c.cpu, 1))
	}
	if c.mutex {
		runtime.SetMutexProfileFraction(1)
		go contend()
	}
	if c.block {
		runtime.SetBlockProfileRate(1)
		go block()
	}
}

// parked holds a goroutine forever, so the goroutine profile has content.
func parked(never chan struct{}) { <-never }

// allocate keeps retainMB live in a ring of 64 KiB blocks and replaces one
// block (plus some small garbage) 32 times a second: about 2 MiB/s of churn.
func allocate(retainMB int) {
	ring := make([][]byte, max(retainMB, 1)*16)
	for i := 0; ; i++ {
		ring[i%len(ring)] = make([]byte, 64<<10)
		sink = make([]byte, 1024+i%4096)
		time.Sleep(time.Second / 32)
	}
}

// burn spins for frac of every 100 ms.
func burn(frac float64) {
	busy := time.Duration(frac * float64(100*time.Millisecond))
	x := 1.0
	for {
		start := time.Now()
		for time.Since(start) < busy {
			for i := 0; i < 1000; i++ {
				x = x*1.0000001 + 1e-9
			}
		}
		if x < 0 {
			fmt.Println(x)
		}
		time.Sleep(100*time.Millisecond - busy)
	}
}

// contend has four goroutines fight over one lock held for a millisecond.
func contend() {
	var mu sync.Mutex
	for i := 0; i < 4; i++ {
		go func() {
			for {
				mu.Lock()
				time.Sleep(time.Millisecond)
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}()
	}
}

// block makes a sender wait on an unbuffered channel whose receiver is slow.
func block() {
	ch := make(chan int)
	go func() {
		for {
			time.Sleep(2 * time.Millisecond)
			<-ch
		}
	}()
	for i := 0; ; i++ {
		ch <- i
	}
}
