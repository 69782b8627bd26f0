// Command csi-churn opens a gRPC connection to a CSI endpoint, makes two calls
// (Identity.GetPluginInfo, Node.NodeGetCapabilities) and closes it, N times, the way kubelet
// talks to a CSI driver (one connection per operation, GOAWAY on close). With -publish it instead
// times NodePublishVolume calls on one connection and prints p50/p99 as JSON, with the same
// connection's NodeGetCapabilities round trip as the baseline. -unpublish does the same for
// NodeUnpublishVolume of the volumes a -publish run made. -concurrency keeps that many calls in
// flight on the one connection (kubelet publishes the volumes of many pods at once), and
// -id-prefix names the volumes, so repeated runs can use new volume ids each time.
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
	"sync"
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
	unpublish := flag.Int("unpublish", 0, "time this many NodeUnpublishVolume calls (of -publish's volumes)")
	concurrency := flag.Int("concurrency", 1, "with -publish/-unpublish: calls in flight at once")
	idPrefix := flag.String("id-prefix", "bench-", "with -publish/-unpublish: volume ids are <prefix><i>")
	flag.Parse()
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "csi-churn: -endpoint is required")
		os.Exit(2)
	}
	if *publish > 0 || *unpublish > 0 {
		run := volumeRun{
			endpoint: *endpoint, targetDir: *targetDir, volumeContext: *volumeContext,
			timeout: *timeout, concurrency: *concurrency, idPrefix: *idPrefix,
		}
		if run.concurrency < 1 {
			run.concurrency = 1
		}
		var err error
		if *publish > 0 {
			err = run.timeCalls(*publish, true)
		} else {
			err = run.timeCalls(*unpublish, false)
		}
		if err != nil {
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

// volumeRun is one -publish or -unpublish run.
type volumeRun struct {
	endpoint, targetDir, volumeContext, idPrefix string
	timeout                                      time.Duration
	concurrency                                  int
}

// timeCalls makes n NodePublishVolume (publish) or NodeUnpublishVolume calls on one connection,
// run.concurrency at a time, after as many NodeGetCapabilities calls as the baseline, and prints
// the percentiles as JSON.
func (run volumeRun) timeCalls(n int, publish bool) error {
	if run.targetDir == "" {
		return fmt.Errorf("-target-dir is required with -publish and -unpublish")
	}
	vc := map[string]string{}
	for _, kv := range strings.Split(run.volumeContext, ",") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		vc[k] = v
	}
	conn, err := grpc.NewClient(run.endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
		ctx, cancel := context.WithTimeout(context.Background(), run.timeout)
		t0 := time.Now()
		_, err := node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
		baseline = append(baseline, time.Since(t0))
		cancel()
		if err != nil {
			return fmt.Errorf("NodeGetCapabilities %d: %w", i, err)
		}
	}
	call := func(i int) error {
		id := fmt.Sprintf("%s%d", run.idPrefix, i)
		target := filepath.Join(run.targetDir, fmt.Sprintf("v%d", i))
		ctx, cancel := context.WithTimeout(context.Background(), run.timeout)
		defer cancel()
		if !publish {
			_, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{
				VolumeId: id, TargetPath: target,
			})
			return err
		}
		if err := os.MkdirAll(target, 0o750); err != nil {
			return err
		}
		_, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: id, TargetPath: target, VolumeCapability: cap, Readonly: true, VolumeContext: vc,
		})
		return err
	}
	name := "NodeUnpublishVolume"
	if publish {
		name = "NodePublishVolume"
	}
	durations := make([]time.Duration, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < run.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				errs[i] = call(i)
				durations[i] = time.Since(t0)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s %d: %w", name, i, err)
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
