// Command csi-churn opens a gRPC connection to a CSI endpoint, makes two calls
// (Identity.GetPluginInfo, Node.NodeGetCapabilities) and closes it, N times, the way kubelet
// talks to a CSI driver (one connection per operation, GOAWAY on close). With -publish it instead
// times NodePublishVolume calls on one connection and prints p50/p99 as JSON, with the same
// connection's NodeGetCapabilities round trip as the baseline.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	csi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	endpoint := flag.String("endpoint", "", "unix:///path/to/csi.sock")
	cycles := flag.Int("cycles", 1000, "connect / 2 calls / close cycles")
	timeout := flag.Duration("timeout", 10*time.Second, "per-cycle timeout")
	publish := flag.Int("publish", 0, "time this many NodePublishVolume calls instead of churning")
	targetDir := flag.String("target-dir", "", "with -publish: directory under which targets are created")
	volumeContext := flag.String("vol-context", "", "with -publish: k=v,k=v volume context")
	flag.Parse()
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "csi-churn: -endpoint is required")
		os.Exit(2)
	}
	if *publish > 0 {
		if err := timePublish(*endpoint, *publish, *targetDir, *volumeContext, *timeout); err != nil {
			fmt.Fprintln(os.Stderr, "csi-churn:", err)
			os.Exit(1)
		}
		return
	}
	start := time.Now()
	for i := 0; i < *cycles; i++ {
		if err := cycle(*endpoint, *timeout); err != nil {
			fmt.Fprintf(os.Stderr, "csi-churn: cycle %d of %d failed: %v\n", i+1, *cycles, err)
			os.Exit(1)
		}
	}
	fmt.Printf("csi-churn: %d cycles ok in %s\n", *cycles, time.Since(start).Round(time.Millisecond))
}

func cycle(endpoint string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := csi.NewIdentityClient(conn).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}); err != nil {
		return fmt.Errorf("GetPluginInfo: %w", err)
	}
	if _, err := csi.NewNodeClient(conn).NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{}); err != nil {
		return fmt.Errorf("NodeGetCapabilities: %w", err)
	}
	return nil
}

func timePublish(endpoint string, n int, targetDir, volumeContext string, timeout time.Duration) error {
	if targetDir == "" {
		return fmt.Errorf("-target-dir is required with -publish")
	}
	vc := map[string]string{}
	for _, kv := range strings.Split(volumeContext, ",") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		vc[k] = v
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	node := csi.NewNodeClient(conn)
	cap := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY},
	}
	// Baseline: the same connection's round trip for a call that does no work.
	baseline := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		t0 := time.Now()
		_, err := node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
		baseline = append(baseline, time.Since(t0))
		cancel()
		if err != nil {
			return fmt.Errorf("NodeGetCapabilities %d: %w", i, err)
		}
	}
	durations := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		target := filepath.Join(targetDir, fmt.Sprintf("v%d", i))
		if err := os.MkdirAll(target, 0o750); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		t0 := time.Now()
		_, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: fmt.Sprintf("bench-%d", i), TargetPath: target, VolumeCapability: cap,
			Readonly: true, VolumeContext: vc,
		})
		durations = append(durations, time.Since(t0))
		cancel()
		if err != nil {
			return fmt.Errorf("NodePublishVolume %d: %w", i, err)
		}
	}
	pct := func(d []time.Duration, p float64) float64 {
		sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
		idx := int(p * float64(len(d)-1))
		return float64(d[idx].Microseconds()) / 1000
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]float64{
		"count": float64(n), "p50Ms": pct(durations, 0.5), "p99Ms": pct(durations, 0.99),
		"maxMs": pct(durations, 1), "baselineP50Ms": pct(baseline, 0.5),
		"baselineP99Ms": pct(baseline, 0.99),
	})
}
