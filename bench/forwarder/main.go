// Command forwarder is the forwarder's load test: it starts the real
// forwarder binary on a loopback port with a fresh spool, sends it
// pre-encoded batches of records with 1 KiB bodies from many concurrent
// senders for a while, and prints the records per second acknowledged and
// delivered to the sink (the directory, or a bucket), with the
// forwarder's peak RSS.
//
//	go build -o bin/ ./cmd/forwarder
//	go run ./bench/forwarder -bin bin/forwarder -senders 16 -duration 10s
//	go run ./bench/forwarder -bin bin/forwarder -bucket b -endpoint http://127.0.0.1:9000   # with AWS_ACCESS_KEY_ID/...
//	go run ./bench/forwarder -bin bin/forwarder -hub bin/hub    # the hub sink: a real hub on SQLite
//	go run ./bench/forwarder -bin bin/forwarder -callgrind 12   # instructions per record, under valgrind
//	go run ./bench/forwarder -bin bin/forwarder -callgrind 12 -callgrind-out cg.out   # and keep the dump
//
// The batches are built and compressed once before the clock starts and
// sent again and again (record ids repeat; the directory sink does not
// mind), so the senders cost little CPU beside the forwarder's. Like
// goproxy with the default redaction settings, the senders say the batches
// were redacted with the default rules (Tapwire-Redacted: their
// fingerprint), so a forwarder of the same build and settings does not
// redact them again; -redacted=false measures the forwarder redacting
// every record (a goproxy of another build or other settings).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/redact"
	"github.com/tapwire/tapwire/internal/wire"
)

func main() {
	bin := flag.String("bin", "bin/forwarder", "the forwarder binary")
	senders := flag.Int("senders", 16, "concurrent senders (goproxies)")
	batch := flag.Int("batch", 0, "records per batch (0: as goproxy batches them, 512 records or 896 KiB of lines, whichever is fewer)")
	body := flag.Int("body", 1024, "response body bytes per record")
	distinct := flag.Int("distinct", 64, "distinct batches built and sent in turn")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	bucket := flag.String("bucket", "", "deliver to this bucket instead of the directory (TENANT_BUCKET)")
	endpoint := flag.String("endpoint", "", "TENANT_BUCKET_ENDPOINT for -bucket")
	flag.StringVar(&hubBin, "hub", "", "deliver to a real hub started from this binary (SQLite in a temp dir) instead of the directory")
	sync := flag.String("sync", "batch", "FORWARDER_SPOOL_SYNC")
	inflight := flag.Int("max-in-flight", 8, "FORWARDER_MAX_IN_FLIGHT")
	flag.StringVar(&tsvFile, "tsv", "", "also append the headline figures to this file as bench/all's rows")
	flag.BoolVar(&preRedacted, "redacted", true, "send Tapwire-Redacted with the default rules' fingerprint, as goproxy does with the default settings")
	flag.StringVar(&encoding, "encoding", wire.EncodingS2, "Content-Encoding of the batches: s2, as goproxy sends them to a forwarder that lists it, or zstd (goproxy's fastest level), as to an older one")
	flag.BoolVar(&withNginx, "nginx", false, "also measure the baseline: nginx storing each batch as a file (WebDAV PUT)")
	flag.StringVar(&callgrindKeep, "callgrind-out", "", "with -callgrind: also copy the measured batches' callgrind dump to this file, for callgrind_annotate")
	flag.IntVar(&callgrindN, "callgrind", 0, "instead of the timed load: run the forwarder under valgrind --tool=callgrind, post 2 batches, then this many, one at a time, and print its user-space instructions per record of those (a figure that does not move with the machine's load)")
	flag.Parse()
	if err := run(*bin, *senders, *batch, *body, *distinct, *duration, *bucket, *endpoint, *sync, *inflight); err != nil {
		fmt.Fprintln(os.Stderr, "bench/forwarder:", err)
		os.Exit(1)
	}
}

func run(bin string, senders, batchSize, bodySize, distinct int, duration time.Duration, bucket, endpoint, syncPolicy string, inflight int) error {
	tmp, err := os.MkdirTemp("", "tapwire-fwd-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()

	env := []string{"FORWARDER_LISTEN=" + addr, "LOG_LEVEL=warn", "FORWARDER_SPOOL_DIR=" + filepath.Join(tmp, "spool"),
		"FORWARDER_SPOOL_SYNC=" + syncPolicy, "FORWARDER_MAX_IN_FLIGHT=" + strconv.Itoa(inflight), "FORWARDER_SPOOL_BYTES=" + strconv.Itoa(8<<30)}
	sink := "directory"
	switch {
	case hubBin != "":
		sink = "hub"
		url, key, stop, err := startHub(hubBin, filepath.Join(tmp, "hub"))
		if err != nil {
			return err
		}
		defer stop()
		env = append(env, "SPEEDSCALE_APP_URL="+url, "SPEEDSCALE_API_KEY="+key)
	case bucket != "":
		sink = "bucket"
		env = append(env, "TENANT_BUCKET="+bucket, "TENANT_BUCKET_ENDPOINT="+endpoint, "TENANT_REGION=us-east-1")
	default:
		env = append(env, "FORWARDER_DIR="+filepath.Join(tmp, "records"))
	}
	cmd := exec.Command(bin)
	cgOut := filepath.Join(tmp, "callgrind.out")
	if callgrindN > 0 {
		// Go's preemption signals trip an assertion in callgrind. One P:
		// valgrind runs one thread at a time, and a second P's search
		// for work would be counted as it spins.
		cmd = exec.Command("valgrind", "--tool=callgrind", "--callgrind-out-file="+cgOut, bin)
		env = append(env, "GODEBUG=asyncpreemptoff=1", "GOMAXPROCS=1")
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	defer func() {
		if callgrindN > 0 {
			cmd.Process.Kill() // a signal to stop trips callgrind (valgrind 3.19); the dumps are written
		}
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	if err := waitHealthy(addr); err != nil {
		return err
	}

	if batchSize <= 0 {
		batchSize = goproxyBatch(bodySize)
	}
	fmt.Printf("building %d batches of %d records with %d-byte bodies...\n", distinct, batchSize, bodySize)
	if encoding != wire.EncodingS2 && encoding != wire.EncodingZstd {
		return fmt.Errorf("-encoding %q: want s2 or zstd", encoding)
	}
	bodies, plainBytes := buildBatches(distinct, batchSize, bodySize)
	var compressed int
	for _, b := range bodies {
		compressed += len(b.body)
	}
	fmt.Printf("one record is %d bytes of JSON; batches compress %.1f:1\n", plainBytes/(distinct*batchSize), float64(plainBytes)/float64(compressed))

	fingerprint := ""
	if preRedacted {
		red, err := (&redact.Settings{}).Redactor()
		if err != nil {
			return err
		}
		fingerprint = red.Fingerprint()
	}
	newReq := func(ctx context.Context, j int) *http.Request {
		b := bodies[j%len(bodies)]
		req, _ := wire.NewRequest(ctx, "http://"+addr+wire.Path, b.body, b.id, batchSize, "")
		req.Header.Set("Content-Encoding", encoding)
		if fingerprint != "" {
			req.Header.Set(wire.HeaderRedacted, fingerprint)
		}
		return req
	}
	if callgrindN > 0 {
		return instructions(cmd.Process.Pid, addr, sink, cgOut, batchSize, newReq)
	}
	start := time.Now()
	cpu0 := procCPU(cmd.Process.Pid)
	acked, refused, sent := send(senders, duration, func(ctx context.Context, sender, j int) *http.Request {
		return newReq(ctx, j)
	})
	ackRate := float64(batchSize) * float64(acked) / sent.Seconds()

	// Wait for the sink to catch up.
	var st stats
	for {
		st, err = getStats(addr)
		if err != nil {
			return err
		}
		if st.Sinks[sink].Delivered >= st.Spooled || time.Since(start) > duration+5*time.Minute {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	total := time.Since(start)
	rss := peakRSS(cmd.Process.Pid)
	cpu := procCPU(cmd.Process.Pid) - cpu0
	fmt.Printf("senders %d, batch %d, body %d B, spool sync %s, sink %s\n", senders, batchSize, bodySize, syncPolicy, sink)
	fmt.Printf("acknowledged: %d records in %s = %.0f records/s (%d batches refused busy)\n", int64(batchSize)*acked, sent.Round(time.Millisecond), ackRate, refused)
	fmt.Printf("delivered:    %d records in %s = %.0f records/s end to end\n", st.Sinks[sink].Delivered, total.Round(time.Millisecond),
		float64(st.Sinks[sink].Delivered)/total.Seconds())
	fmt.Printf("spool fsyncs: %d for %d batches; forwarder peak RSS %s\n", st.SpoolFsyncs, st.Batches, rss)
	fmt.Printf("batches not redacted again (sent with the forwarder's own redaction fingerprint): %d of %d\n", st.PreRedacted, st.Batches)
	if cpu > 0 {
		// The forwarder's own CPU time (ingest and delivery) does not
		// depend on what else the machine runs, as the rates above do.
		fmt.Printf("forwarder CPU: %.2fs user+system = %.0f records delivered per CPU-second\n", cpu.Seconds(),
			float64(st.Sinks[sink].Delivered)/cpu.Seconds())
	}
	target := ""
	if sink == "directory" {
		target = ">=150000" // issue 4's target
	}
	baseName, baseRate := "", ""
	if withNginx {
		rate, err := nginxBaseline(tmp, senders, duration, bodies, batchSize)
		if err != nil {
			return fmt.Errorf("nginx baseline: %w", err)
		}
		baseName, baseRate = "nginx WebDAV PUT of each batch to a file", fmt.Sprintf("%.0f", rate)
	}
	return tsvRows(
		[]string{fmt.Sprintf("forwarder records/s acknowledged, %d senders, %d B bodies, %s batches, into the %s sink", senders, bodySize, encoding, sink), fmt.Sprintf("%.0f", ackRate), baseName, baseRate, target},
		[]string{fmt.Sprintf("forwarder records/s delivered end to end, %s batches, into the %s sink", encoding, sink), fmt.Sprintf("%.0f", float64(st.Sinks[sink].Delivered)/total.Seconds()), "", "", ""},
	)
}

// callgrindN is -callgrind: the batches measured under callgrind;
// callgrindKeep is -callgrind-out.
var (
	callgrindN    int
	callgrindKeep string
)

// instructions posts 2 batches to the forwarder (pid, under callgrind,
// writing dumps to out.N), one at a time, waits until its sink has their
// records and dumps its counters; then does the same with callgrindN
// batches and prints the second dump's instructions per record: a
// difference between two record counts of one process, start-up and
// warm-up left out.
func instructions(pid int, addr, sink, out string, batchSize int, newReq func(context.Context, int) *http.Request) error {
	sent := 0
	segment := func(batches, dump int) error {
		for range batches {
			resp, err := http.DefaultClient.Do(newReq(context.Background(), sent))
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("batch %d: %s", sent, resp.Status)
			}
			sent++
		}
		for deadline := time.Now().Add(5 * time.Minute); ; {
			st, err := getStats(addr)
			if err != nil {
				return err
			}
			if st.Sinks[sink].Delivered >= int64(sent*batchSize) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the sink has %d of %d records after 5 minutes", st.Sinks[sink].Delivered, sent*batchSize)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if b, err := exec.Command("callgrind_control", "-d", strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return fmt.Errorf("callgrind_control -d: %w: %s", err, b)
		}
		for deadline := time.Now().Add(30 * time.Second); ; {
			if b, err := os.ReadFile(fmt.Sprintf("%s.%d", out, dump)); err == nil && bytes.Contains(b, []byte("\ntotals:")) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("callgrind wrote no dump %s.%d", out, dump)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := segment(2, 1); err != nil {
		return err
	}
	if err := segment(callgrindN, 2); err != nil {
		return err
	}
	b, err := os.ReadFile(out + ".2")
	if err != nil {
		return err
	}
	if callgrindKeep != "" {
		if err := os.WriteFile(callgrindKeep, b, 0o644); err != nil {
			return err
		}
	}
	var total int64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "totals: "); ok {
			total, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	fmt.Printf("forwarder instructions per record: %.0f (callgrind, user space; %d batches of %d records, one at a time, after 2)\n",
		float64(total)/float64(callgrindN*batchSize), callgrindN, batchSize)
	return nil
}

// hubBin is -hub: the hub binary of the hub sink.
var hubBin string

// preRedacted is -redacted: the batches carry the default redaction's
// fingerprint (wire.HeaderRedacted).
var preRedacted bool

// encoding is the batches' Content-Encoding (-encoding).
var encoding string

// startHub starts the hub binary on a loopback port with its data in dir
// and returns its URL, the ingest key of its first start, and a function
// that stops it.
func startHub(bin, dir string) (url, key string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-listen", addr, "-data", dir, "-retention", "off", "-max-inflight", "16")
	cmd.Env = append(os.Environ(), "LOG_LEVEL=warn")
	cmd.Stderr = io.Discard // the retention=off warning
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", "", nil, fmt.Errorf("start %s: %w", bin, err)
	}
	stop = func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
	keyc := make(chan string, 1)
	go func() { // the keys are printed once, at the first start
		re := regexp.MustCompile(`ingest key [^:]*:\s+(tw_\S+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				keyc <- m[1]
			}
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return "", "", nil, fmt.Errorf("hub %s did not answer on %s", bin, addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The keys are printed before the hub answers.
	select {
	case key = <-keyc:
	case <-time.After(2 * time.Second):
	}
	if key == "" {
		stop()
		return "", "", nil, fmt.Errorf("hub %s printed no ingest key (is %s fresh?)", bin, dir)
	}
	return "http://" + addr, key, stop, nil
}

// tsvFile is -tsv: where the headline figures go as bench/all's rows.
var tsvFile string

// tsvRows appends rows (figure, ours, baseline name, baseline, target) to
// tsvFile, if set.
func tsvRows(rows ...[]string) error {
	if tsvFile == "" {
		return nil
	}
	f, err := os.OpenFile(tsvFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	for _, r := range rows {
		fmt.Fprintln(f, strings.Join(r, "\t"))
	}
	return f.Close()
}

// send runs senders goroutines for duration, each sending the requests
// req makes (sender, and its j-th request) one at a time, and returns the
// requests answered 200 and those answered otherwise, and the time taken.
func send(senders int, duration time.Duration, req func(ctx context.Context, sender, j int) *http.Request) (acked, refused int64, took time.Duration) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders, DisableCompression: true}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	var ok, busy atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; ctx.Err() == nil; j++ {
				resp, err := client.Do(req(ctx, i, j))
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					ok.Add(1)
				} else {
					busy.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return ok.Load(), busy.Load(), time.Since(start)
}

// withNginx is -nginx: measure the baseline too.
var withNginx bool

// nginxBaseline measures the floor the forwarder is compared with: nginx
// (the same senders, the same compressed batches) storing each batch body
// as a file with WebDAV PUT — an HTTP server that persists what it
// receives, with no decompression, no decoding, no redaction and no
// fsync. It returns records per second (batch records per stored body).
func nginxBaseline(tmp string, senders int, duration time.Duration, bodies []encoded, batchSize int) (float64, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/nginx"); err2 != nil {
			return 0, fmt.Errorf("nginx is missing (bench/install-deps): %w", err)
		}
		bin = "/usr/sbin/nginx"
	}
	dir := filepath.Join(tmp, "nginx")
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	user := "" // as root, nginx's workers would run as nobody, who cannot enter tmp
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`daemon off;
%[4]s
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp;
	client_max_body_size 64m;
	client_body_buffer_size 1m;
	keepalive_requests 1000000;
	server {
		listen %[2]s;
		root %[3]s;
		location / { dav_methods PUT; create_full_put_path on; }
	}
}
`, dir, addr, store, user)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		return 0, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		if callgrindN > 0 {
			cmd.Process.Kill() // a signal to stop trips callgrind (valgrind 3.19); the dumps are written
		}
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("nginx did not start: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	acked, refused, took := send(senders, duration, func(ctx context.Context, sender, j int) *http.Request {
		b := bodies[j%len(bodies)]
		// A fresh name each time, as the spool appends each batch anew.
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("http://%s/s%d/b%d", addr, sender, j), bytes.NewReader(b.body))
		return req
	})
	rate := float64(batchSize) * float64(acked) / took.Seconds()
	fmt.Printf("baseline, nginx WebDAV PUT of each batch to a file: %d batches in %s = %.0f records/s (%d refused)\n",
		acked, took.Round(time.Millisecond), rate, refused)
	return rate, nil
}

type encoded struct {
	id   string
	body []byte
}

var words = strings.Fields("order item price quantity customer address status shipped pending total currency sku " +
	"warehouse carrier tracking note discount tax coupon gift express standard return refund invoice")

// buildBatches makes n batches of size records in -encoding, each with a
// JSON-ish response body of bodySize bytes, compressed as goproxy
// compresses them.
func buildBatches(n, size, bodySize int) ([]encoded, int) {
	var out []encoded
	plain := 0
	now := time.Now().UTC()
	for range n {
		recs := make([]*capture.Record, size)
		for i := range recs {
			recs[i] = makeRecord(bodySize, now)
		}
		var lines, z bytes.Buffer
		jsonl.Append(&lines, recs)
		plain += lines.Len()
		encode := wire.EncodeBatchS2
		if encoding == wire.EncodingZstd {
			encode = wire.EncodeBatchFast
		}
		if err := encode(&z, recs); err != nil {
			panic(err)
		}
		out = append(out, encoded{id: wire.BatchID(recs), body: z.Bytes()})
	}
	return out, plain
}

// makeRecord makes a record of a proxied call with a JSON-ish response
// body of bodySize bytes.
func makeRecord(bodySize int, now time.Time) *capture.Record {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for b.Len() < bodySize-40 {
		fmt.Fprintf(&b, `{"%s":"%s","n":%d},`, words[rand.IntN(len(words))], words[rand.IntN(len(words))], rand.IntN(100000))
	}
	b.WriteString(`{}]}`)
	data := b.Bytes()
	if len(data) > bodySize {
		data = data[:bodySize]
	}
	return &capture.Record{
		Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn,
		Start: now, DurMicros: 1200, TTFBMicros: 900,
		Labels: capture.Labels{Service: "orders", Namespace: "shop", Pod: "orders-1"},
		Net:    capture.Net{ClientAddr: "10.0.1.7:51544", ServerAddr: "localhost:8080", ServerHost: "localhost", ConnID: "c-1", Proxy: "reverse"},
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: "GET", URL: fmt.Sprintf("http://orders.shop:4143/v1/orders/%d", rand.IntN(1e6)), Proto: "HTTP/1.1", Host: "orders.shop:4143",
				Headers: capture.Headers{{Name: "Accept", Value: "application/json"}, {Name: "User-Agent", Value: "shop-web/2.3"}, {Name: "Authorization", Value: "Bearer abc.def.ghi"}}},
			Res: &capture.Response{Status: 200, StatusText: "OK", Proto: "HTTP/1.1",
				Headers: capture.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: strconv.Itoa(len(data))}},
				Body:    capture.Body{Data: data, Size: int64(len(data))}},
		},
		Tags: capture.Tags{"captureMode": "proxy", "proxyType": "dual", "proxyProtocol": "tcp:http"},
	}
}

// goproxyBatch is how many records of makeRecord's shape goproxy puts in a
// batch with its default sizes (ship.Config: 512 records, and lines under
// seven eighths of wire.FrameBytes by wire.EstimateSize).
func goproxyBatch(bodySize int) int {
	return max(1, min(512, int((wire.FrameBytes-wire.FrameBytes/8)/wire.EstimateSize(makeRecord(bodySize, time.Now())))))
}

func waitHealthy(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	if callgrindN > 0 {
		deadline = time.Now().Add(2 * time.Minute) // valgrind starts slowly
	}
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("forwarder not healthy: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type stats struct {
	Batches     int64 `json:"batches"`
	Spooled     int64 `json:"spooled"`
	SpoolFsyncs int64 `json:"spoolFsyncs"`
	PreRedacted int64 `json:"preRedacted"`
	Sinks       map[string]struct {
		Delivered int64 `json:"delivered"`
	} `json:"sinks"`
}

func getStats(addr string) (stats, error) {
	var st stats
	resp, err := http.Get("http://" + addr + "/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// procCPU reads the user and system CPU time of a process (Linux, whose
// /proc/PID/stat counts in ticks of 1/100 s); 0 when it cannot.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:])) // from field 3, the state
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakRSS reads VmHWM of a process (Linux).
func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "?"
}
