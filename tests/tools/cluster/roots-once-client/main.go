// Command roots-once-client is the kind of workload a live-updated trust store does not reach: it
// loads the system roots once at start (crypto/x509 caches them for the life of the process, see
// golang/go#41888) and then calls an HTTPS URL every -every with a new TLS handshake each time
// (keep-alives off), logging one line per call:
//
//	ok status=404 root=<sha256 of the verified chain's root> leaf=<leaf serial>
//	FAIL <error>
//
// tests/cluster_e2e_test.ts runs it in labelled pods to show that such a process keeps working
// across a SPIRE CA rotation only when the trust-restart controller rolls it out.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	url := flag.String("url", "", "HTTPS URL to call")
	every := flag.Duration("every", time.Second, "time between calls")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "roots-once-client: -url is required")
		os.Exit(2)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		log.Fatalf("loading system roots: %v", err)
	}
	//lint:ignore SA1019 the count of a pool loaded from files is what this line reports
	log.Printf("loaded %d system roots once at start", len(roots.Subjects()))
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: roots},
		},
	}
	for {
		call(client, *url)
		time.Sleep(*every)
	}
}

func call(client *http.Client, url string) {
	resp, err := client.Get(url)
	if err != nil {
		log.Printf("FAIL %v", err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0 {
		log.Printf("FAIL no verified chain (status %d)", resp.StatusCode)
		return
	}
	chain := resp.TLS.VerifiedChains[0]
	root := sha256.Sum256(chain[len(chain)-1].Raw)
	log.Printf("ok status=%d root=%x leaf=%s", resp.StatusCode, root, chain[0].SerialNumber.Text(16))
}
