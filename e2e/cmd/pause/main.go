// Command pause is the pod sandbox ("pause") container of the real-node e2e
// suite: no registry is reachable there, so containerd's sandbox image is
// built from this program by scripts/image.sh --e2e. Like Kubernetes' pause,
// it holds the pod's namespaces, reaps zombies and exits on SIGINT/SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
