// Command fixtures-gen writes the small pprof fixtures used by capture's unit
// tests. It uses only runtime/pprof, so the fixtures are exactly what a Go
// service's net/http/pprof handler would serve (minus the HTTP).
//
//	go run . -out ../fixtures
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"
)

var sink [][]byte

func burn(d time.Duration) {
	end := time.Now().Add(d)
	x := 0
	for time.Now().Before(end) {
		for i := 0; i < 100000; i++ {
			x += i * i
		}
	}
	_ = x
}

func write(dir, name string, b []byte) {
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		log.Fatal(err)
	}
}

func lookup(dir, prof, file string) {
	var buf bytes.Buffer
	if err := pprof.Lookup(prof).WriteTo(&buf, 0); err != nil {
		log.Fatal(err)
	}
	write(dir, file, buf.Bytes())
}

func main() {
	out := flag.String("out", "../fixtures", "output directory")
	flag.Parse()

	// Empty mutex and block profiles: the profilers are off, as by default.
	lookup(*out, "mutex", "mutex-empty.pb.gz")
	lookup(*out, "block", "block-empty.pb.gz")

	runtime.MemProfileRate = 512
	for i := 0; i < 2000; i++ {
		sink = append(sink, make([]byte, 1024))
	}
	runtime.GC()
	lookup(*out, "heap", "heap.pb.gz")
	lookup(*out, "allocs", "allocs.pb.gz")
	lookup(*out, "goroutine", "goroutine.pb.gz")
	lookup(*out, "threadcreate", "threadcreate.pb.gz")

	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				mu.Lock()
				burn(0)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	ch := make(chan int)
	go func() { time.Sleep(5 * time.Millisecond); ch <- 1 }()
	<-ch
	lookup(*out, "mutex", "mutex.pb.gz")
	lookup(*out, "block", "block.pb.gz")

	var cpu bytes.Buffer
	if err := pprof.StartCPUProfile(&cpu); err != nil {
		log.Fatal(err)
	}
	burn(300 * time.Millisecond)
	pprof.StopCPUProfile()
	write(*out, "cpu.pb.gz", cpu.Bytes())

	// The same empty mutex profile, decompressed: raw protobuf is accepted too.
	zr, err := gzip.NewReader(bytes.NewReader(mustRead(filepath.Join(*out, "mutex-empty.pb.gz"))))
	if err != nil {
		log.Fatal(err)
	}
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(zr); err != nil {
		log.Fatal(err)
	}
	write(*out, "mutex-empty.pb", raw.Bytes())
	zr, err = gzip.NewReader(bytes.NewReader(mustRead(filepath.Join(*out, "goroutine.pb.gz"))))
	if err != nil {
		log.Fatal(err)
	}
	raw.Reset()
	if _, err := raw.ReadFrom(zr); err != nil {
		log.Fatal(err)
	}
	write(*out, "goroutine.pb", raw.Bytes())
}

func mustRead(p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		log.Fatal(err)
	}
	return b
}
