// Command admission-client POSTs an AdmissionReview to a webhook the way kube-apiserver's webhook
// client does: Go net/http with keep-alives on and an idle pool kept for 90 s
// (k8s.io/apimachinery/pkg/util/net.SetTransportDefaults), TLS verified against a CA file with a
// given server name. It makes len(gaps)+1 calls on each of -parallel independent clients (each
// its own Transport, so each stands for one apiserver connection), sleeping each gap between
// calls, and prints one JSON document: per call the status, the error, and whether the request
// went out on a reused connection (httptrace GotConnInfo.Reused).
//
// A POST that meets a connection the server has just closed is not retried by net/http (it is
// not replayable once written), so it shows up here as an error, as it would in the apiserver.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"time"
)

// call is the outcome of one POST.
type call struct {
	Client     int     `json:"client"`
	Index      int     `json:"index"`
	GapMs      int64   `json:"gapMs"`
	Status     int     `json:"status"`
	Error      string  `json:"error,omitempty"`
	Reused     bool    `json:"reused"`
	WasIdle    bool    `json:"wasIdle"`
	IdleMs     int64   `json:"idleMs"`
	DurationMs float64 `json:"durationMs"`
	UID        string  `json:"uid,omitempty"`
	Allowed    *bool   `json:"allowed,omitempty"`
}

// result is what the program prints.
type result struct {
	URL    string `json:"url"`
	Calls  []call `json:"calls"`
	Failed int    `json:"failed"`
}

func main() {
	url := flag.String("url", "", "webhook URL, e.g. https://127.0.0.1:8443/mutate")
	caFile := flag.String("ca", "", "PEM file of the CA that signs the server certificate")
	serverName := flag.String("server-name", "", "TLS server name to verify (default: the URL's host)")
	bodyFile := flag.String("body", "", "file holding the AdmissionReview JSON to POST")
	gapsFlag := flag.String("gaps", "", "comma-separated idle gaps between calls (Go durations, e.g. 1s,6s)")
	parallel := flag.Int("parallel", 1, "independent clients (one connection each) running the same calls at once")
	timeout := flag.Duration("timeout", 10*time.Second, "per-call timeout (the apiserver's default webhook timeout)")
	flag.Parse()
	if *url == "" || *caFile == "" || *bodyFile == "" || *parallel < 1 {
		fmt.Fprintln(os.Stderr, "admission-client: -url, -ca and -body are required; -parallel >= 1")
		os.Exit(2)
	}
	gaps, err := parseGaps(*gapsFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "admission-client: -gaps:", err)
		os.Exit(2)
	}
	caPem, err := os.ReadFile(*caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "admission-client:", err)
		os.Exit(1)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPem) {
		fmt.Fprintf(os.Stderr, "admission-client: no certificate in %s\n", *caFile)
		os.Exit(1)
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "admission-client:", err)
		os.Exit(1)
	}

	out := result{URL: *url, Calls: []call{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for c := 0; c < *parallel; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			client := newClient(pool, *serverName, *timeout)
			defer client.CloseIdleConnections()
			for i := 0; i <= len(gaps); i++ {
				var gap time.Duration
				if i > 0 {
					gap = gaps[i-1]
					time.Sleep(gap)
				}
				r := post(client, *url, body)
				r.Client, r.Index, r.GapMs = c, i, gap.Milliseconds()
				mu.Lock()
				out.Calls = append(out.Calls, r)
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	for _, r := range out.Calls {
		if r.Error != "" || r.Status != http.StatusOK {
			out.Failed++
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "admission-client:", err)
		os.Exit(1)
	}
}

func parseGaps(text string) ([]time.Duration, error) {
	var gaps []time.Duration
	for _, part := range strings.Split(text, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, err := time.ParseDuration(part)
		if err != nil {
			return nil, err
		}
		if d < 0 {
			return nil, fmt.Errorf("negative gap %s", part)
		}
		gaps = append(gaps, d)
	}
	return gaps, nil
}

// newClient mirrors the transport kube-apiserver builds for a webhook (rest.TransportFor with
// utilnet.SetTransportDefaults): dial timeout and TCP keep-alive 30 s, TLS handshake timeout 10 s,
// idle connections kept 90 s, up to 25 idle per host, HTTP/2 attempted (the webhook's node:https
// offers only HTTP/1.1, so the connection is HTTP/1.1 as it is against the apiserver).
func newClient(pool *x509.CertPool, serverName string, timeout time.Duration) *http.Client {
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 25,
		ForceAttemptHTTP2:   true,
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}
	return &http.Client{Transport: transport, Timeout: timeout}
}

func post(client *http.Client, url string, body []byte) call {
	var r call
	var info httptrace.GotConnInfo
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { info = i }}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		r.Error = err.Error()
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := client.Do(req)
	r.Reused, r.WasIdle, r.IdleMs = info.Reused, info.WasIdle, info.IdleTime.Milliseconds()
	if err != nil {
		r.Error = err.Error()
		r.DurationMs = float64(time.Since(start).Microseconds()) / 1000
		return r
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.DurationMs = float64(time.Since(start).Microseconds()) / 1000
	r.Status = resp.StatusCode
	if err != nil {
		r.Error = "reading the response: " + err.Error()
		return r
	}
	var review struct {
		Response *struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
		} `json:"response"`
	}
	if json.Unmarshal(data, &review) == nil && review.Response != nil {
		r.UID, r.Allowed = review.Response.UID, &review.Response.Allowed
	}
	return r
}
