// Command soak runs the whole capture path at a steady load for a long
// time and watches for growth: goproxy (dual, TLS unwrap) in front of a
// backend, the forwarder, and the hub on SQLite, each the real binary,
// with inbound requests, outbound plain HTTP through the forward proxy and
// outbound HTTPS through CONNECT with TLS unwrap, at a fixed rate. Every
// -every it samples each process's resident memory (anonymous and mapped
// files apart), open files and threads
// (/proc), each process's goroutines (go_goroutines on
// their /metrics), and the records the hub has stored. At the end it
// prints the samples and compares the second half's figures with the
// first's (after a warm-up): it exits 1 if memory or goroutines kept
// growing.
//
//	go run ./bench/soak                       # 10 minutes at 200 requests/s
//	go run ./bench/soak -duration 2m -rate 100 -every 10s
//
// Everything listens on loopback ports chosen free at start, and runs in a
// temporary directory that is removed at the end.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tapwire/tapwire/internal/certs"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long to run the load")
	rate := flag.Int("rate", 200, "requests per second, in all")
	every := flag.Duration("every", 30*time.Second, "sampling interval")
	warmup := flag.Duration("warmup", time.Minute, "samples before this are left out of the growth check")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	grew, err := run(ctx, *duration, *rate, *every, *warmup)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/soak:", err)
		os.Exit(1)
	}
	if grew {
		os.Exit(1)
	}
}

// proc is one of the binaries under test.
type proc struct {
	name    string
	cmd     *exec.Cmd
	metrics string // URL of its Prometheus metrics, if it has them
}

func run(ctx context.Context, duration time.Duration, rate int, every, warmup time.Duration) (bool, error) {
	tmp, err := os.MkdirTemp("", "tapwire-soak-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	fmt.Println("building goproxy, forwarder and hub...")
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/goproxy", "./cmd/forwarder", "./cmd/hub")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return false, fmt.Errorf("go build: %w", err)
	}

	// The app behind goproxy and the HTTPS upstream it calls.
	backend, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q,"items":[%s]}`, r.URL.Path, strings.Repeat(`{"sku":"a-1","qty":2},`, 40)+`{}`)
	}), nil)
	if err != nil {
		return false, err
	}
	upCert, upPool, err := upstreamCert()
	if err != nil {
		return false, err
	}
	upPEM := filepath.Join(tmp, "upstream-ca.pem")
	if err := os.WriteFile(upPEM, upPool, 0o644); err != nil {
		return false, err
	}
	upstream, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, `{"charge":"ch_%d","status":"succeeded"}`, time.Now().UnixNano())
	}), &tls.Config{Certificates: []tls.Certificate{upCert}})
	if err != nil {
		return false, err
	}
	ca, err := certs.Create(certs.Options{Dir: filepath.Join(tmp, "ca"), KeyType: certs.KeyECDSA})
	if err != nil {
		return false, err
	}

	ports := freePorts(6)
	hubAddr, fwdAddr := "127.0.0.1:"+ports[0], "127.0.0.1:"+ports[1]
	inPort, outPort, diagPort, metricsPort := ports[2], ports[3], ports[4], ports[5]

	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- { // goproxy first: it flushes to the forwarder
			p := procs[i]
			p.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				p.cmd.Process.Kill()
				<-done
			}
		}
	}()
	start := func(name string, env []string, stdout io.Writer, metrics string) (*proc, error) {
		cmd := exec.Command(filepath.Join(bin, name))
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout = stdout
		logf, err := os.Create(filepath.Join(tmp, name+".log"))
		if err != nil {
			return nil, err
		}
		cmd.Stderr = logf
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		p := &proc{name: name, cmd: cmd, metrics: metrics}
		procs = append(procs, p)
		return p, nil
	}

	// The hub prints its first keys on standard output.
	pr, pw := io.Pipe()
	if _, err := start("hub", []string{"HUB_LISTEN=" + hubAddr, "HUB_DATA_DIR=" + filepath.Join(tmp, "hub"), "LOG_LEVEL=warn"}, pw, "http://"+hubAddr+"/metrics"); err != nil {
		return false, err
	}
	ingestKey, readKey, err := hubKeys(pr)
	go io.Copy(io.Discard, pr)
	if err != nil {
		return false, fmt.Errorf("hub: %w (its log: %s)", err, filepath.Join(tmp, "hub.log"))
	}
	if _, err := start("forwarder", []string{"FORWARDER_LISTEN=" + fwdAddr, "FORWARDER_SPOOL_DIR=" + filepath.Join(tmp, "spool"),
		"SPEEDSCALE_APP_URL=http://" + hubAddr, "SPEEDSCALE_API_KEY=" + ingestKey, "TENANT_NAME=soak", "LOG_LEVEL=warn"},
		nil, "http://"+fwdAddr+"/metrics"); err != nil {
		return false, err
	}
	if _, err := start("goproxy", []string{"PROXY_TYPE=dual", "PROXY_PROTOCOL=tcp:http", "REVERSE_PROXY_HOST=127.0.0.1",
		"REVERSE_PROXY_PORT=" + port(backend), "PROXY_IN_PORT=" + inPort, "PROXY_OUT_PORT=" + outPort,
		"TLS_OUT_UNWRAP=true", "TLS_CERT_DIR=" + filepath.Join(tmp, "ca"), "TLS_OUT_EXTRA_CA_FILE=" + upPEM,
		"FORWARDER_ADDR=" + fwdAddr, "APP_LABEL=orders", "APP_POD_NAMESPACE=soak", "LOG_LEVEL=warn",
		"DIAG_HTTP_PORT=" + diagPort, "METRICS_HTTP_ENABLE=true", "METRICS_HTTP_PORT=" + metricsPort},
		nil, "http://127.0.0.1:"+metricsPort+"/metrics"); err != nil {
		return false, err
	}
	if err := waitUp("http://127.0.0.1:"+diagPort+"/healthz", "http://"+fwdAddr+"/stats", "http://"+hubAddr+"/healthz"); err != nil {
		return false, err
	}

	caPEM, err := os.ReadFile(ca.CertPath)
	if err != nil {
		return false, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	proxyURL, _ := url.Parse("http://127.0.0.1:" + outPort)
	inbound := &http.Client{Timeout: 10 * time.Second}
	outbound := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 16}}
	upURL := "https://localhost:" + port(upstream) + "/v1/charges"
	backURL := "http://" + backend.Addr().String() + "/status"
	inURL := "http://127.0.0.1:" + inPort

	// The load: one request every 1/rate s, spread over the three kinds.
	var sent, failed atomic.Int64
	loadCtx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		sem := make(chan struct{}, 64) // at most 64 requests in flight
		for i := 0; ; i++ {
			select {
			case <-loadCtx.Done():
				for range cap(sem) {
					sem <- struct{}{}
				}
				return
			case <-tick.C:
			}
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				var resp *http.Response
				var err error
				switch i % 10 {
				case 0, 1, 2, 3, 4:
					resp, err = inbound.Get(fmt.Sprintf("%s/v1/orders/%d", inURL, i))
				case 5, 6:
					resp, err = inbound.Post(inURL+"/v1/orders", "application/json", strings.NewReader(`{"sku":"a-1","qty":2}`))
				case 7:
					resp, err = outbound.Get(backURL)
				default:
					resp, err = outbound.Post(upURL, "application/json", strings.NewReader(`{"amount":1299,"currency":"eur"}`))
				}
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}()
		}
	}()

	fmt.Printf("soak: %s at %d requests/s (50%% inbound GET, 20%% inbound POST, 10%% outbound HTTP, 20%% outbound HTTPS unwrapped), sampled every %s\n",
		duration, rate, every)
	t0 := time.Now()
	var samples []sample
	take := func() {
		s := sample{at: time.Since(t0).Round(time.Second), sent: sent.Load(), failed: failed.Load(), stored: hubCount(hubAddr, readKey)}
		for _, p := range procs {
			s.procs = append(s.procs, measure(p))
		}
		samples = append(samples, s)
		fmt.Println(s)
	}
	take()
	tick := time.NewTicker(every)
	for loadCtx.Err() == nil {
		select {
		case <-loadCtx.Done():
		case <-tick.C:
			take()
		}
	}
	tick.Stop()
	wg.Wait()
	time.Sleep(3 * time.Second) // the last batches reach the hub
	take()
	return report(samples, warmup), nil
}

type procSample struct {
	name                 string
	rssKiB, fds, threads int
	anonKiB              int // RssAnon: the heap and stacks, what a leak grows
	fileKiB              int // RssFile: mapped files (SQLite's mmap of its database grows with it)
	goroutines           int // -1: not known
}

type sample struct {
	at                   time.Duration
	sent, failed, stored int64
	procs                []procSample
}

func (s sample) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6s  requests %d (failed %d), stored %d", s.at, s.sent, s.failed, s.stored)
	for _, p := range s.procs {
		fmt.Fprintf(&b, " | %s %.1f MiB (anon %.1f)", p.name, float64(p.rssKiB)/1024, float64(p.anonKiB)/1024)
		if p.goroutines >= 0 {
			fmt.Fprintf(&b, " %d gor", p.goroutines)
		}
		fmt.Fprintf(&b, " %d fds", p.fds)
	}
	return b.String()
}

var goroutinesRE = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)

func measure(p *proc) procSample {
	pid := p.cmd.Process.Pid
	s := procSample{name: p.name, goroutines: -1}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "VmRSS:":
				s.rssKiB, _ = strconv.Atoi(f[1])
			case "RssAnon:":
				s.anonKiB, _ = strconv.Atoi(f[1])
			case "RssFile:":
				s.fileKiB, _ = strconv.Atoi(f[1])
			case "Threads:":
				s.threads, _ = strconv.Atoi(f[1])
			}
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(ents)
	}
	if p.metrics != "" {
		if resp, err := http.Get(p.metrics); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := goroutinesRE.FindSubmatch(b); m != nil {
				s.goroutines, _ = strconv.Atoi(string(m[1]))
			}
		}
	}
	return s
}

// report prints the samples as a table and says, for each process, how the
// second half's mean compares with the first half's (samples before warmup
// left out). Growth is a rise of more than 20% and more than a small floor
// (4 MiB, 20 goroutines, 10 files); it returns whether any figure grew.
// Memory is judged by RssAnon (heap, stacks): the file-backed part of the
// RSS is pages of mapped files, which the hub's SQLite maps (mmap_size) and
// which grow with the database and are given back under memory pressure.
func report(samples []sample, warmup time.Duration) bool {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "time\trequests\tfailed\tstored\t")
	for _, p := range samples[0].procs {
		fmt.Fprintf(tw, "%s RSS\t%s anon\t%s gor\t%s fds\t", p.name, p.name, p.name, p.name)
	}
	fmt.Fprintln(tw)
	for _, s := range samples {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t", s.at, s.sent, s.failed, s.stored)
		for _, p := range s.procs {
			g := "-"
			if p.goroutines >= 0 {
				g = strconv.Itoa(p.goroutines)
			}
			fmt.Fprintf(tw, "%.1f\t%.1f\t%s\t%d\t", float64(p.rssKiB)/1024, float64(p.anonKiB)/1024, g, p.fds)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	var steady []sample
	for _, s := range samples {
		if s.at >= warmup {
			steady = append(steady, s)
		}
	}
	if len(steady) < 4 {
		fmt.Printf("\ntoo few samples after the %s warm-up to judge growth (%d; want 4)\n", warmup, len(steady))
		return false
	}
	half := len(steady) / 2
	mean := func(ss []sample, i int, f func(procSample) int) float64 {
		t := 0
		for _, s := range ss {
			t += f(s.procs[i])
		}
		return float64(t) / float64(len(ss))
	}
	grew := false
	fmt.Printf("\nfirst half (%s to %s) against second half (%s to %s) of the steady samples:\n",
		steady[0].at, steady[half-1].at, steady[half].at, steady[len(steady)-1].at)
	for i, p := range steady[0].procs {
		for _, m := range []struct {
			what  string
			f     func(procSample) int
			floor float64
			scale float64
		}{
			{"anon MiB", func(p procSample) int { return p.anonKiB }, 4 << 10, 1024},
			{"file MiB", func(p procSample) int { return p.fileKiB }, -1, 1024}, // shown, never judged
			{"goroutines", func(p procSample) int { return p.goroutines }, 20, 1},
			{"open files", func(p procSample) int { return p.fds }, 10, 1},
		} {
			if m.what == "goroutines" && p.goroutines < 0 {
				continue
			}
			a, b := mean(steady[:half], i, m.f), mean(steady[half:], i, m.f)
			verdict := "steady"
			if m.floor < 0 {
				verdict = "(mapped files: not judged)"
			} else if b-a > m.floor && b > 1.2*a {
				verdict = "GREW"
				grew = true
			}
			fmt.Printf("  %-9s %-10s %8.1f -> %8.1f  %s\n", p.name, m.what, a/m.scale, b/m.scale, verdict)
		}
	}
	last := samples[len(samples)-1]
	fmt.Printf("requests %d, failed %d, records stored by the hub %d\n", last.sent, last.failed, last.stored)
	return grew
}

// hubKeys reads the hub's first-start output for its ingest and read keys.
func hubKeys(r io.Reader) (ingest, read string, err error) {
	keyRE := regexp.MustCompile(`^\s*(ingest|read) key\b.*?(tw_\S+)`)
	sc := bufio.NewScanner(r)
	deadline := time.AfterFunc(30*time.Second, func() {
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
	})
	defer deadline.Stop()
	for sc.Scan() {
		if m := keyRE.FindStringSubmatch(sc.Text()); m != nil {
			if m[1] == "ingest" {
				ingest = m[2]
			} else {
				read = m[2]
			}
		}
		if ingest != "" && read != "" {
			return ingest, read, nil
		}
	}
	return "", "", fmt.Errorf("no ingest and read keys in its first-start output")
}

// hubCount returns how many records the hub holds, from its service
// summaries (-1 if it does not answer).
func hubCount(addr, key string) int64 {
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/services", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var sum struct {
		Services []struct {
			Count int64 `json:"count"`
		} `json:"services"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&sum) != nil {
		return -1
	}
	var n int64
	for _, s := range sum.Services {
		n += s.Count
	}
	return n
}

func serve(h http.Handler, cfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	go http.Serve(ln, h)
	return ln, nil
}

func port(ln net.Listener) string {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// freePorts returns n distinct loopback ports free now.
func freePorts(n int) []string {
	var lns []net.Listener
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		lns = append(lns, ln)
		out = append(out, port(ln))
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func waitUp(urls ...string) error {
	for _, u := range urls {
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(u)
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not answer: %w", u, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// upstreamCert makes a CA and a certificate for localhost signed by it; it
// returns the certificate and the CA in PEM, for goproxy to trust.
func upstreamCert() (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "soak upstream CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
