// Command livenessprobe is a stand-in for registry.k8s.io/sig-storage/livenessprobe, whose Go
// module this machine's module proxy does not serve.
//
// As upstream: GET /healthz on --http-endpoint (or :--health-port) calls the CSI driver's
// Identity.Probe on --csi-address and answers 200 when the driver is ready, 500 otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"

	csi "github.com/container-storage-interface/spec/lib/go/csi"

	"spire-cacerts.test/tools/cluster/internal/csiconn"
)

const version = "v2.15.0-spire-cacerts-standin"

func main() {
	csiAddress := flag.String("csi-address", "/run/csi/socket", "path of the CSI driver socket")
	healthPort := flag.String("health-port", "9808", "TCP port of /healthz (when --http-endpoint is empty)")
	httpEndpoint := flag.String("http-endpoint", "", "address of /healthz, e.g. :9808; overrides --health-port")
	probeTimeout := flag.Duration("probe-timeout", time.Second, "timeout of each Probe call")
	metricsAddress := flag.String("metrics-address", "", "accepted for compatibility")
	showVersion := flag.Bool("version", false, "print the version and exit")
	csiconn.RegisterKlogFlags()
	flag.Parse()
	_ = metricsAddress
	if *showVersion {
		fmt.Println(filepath.Base(os.Args[0]), version)
		return
	}
	log.Printf("Version: %s", version)

	conn, err := csiconn.Dial(*csiAddress)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	identity := csi.NewIdentityClient(conn)

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), *probeTimeout)
		defer cancel()
		response, err := identity.Probe(ctx, &csi.ProbeRequest{})
		if err != nil {
			log.Printf("health check failed: %v", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// An unset ready field means ready (CSI spec).
		if ready := response.GetReady(); ready != nil && !ready.GetValue() {
			log.Printf("health check failed: driver responded but is not ready")
			http.Error(w, "driver responded but is not ready", http.StatusInternalServerError)
			return
		}
		csiconn.Logf(5, "health check succeeded")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok"))
	})

	addr := *httpEndpoint
	if addr == "" {
		addr = ":" + *healthPort
	}
	log.Printf("Serving /healthz on %s (CSI socket %s)", addr, *csiAddress)
	log.Fatal(http.ListenAndServe(addr, mux))
}
