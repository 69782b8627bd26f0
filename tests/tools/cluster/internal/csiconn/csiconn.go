// Package csiconn holds what the CSI sidecar stand-ins share: the klog-style flags the manifests
// pass, dialling the driver's unix socket, and the driver-name lookup.
package csiconn

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	csi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Verbosity is the --v level (klog's flag, accepted so the upstream sidecars' command lines work).
var Verbosity = flag.Int("v", 0, "log verbosity (0: errors and lifecycle, 5: every call)")

// RegisterKlogFlags accepts the klog flags the upstream sidecars take and ignores them.
func RegisterKlogFlags() {
	flag.Bool("logtostderr", true, "ignored (klog compatibility)")
	flag.Bool("alsologtostderr", false, "ignored (klog compatibility)")
	flag.String("log-file", "", "ignored (klog compatibility)")
	flag.Bool("add_dir_header", false, "ignored (klog compatibility)")
}

// Logf logs when --v is at least level.
func Logf(level int, format string, args ...any) {
	if *Verbosity >= level {
		log.Printf(format, args...)
	}
}

// Target turns a --csi-address ("/csi/csi.sock" or "unix:///csi/csi.sock") into a gRPC target.
func Target(address string) string {
	if strings.HasPrefix(address, "unix:") {
		return address
	}
	return "unix://" + address
}

// Dial returns a lazily connecting, reconnecting client for the driver's socket.
func Dial(address string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(Target(address), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("csi address %q: %w", address, err)
	}
	return conn, nil
}

// DriverName asks the driver for its name with GetPluginInfo, retrying until ctx ends, as the
// upstream sidecars do while the driver starts.
func DriverName(ctx context.Context, conn *grpc.ClientConn, callTimeout time.Duration) (string, error) {
	client := csi.NewIdentityClient(conn)
	for {
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		info, err := client.GetPluginInfo(callCtx, &csi.GetPluginInfoRequest{})
		cancel()
		if err == nil && info.GetName() != "" {
			return info.GetName(), nil
		}
		if err == nil {
			err = fmt.Errorf("driver returned an empty name")
		}
		log.Printf("GetPluginInfo: %v (retrying)", err)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("GetPluginInfo: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}
