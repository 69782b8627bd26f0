// Command pause is the pod sandbox process: it holds the pod's namespaces, reaps orphaned children
// (it is PID 1 when the pod shares a PID namespace) and exits 0 on SIGTERM or SIGINT, like
// registry.k8s.io/pause. Written in Go because no registry is reachable to pull the real image.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is what --version / -v print; it matches the tag the image is imported as.
const version = "3.10"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Printf("pause.go %s (spire-cacerts local build)\n", version)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", sig)
		os.Exit(0)
	}
}
