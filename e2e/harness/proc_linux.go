package harness

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// procAttr puts the child in its own process group and has the kernel
// SIGKILL it when its parent thread dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Pdeathsig fires when the *thread* that forked the child exits, not the
// process. The Go runtime only ends threads whose goroutine exits while locked
// to them (as network-namespace code does), so every child is started from
// one goroutine locked to its thread for the life of the process.
var (
	starterOnce sync.Once
	starter     chan startReq
)

type startReq struct {
	cmd *exec.Cmd
	err chan error
}

func startLocked(cmd *exec.Cmd) error {
	starterOnce.Do(func() {
		starter = make(chan startReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as we do
			for r := range starter {
				r.err <- r.cmd.Start()
			}
		}()
	})
	r := startReq{cmd: cmd, err: make(chan error, 1)}
	starter <- r
	return <-r.err
}
