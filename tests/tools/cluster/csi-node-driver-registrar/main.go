// Command csi-node-driver-registrar is a stand-in for registry.k8s.io/sig-storage/
// csi-node-driver-registrar, whose Go module this machine's module proxy does not serve.
//
// It does what the upstream sidecar does in its default mode: asks the CSI driver for its name
// (Identity.GetPluginInfo on --csi-address), serves kubelet's plugin registration API
// (pluginregistration.v1 Registration: GetInfo, NotifyRegistrationStatus) on
// <--plugin-registration-path>/<driver>-reg.sock, telling kubelet to reach the driver at
// --kubelet-registration-path, exits non-zero when kubelet reports a failed registration, and
// answers GET /healthz on --http-endpoint while its registration socket exists.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"spire-cacerts.test/tools/cluster/internal/csiconn"
)

const version = "v2.13.0-spire-cacerts-standin"

type registrationServer struct {
	registerapi.UnimplementedRegistrationServer
	driverName string
	endpoint   string
	versions   []string
}

func (s *registrationServer) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	csiconn.Logf(2, "Received GetInfo call")
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              s.driverName,
		Endpoint:          s.endpoint,
		SupportedVersions: s.versions,
	}, nil
}

func (s *registrationServer) NotifyRegistrationStatus(_ context.Context, status *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	log.Printf("Received NotifyRegistrationStatus call: %+v", status)
	if !status.PluginRegistered {
		// As upstream: a failed registration restarts the container, which registers again.
		log.Printf("Registration process failed with error: %s, restarting registration container.", status.Error)
		os.Exit(1)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

func main() {
	csiAddress := flag.String("csi-address", "/run/csi/socket", "path of the CSI driver socket (inside this container)")
	kubeletPath := flag.String("kubelet-registration-path", "", "path of the CSI driver socket on the node (what kubelet dials)")
	registrationDir := flag.String("plugin-registration-path", "/registration", "directory of kubelet's plugin registration sockets")
	httpEndpoint := flag.String("http-endpoint", "", "address of the /healthz endpoint, e.g. :9810 (empty: none)")
	healthPort := flag.Int("health-port", 0, "deprecated upstream; /healthz on this port when --http-endpoint is empty")
	timeout := flag.Duration("timeout", time.Second, "timeout of each CSI call")
	operationTimeout := flag.Duration("operation-timeout", 0, "accepted for compatibility")
	mode := flag.String("mode", "registration", "only \"registration\" is supported")
	showVersion := flag.Bool("version", false, "print the version and exit")
	csiconn.RegisterKlogFlags()
	flag.Parse()
	_ = operationTimeout
	if *showVersion {
		fmt.Println(filepath.Base(os.Args[0]), version)
		return
	}
	if *kubeletPath == "" {
		log.Fatal("--kubelet-registration-path is required")
	}
	if *mode != "registration" {
		log.Fatalf("--mode=%s is not supported by this stand-in", *mode)
	}
	log.Printf("Version: %s", version)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	conn, err := csiconn.Dial(*csiAddress)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	log.Printf("Calling CSI driver to discover driver name")
	driverName, err := csiconn.DriverName(ctx, conn, *timeout)
	if err != nil {
		log.Fatalf("error retrieving CSI driver name: %v", err)
	}
	log.Printf("CSI driver name: %q", driverName)

	socketPath := filepath.Join(*registrationDir, driverName+"-reg.sock")
	if err := os.Remove(socketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Fatalf("failed to remove stale socket %s: %v", socketPath, err)
	}
	listener, err := net.Listen("unix", socketPath)
	if err != nil {
		log.Fatalf("failed to listen on socket %s: %v", socketPath, err)
	}
	log.Printf("Registration Server started at: %s", socketPath)
	server := grpc.NewServer()
	registerapi.RegisterRegistrationServer(server, &registrationServer{
		driverName: driverName,
		endpoint:   *kubeletPath,
		versions:   []string{"1.0.0"},
	})

	addr := *httpEndpoint
	if addr == "" && *healthPort > 0 {
		addr = fmt.Sprintf(":%d", *healthPort)
	}
	if addr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			// Upstream checks that the registration socket is still there.
			if info, err := os.Stat(socketPath); err != nil || info.Mode()&os.ModeSocket == 0 {
				http.Error(w, fmt.Sprintf("registration socket %s: missing or not a socket", socketPath), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("ok"))
		})
		go func() {
			log.Printf("Serving /healthz on %s", addr)
			if err := http.ListenAndServe(addr, mux); err != nil {
				log.Fatalf("health server on %s: %v", addr, err)
			}
		}()
	}

	go func() {
		<-ctx.Done()
		log.Printf("Shutting down: removing %s", socketPath)
		server.Stop()
	}()
	if err := server.Serve(listener); err != nil {
		log.Printf("registration server: %v", err)
	}
	_ = os.Remove(socketPath)
}
