// Command pause is the sandbox ("pause") container of the local real node: it holds a pod's
// namespaces, reaps orphans when it is PID 1 of a shared PID namespace, and exits on SIGINT/SIGTERM.
// It is built here because the node cannot pull the upstream pause image (no registry is reachable).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
