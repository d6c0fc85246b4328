package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/testca"
)

// The host names of the run, as the guide's service discovery and the app
// name them.
const (
	forwarderName = "forwarder.ecs.local"
	hubName       = "hub.tapwire.test"
	upstreamName  = "api.upstream.test"
	bucketName    = "s3.tapwire.test"
	// The guide's TENANT_BUCKET, TENANT_REGION and TENANT_ID.
	tenantBucket = "sstenant-tenant"
	tenantRegion = "us-east-1"
	tenantID     = "4b7f3e0c-8a5d-4e39-9d0e-2f6b1c7a9e11"
)

// Addresses on the bridge (subnet + octet).
const (
	taskOctet     = 10
	forwarderOct  = 20
	hubOctet      = 30
	upstreamOctet = 40
	lbOctet       = 50
	bucketOctet   = 60
	tapOctet      = 21 // the relay that records the goproxy→forwarder hop
	sfwdOctet     = 22 // the forwarder as speedctl writes it, with a token
)

// The guide's labels on every record: APP_LABEL, APP_POD_NAME and
// APP_POD_NAMESPACE on goproxy, CLUSTER_NAME on the forwarder, and the
// tenant of the hub's key.
var guideLabels = capture.Labels{Cluster: "ecs", Namespace: "ecs", Service: "notifications", Pod: "notifications", Tenant: "default"}

// hubOutage is how long the hub stays down in the hub fault: the issue asks
// for a minute; 20 s keeps CI time reasonable and is long enough for the
// forwarder's backoff to reach its upper steps. TAPWIRE_E2E_HUB_OUTAGE
// (a Go duration) sets another.
func hubOutage(t *testing.T) time.Duration {
	if v := os.Getenv("TAPWIRE_E2E_HUB_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TAPWIRE_E2E_HUB_OUTAGE=%q: %v", v, err)
		}
		return d
	}
	return 20 * time.Second
}

// guide is the running deployment.
type guide struct {
	*world
	bin                      string // built binaries
	tmp                      string // the run's files
	secrets, volume          string // the Secrets Manager stand-in, and the task volume /etc/ssl/speedscale
	task, fwdNS, hubNS, upNS string
	lb                       string
	hubCAFile                string // the hub's test CA, the forwarders' SSL_CERT_FILE
	fwdDir                   string // the forwarder's working directory, its spool in tapwire-spool

	app, goproxy, forwarder, hub *proc
	ingestKey, readKey           string

	// The tenant bucket: a MinIO in its own namespace, nil without MinIO.
	minio  *proc
	bucket *bucketReader

	hubCA    *testca.CA
	upstream *upstream
	lbClient *http.Client
	nonce    string

	// tap relays the task's connections to forwarder.ecs.local:8888 and
	// records what goproxy sends; creds are the run's secrets, sent
	// through the app by the secrets check.
	tap   *tap
	creds creds
}

// upstream is the HTTPS service the app calls, by name, through goproxy.
type upstream struct {
	mu     sync.Mutex
	counts map[string]int
	creds  *creds   // what /login answers with
	logins []*login // what /login received
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.counts[r.URL.Path]++
	u.mu.Unlock()
	switch r.URL.Path {
	case "/echo":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"echo":%q,"host":%q}`, r.URL.Query().Get("id"), r.Host)
	case "/login":
		u.login(w, r)
	case "/reset":
		// Read the request, then reset the connection: SO_LINGER 0 makes
		// closing the TCP socket (under TLS, so that no close_notify goes
		// first) send an RST instead of a FIN.
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		tcp := c.(*tls.Conn).NetConn().(*net.TCPConn)
		tcp.SetLinger(0)
		tcp.Close()
	default:
		http.NotFound(w, r)
	}
}

func build(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/tapwire/tapwire/cmd/goproxy",
		"github.com/tapwire/tapwire/cmd/forwarder",
		"github.com/tapwire/tapwire/cmd/hub",
		"github.com/tapwire/tapwire/test/e2e/testdata/app")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// setupGuide builds the binaries and brings up the guide's deployment.
func setupGuide(t *testing.T) *guide {
	w := newWorld(t)
	g := &guide{world: w, bin: build(t)}
	nb := make([]byte, 4)
	rand.Read(nb)
	g.nonce = hex.EncodeToString(nb)
	tmp := t.TempDir()
	g.tmp = tmp

	ipOf := func(octet int) string { return subnet + strconv.Itoa(octet) }
	w.hosts[forwarderName] = ipOf(forwarderOct)
	w.hosts[hubName] = ipOf(hubOctet)
	w.hosts[upstreamName] = ipOf(upstreamOctet)
	w.hosts["task"] = ipOf(taskOctet)
	upstreamHosts := ipOf(upstreamOctet) + "\t" + upstreamName + " rot1.upstream.test rot2.upstream.test"
	// The task resolves forwarder.ecs.local to the tap, a relay on the
	// path to the forwarder that records the bytes goproxy sends.
	g.task = w.host("task", taskOctet, ipOf(tapOctet)+"\t"+forwarderName, upstreamHosts)
	g.fwdNS = w.host("forwarder", forwarderOct, ipOf(hubOctet)+"\t"+hubName, ipOf(bucketOctet)+"\t"+bucketName)
	g.hubNS = w.host("hub", hubOctet)
	g.upNS = w.host("upstream", upstreamOctet)
	g.lb = w.host("lb", lbOctet, ipOf(taskOctet)+"\tnotifications.ecs.test")
	w.hosts[bucketName] = ipOf(bucketOctet)

	// The upstream: HTTPS for api.upstream.test (and *.upstream.test) with
	// a certificate of its own CA, which goproxy trusts through
	// TLS_OUT_EXTRA_CA_FILE. HTTP/1.1 only, so that /reset can hijack.
	upCA := testca.New(t)
	upRoots := filepath.Join(tmp, "upstream-ca.pem")
	upCA.WriteFile(t, upRoots)
	g.creds = newCreds(t, g.nonce)
	g.upstream = &upstream{counts: map[string]int{}, creds: &g.creds}
	tcfg := upCA.ServerTLS(t, upstreamName, "*.upstream.test")
	tcfg.NextProtos = []string{"http/1.1"}
	ln := tls.NewListener(w.listen(g.upNS, ":443"), tcfg)
	upSrv := &http.Server{Handler: g.upstream, ReadHeaderTimeout: 10 * time.Second}
	go upSrv.Serve(ln)
	t.Cleanup(func() { upSrv.Close() })

	// The hub, with TLS for hub.tapwire.test, so that the forwarder reaches
	// it with the guide's form of SPEEDSCALE_APP_URL: a bare host, https.
	g.hubCA = testca.New(t)
	hubCAFile := filepath.Join(tmp, "hub-ca.pem")
	g.hubCA.WriteFile(t, hubCAFile)
	g.hubCAFile = hubCAFile
	leaf := g.hubCA.Leaf(t, hubName)
	hubCert, hubKey := filepath.Join(tmp, "hub.crt"), filepath.Join(tmp, "hub.key")
	writePEM(t, hubCert, "CERTIFICATE", leaf.Certificate[0])
	kder, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, hubKey, "PRIVATE KEY", kder)
	hubData := filepath.Join(tmp, "hub-data")
	g.hub = &proc{name: "hub", ns: g.hubNS, argv: []string{filepath.Join(g.bin, "hub")}, dir: tmp,
		env: []string{"HUB_LISTEN=:443", "HUB_DATA_DIR=" + hubData, "HUB_TLS_CERT=" + hubCert, "HUB_TLS_KEY=" + hubKey}}
	w.start(g.hub)
	t.Cleanup(func() { g.hub.kill(t, syscall.SIGTERM) })
	g.waitPort(t, g.hub, g.hubNS, "127.0.0.1:443")
	// The keys the hub prints on its first start (the pipe from the
	// process may lag behind its listening socket).
	keysRE := regexp.MustCompile(`ingest key[^\n]*?(tw_\S+)\n\s*read key[^\n]*?(tw_\S+)`)
	var keys []string
	for deadline := time.Now().Add(30 * time.Second); keys == nil; {
		if keys = keysRE.FindStringSubmatch(g.hub.stdoutText()); keys == nil {
			if time.Now().After(deadline) {
				t.Fatalf("the hub did not print its first keys within 30 s; output:\n%s", g.hub.logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	g.ingestKey, g.readKey = keys[1], keys[2]

	// The forwarder: the guide's task definition, with the hub's address
	// and the ingest key in place of app.speedscale.com and "yourkey".
	// SSL_CERT_FILE makes it trust the test hub's CA; the bucket is MinIO's
	// (TENANT_BUCKET_ENDPOINT and the AWS credentials of the SDK's chain).
	fwdDir := filepath.Join(tmp, "forwarder")
	os.MkdirAll(fwdDir, 0o755)
	g.fwdDir = fwdDir
	fwdEnv := []string{
		"CLUSTER_NAME=ecs",
		"SPEEDSCALE_API_KEY=" + g.ingestKey,
		"SPEEDSCALE_APP_URL=" + hubName,
		"SUB_TENANT_NAME=default",
		"SUB_TENANT_STREAM=" + tenantBucket,
		"TENANT_NAME=" + tenantBucket,
		"TENANT_ID=" + tenantID,
		"TENANT_REGION=" + tenantRegion,
		"SSL_CERT_FILE=" + hubCAFile,
	}
	if creds := g.startBucket(t, tmp); creds != nil {
		fwdEnv = append(fwdEnv, "TENANT_BUCKET="+tenantBucket, "TENANT_BUCKET_ENDPOINT=http://"+bucketName+":9000")
		fwdEnv = append(fwdEnv, creds...)
	}
	g.forwarder = &proc{name: "forwarder", ns: g.fwdNS, argv: []string{filepath.Join(g.bin, "forwarder")}, dir: fwdDir, env: fwdEnv}
	w.start(g.forwarder)
	t.Cleanup(func() { g.forwarder.kill(t, syscall.SIGTERM) })
	g.waitPort(t, g.forwarder, g.fwdNS, "127.0.0.1:8888")
	g.tap = g.startTap(t, w.host("tap", tapOctet), ipOf(forwarderOct)+":8888")

	// The CA, made with the guide's openssl commands into the secrets
	// folder; the init step copies it into the task volume with the guide's
	// command (cat in place of aws secretsmanager get-secret-value).
	g.secrets, g.volume = filepath.Join(tmp, "secrets"), filepath.Join(tmp, "etc-ssl-speedscale")
	os.MkdirAll(g.secrets, 0o700)
	os.MkdirAll(g.volume, 0o755)
	testca.OpenSSLGuideCA(t, g.secrets)
	g.initStep(t, ">>", "tls.crt", "tls.key")

	// goproxy: the guide's environment, TLS_CERT_DIR at the volume, and the
	// upstream's CA as an extra root.
	g.goproxy = &proc{name: "goproxy", ns: g.task, argv: []string{filepath.Join(g.bin, "goproxy")}, dir: tmp,
		env: []string{
			"LOG_LEVEL=info",
			"APP_LABEL=notifications",
			"APP_POD_NAME=notifications",
			"APP_POD_NAMESPACE=ecs",
			"CAPTURE_MODE=proxy",
			"PROXY_TYPE=dual",
			"PROXY_PROTOCOL=tcp:http",
			"TLS_OUT_UNWRAP=true",
			"REVERSE_PROXY_PORT=8080",
			"FORWARDER_ADDR=" + forwarderName + ":8888",
			"TLS_CERT_DIR=" + g.volume,
			"TLS_OUT_EXTRA_CA_FILE=" + upRoots,
		}}
	w.start(g.goproxy)
	t.Cleanup(func() { g.goproxy.kill(t, syscall.SIGTERM) })

	// The app: SSL_CERT_FILE, HTTP_PROXY and HTTPS_PROXY as the guide sets them.
	g.app = &proc{name: "app", ns: g.task, argv: []string{filepath.Join(g.bin, "app"), "-upstream", "https://" + upstreamName}, dir: tmp,
		env: []string{
			"SSL_CERT_FILE=" + filepath.Join(g.volume, "tls.crt"),
			"HTTP_PROXY=http://localhost:4140",
			"HTTPS_PROXY=http://localhost:4140",
		}}
	w.start(g.app)
	t.Cleanup(func() { g.app.kill(t, syscall.SIGTERM) })

	g.waitPort(t, g.goproxy, g.task, "127.0.0.1:4143")
	g.waitPort(t, g.goproxy, g.task, "127.0.0.1:4140")
	g.waitPort(t, g.app, g.task, "127.0.0.1:8080")

	// The load balancer reaches the task's :4143 across the bridge.
	g.lbClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: g.dialer(g.lb), Proxy: nil}}
	t.Cleanup(g.lbClient.CloseIdleConnections)

	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*proc{g.goproxy, g.app, g.forwarder, g.hub, g.minio} {
				if p == nil {
					continue
				}
				t.Logf("%s output:\n%s", p.name, tail(p.logs(), 60))
			}
		}
	})
	return g
}

// initStep is the guide's init container: it writes the secrets into the
// task volume, in the task's namespace, and must succeed before the app and
// goproxy start. op is ">>" (the guide's append, into an empty volume) or
// ">" (a rotation replacing a file).
func (g *guide) initStep(t *testing.T, op string, files ...string) {
	t.Helper()
	var script []string
	for _, f := range files {
		script = append(script, fmt.Sprintf("cat %s %s %s", filepath.Join(g.secrets, f), op, filepath.Join(g.volume, f)))
	}
	cmd := exec.Command(g.ip, "netns", "exec", g.task, "sh", "-c", strings.Join(script, " && "))
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("init step: %v\n%s", err, out)
	}
}

// get is a request of the load balancer to the task's :4143.
func (g *guide) get(t *testing.T, path string) (int, string) {
	t.Helper()
	code, body, err := g.tryGet(path)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

func (g *guide) tryGet(path string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+subnet+strconv.Itoa(taskOctet)+":4143"+path, nil)
	req.Host = "notifications.ecs.test"
	res, err := g.lbClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s through the load balancer: %w", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s through the load balancer: read the body: %w", path, err)
	}
	return res.StatusCode, string(b), nil
}

// hubRecord is one item of the hub's GET /api/v1/records with full=true.
type hubRecord struct {
	ID        string          `json:"id"`
	Direction string          `json:"direction"`
	URL       string          `json:"url"`
	Status    int             `json:"status"`
	Error     string          `json:"error"`
	Record    *capture.Record `json:"record"`
}

// hubRecords lists every record of the tenant whose URL or body contains
// q, through the hub's API with the read key, from the hub's namespace.
func (g *guide) hubRecords(t *testing.T, q string) ([]hubRecord, error) {
	t.Helper()
	recs, _, err := g.hubQuery(q)
	return recs, err
}

// hubQuery is hubRecords, with the pages as the hub answered them.
func (g *guide) hubQuery(q string) ([]hubRecord, [][]byte, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:     g.dialer(g.hubNS),
		TLSClientConfig: &tls.Config{RootCAs: g.hubCA.Pool(), ServerName: hubName},
	}}
	defer c.CloseIdleConnections()
	var all []hubRecord
	var pages [][]byte
	cursor := ""
	for {
		v := url.Values{"q": {q}, "limit": {"1000"}, "full": {"true"}}
		if cursor != "" {
			v.Set("cursor", cursor)
		}
		req, _ := http.NewRequest("GET", "https://"+hubName+"/api/v1/records?"+v.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+g.readKey)
		res, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return nil, nil, fmt.Errorf("hub answered %d: %s", res.StatusCode, b)
		}
		pages = append(pages, b)
		var page struct {
			Records []hubRecord `json:"records"`
			Next    string      `json:"next"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, nil, fmt.Errorf("decode the hub's page: %w", err)
		}
		all = append(all, page.Records...)
		if page.Next == "" {
			return all, pages, nil
		}
		cursor = page.Next
	}
}

// waitHub waits until the hub holds, for every marker, an inbound and an
// outbound record whose URL contains it, and returns them by direction and
// marker.
func (g *guide) waitHub(t *testing.T, q string, markers []string, within time.Duration) map[string]map[string]hubRecord {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		recs, err := g.hubRecords(t, q)
		got := map[string]map[string]hubRecord{"in": {}, "out": {}}
		var missing []string
		if err == nil {
			for _, r := range recs {
				for _, m := range markers {
					if strings.Contains(r.URL, m) {
						got[r.Direction][m] = r
					}
				}
			}
			for _, m := range markers {
				for _, d := range []string{"in", "out"} {
					if _, ok := got[d][m]; !ok {
						missing = append(missing, d+" "+m)
					}
				}
			}
			if len(missing) == 0 {
				return got
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("query the hub: %v", err)
			}
			t.Fatalf("after %s the hub lacks %d of %d records: %s", within, len(missing), 2*len(markers), strings.Join(first(missing, 10), ", "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... %d more", len(s)-n))
	}
	return s
}

// forwarderHealth is the guide's health check, `curl localhost:8888`, run
// in the forwarder's namespace.
func (g *guide) forwarderHealth(t *testing.T) (int, string) {
	t.Helper()
	return g.healthOf(t, g.fwdNS)
}

// healthOf is the guide's forwarder health check in namespace ns.
func (g *guide) healthOf(t *testing.T, ns string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: g.dialer(ns)}}
	defer c.CloseIdleConnections()
	res, err := c.Get("http://127.0.0.1:8888/")
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// goproxyHealth is goproxy's /healthz, on loopback inside the task.
func (g *guide) goproxyHealth(t *testing.T) map[string]any {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: g.dialer(g.task)}}
	defer c.CloseIdleConnections()
	res, err := c.Get("http://127.0.0.1:4100/healthz")
	if err != nil {
		t.Fatalf("goproxy /healthz: %v", err)
	}
	defer res.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		t.Fatalf("goproxy /healthz: %v", err)
	}
	return h
}

func shipping(t *testing.T, h map[string]any, field string) int64 {
	t.Helper()
	s, _ := h["shipping"].(map[string]any)
	v, ok := s[field].(float64)
	if !ok {
		t.Fatalf("goproxy /healthz has no shipping.%s: %v", field, h)
	}
	return int64(v)
}

// checkGuideRecord checks what the guide promises of every record.
func checkGuideRecord(t *testing.T, r hubRecord) {
	t.Helper()
	if r.Record == nil {
		t.Fatalf("record %s: the hub returned no full record", r.ID)
	}
	if r.Record.Labels != guideLabels {
		t.Errorf("%s record %s: labels %+v, want %+v", r.Direction, r.URL, r.Record.Labels, guideLabels)
	}
	tags := r.Record.Tags
	if tags["captureMode"] != "proxy" || tags["proxyType"] != "dual" || tags["proxyProtocol"] != "tcp:http" ||
		tags["tenantName"] != "sstenant-tenant" || tags["subTenant"] != "default" {
		t.Errorf("%s record %s: tags %v, want the guide's capture mode, proxy type and protocol and tenant names", r.Direction, r.URL, tags)
	}
}

// TestGuide runs the deployment guide on this machine, then breaks it in
// the ways the issue lists, each with its expected outcome. docs/e2e.md
// draws the setup.
func TestGuide(t *testing.T) {
	g := setupGuide(t)

	t.Run("capture", func(t *testing.T) {
		marker := "guide-" + g.nonce
		code, body := g.get(t, "/call?id="+marker)
		if code != 200 || !strings.Contains(body, `"echo":"`+marker+`"`) {
			t.Fatalf("the app answered %d %q, want 200 with the upstream's echo", code, body)
		}
		got := g.waitHub(t, marker, []string{marker}, 30*time.Second)
		in, out := got["in"][marker], got["out"][marker]
		checkGuideRecord(t, in)
		checkGuideRecord(t, out)
		if in.Status != 200 || in.URL != "http://notifications.ecs.test/call?id="+marker {
			t.Errorf("inbound record: %s -> %d, want http://notifications.ecs.test/call?id=%s -> 200", in.URL, in.Status, marker)
		}
		if out.Status != 200 || out.URL != "https://"+upstreamName+"/echo?id="+marker {
			t.Errorf("outbound record: %s -> %d, want https://%s/echo?id=%s -> 200", out.URL, out.Status, upstreamName, marker)
		}
		// Unwrapped: the HTTP exchange inside the app's TLS is in the record,
		// with the TLS facts of both sides.
		if h := out.Record.HTTP; h == nil || h.Res == nil || !strings.Contains(string(h.Res.Body.Data), marker) {
			t.Errorf("outbound record holds no unwrapped response body with %s: %+v", marker, out.Record.HTTP)
		}
		if tl := out.Record.Net.TLS; tl == nil || tl.SNI != upstreamName || tl.Upstream == nil {
			t.Errorf("outbound record TLS facts = %+v, want SNI %s and the upstream session", tl, upstreamName)
		}
		// The tenant bucket has them too, under TENANT_ID/CLUSTER/SERVICE/.
		if g.bucket != nil {
			g.waitBucket(t, []string{marker}, 30*time.Second)
			for _, k := range g.bucket.keys {
				if !strings.HasPrefix(k, tenantID+"/ecs/notifications/") {
					t.Errorf("bucket object %s, want it under %s/ecs/notifications/", k, tenantID)
				}
			}
		}
		// The guide's health check of the forwarder.
		if code, body := g.forwarderHealth(t); code != 200 || !strings.Contains(body, "Connected") ||
			(g.bucket != nil && !strings.Contains(body, "s3://"+tenantBucket)) {
			t.Errorf("forwarder health: %d %q, want 200 with Connected (and the bucket)", code, body)
		}
		// The outbound port is the task's own: loopback only.
		if c, err := g.dialer(g.lb)(context.Background(), "tcp", subnet+strconv.Itoa(taskOctet)+":4140"); err == nil {
			c.Close()
			t.Errorf("the load balancer's namespace reaches the task's :4140; want it refused (loopback only)")
		}
	})

	t.Run("secrets", func(t *testing.T) { testSecrets(t, g) })
	t.Run("speedctl forwarder", func(t *testing.T) { testSpeedctlForwarder(t, g) })
	t.Run("garbage", func(t *testing.T) { testGarbage(t, g) })
	t.Run("upstream resets", func(t *testing.T) { testUpstreamReset(t, g) })
	t.Run("forwarder killed during load", func(t *testing.T) { testForwarderKilled(t, g) })
	t.Run("hub down", func(t *testing.T) { testHubDown(t, g) })
	t.Run("CA rotated", func(t *testing.T) { testCARotation(t, g) })

	if !g.goproxy.running() {
		t.Errorf("goproxy exited during the faults: %v", g.goproxy.err)
	}
}

// rawExchange writes b to addr from namespace ns and returns what comes
// back until the peer closes or 5 s pass without a byte.
func (g *guide) rawExchange(t *testing.T, ns, addr string, b []byte) (reply string, closed bool) {
	t.Helper()
	c, err := g.dialer(ns)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write(b); err != nil {
		return "", true
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			ne, ok := err.(net.Error)
			return string(got), !(ok && ne.Timeout())
		}
	}
}

func testGarbage(t *testing.T, g *guide) {
	junk := make([]byte, 2048)
	rand.Read(junk)
	junk[0] = 0xff // neither an HTTP method, nor TLS, nor SOCKS
	task := subnet + strconv.Itoa(taskOctet)
	tests := []struct {
		name, ns, addr string
		send           []byte
		// want is the start of the reply; the connection must also close,
		// unless keepAlive: a well-formed request refused keeps it.
		want      string
		keepAlive bool
	}{
		// tcp:http relays what is not HTTP to the app as a byte stream: the
		// app's HTTP server refuses it.
		{"binary to :4143", g.lb, task + ":4143", junk, "HTTP/1.1 400 Bad Request", false},
		// HTTP that breaks the grammar is refused by goproxy itself.
		{"bad header line to :4143", g.lb, task + ":4143", []byte("GET /x HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n"), "HTTP/1.1 400 Bad Request", false},
		{"bad request line to :4143", g.lb, task + ":4143", []byte("GET /x HTTP/9.9 extra\r\n\r\n"), "HTTP/1.1 400 Bad Request", false},
		// :4140 is reached from inside the task only.
		{"binary to :4140", g.task, "127.0.0.1:4140", junk, "HTTP/1.1 400 Bad Request", false},
		{"origin-form request to :4140", g.task, "127.0.0.1:4140", []byte("GET /not-a-proxy-request HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 400 Bad Request", true},
		{"bad CONNECT to :4140", g.task, "127.0.0.1:4140", []byte("CONNECT :::: HTTP/1.1\r\nHost: ::::\r\n\r\n"), "HTTP/1.1 400 Bad Request", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, closed := g.rawExchange(t, tt.ns, tt.addr, tt.send)
			if !strings.HasPrefix(reply, tt.want) {
				t.Errorf("reply %q, want it to start with %q", first1(reply, 200), tt.want)
			}
			if closed == tt.keepAlive {
				t.Errorf("connection closed after the reply: %v, want %v", closed, !tt.keepAlive)
			}
		})
	}
	// goproxy is still there and serving, inbound and outbound.
	if !g.goproxy.running() {
		t.Fatalf("goproxy exited: %v", g.goproxy.err)
	}
	marker := "after-garbage-" + g.nonce
	if code, body := g.get(t, "/call?id="+marker); code != 200 {
		t.Errorf("after the garbage the app answered %d %q, want 200", code, body)
	}
	g.waitHub(t, marker, []string{marker}, 30*time.Second)
}

func first1(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func testUpstreamReset(t *testing.T, g *guide) {
	marker := "reset-" + g.nonce
	before := g.upstream.count("/reset")
	code, body := g.get(t, "/call?path=/reset&id="+marker)
	if code != http.StatusBadGateway {
		t.Errorf("the app answered %d %q, want 502: goproxy's answer to a reset upstream, passed on", code, body)
	}
	if g.upstream.count("/reset") == before {
		t.Errorf("the upstream saw no /reset request: the reset was not the upstream's")
	}
	got := g.waitHub(t, marker, []string{marker}, 30*time.Second)
	out := got["out"][marker]
	checkGuideRecord(t, out)
	if out.Error == "" || out.Record.Error == "" {
		t.Errorf("outbound record of the reset call has no error: %+v", out)
	} else if !strings.Contains(out.Record.Error, "connection reset by peer") {
		t.Errorf("outbound record error %q, want it to say the connection was reset", out.Record.Error)
	}
	if in := got["in"][marker]; in.Status != http.StatusBadGateway {
		t.Errorf("inbound record status %d, want the 502 the load balancer got", in.Status)
	}
	// The next call is fine: goproxy did not keep the broken connection.
	if code, _ := g.get(t, "/call?id=after-"+marker); code != 200 {
		t.Errorf("the call after the reset got %d, want 200", code)
	}
}

func (u *upstream) count(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.counts[path]
}

// testForwarderKilled: kill -9 the forwarder in the middle of a bounded
// load from four clients, start it again on the same spool. The app sees no
// failure, and every record reaches the hub: goproxy held them in its
// bounded queue while the forwarder was away (none were dropped at this
// volume), and the forwarder had spooled what it acknowledged.
func testForwarderKilled(t *testing.T, g *guide) {
	// About 80 requests a second, on until 80 have started after the
	// forwarder's restart (however long that took on a loaded machine; at
	// most maxN); the forwarder is down for 3 s of them, long enough for
	// goproxy's retries to back off.
	const killAt, clients, downFor, afterWant, maxN = 60, 4, 3 * time.Second, 80, 4000
	var (
		mu        sync.Mutex
		done      int
		markers   []string
		codes     []int
		started   []time.Time
		restarted time.Time
		afterN    int // requests started after restarted was set
	)
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range maxN {
			mu.Lock()
			enough := !restarted.IsZero() && afterN >= afterWant
			if !enough {
				markers = append(markers, fmt.Sprintf("fk-%s-%04d.", g.nonce, i))
				codes = append(codes, 0)
				started = append(started, time.Time{})
			}
			mu.Unlock()
			if enough {
				return
			}
			next <- i
		}
	}()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				mu.Lock()
				started[i] = time.Now()
				if !restarted.IsZero() {
					afterN++
				}
				marker := markers[i]
				mu.Unlock()
				code, _, err := g.tryGet("/call?id=" + marker)
				if err != nil {
					t.Errorf("request %d: %v", i, err)
				}
				mu.Lock()
				codes[i] = code
				done++
				mu.Unlock()
				time.Sleep(40 * time.Millisecond)
			}
		}()
	}
	// The controller: kill and restart the forwarder as the load goes on.
	completed := func() int { mu.Lock(); defer mu.Unlock(); return done }
	for completed() < killAt {
		time.Sleep(5 * time.Millisecond)
	}
	g.forwarder.kill(t, syscall.SIGKILL)
	t.Logf("forwarder killed after %d requests", completed())
	time.Sleep(downFor)
	g.world.start(g.forwarder)
	g.waitPort(t, g.forwarder, g.fwdNS, "127.0.0.1:8888")
	mu.Lock()
	restarted = time.Now()
	mu.Unlock()
	t.Logf("forwarder restarted after %d requests", completed())
	wg.Wait()

	var after []string
	for i, c := range codes {
		if c != 200 {
			t.Errorf("request %d got %d, want 200: the app must not see the forwarder's death", i, c)
		}
		if started[i].After(restarted) {
			after = append(after, markers[i])
		}
	}
	if len(after) == 0 {
		t.Fatalf("no request started after the forwarder's restart: the load ended too soon to test it")
	}
	// Records of requests made after the restart arrive; then all of them.
	g.waitHub(t, "fk-"+g.nonce, after, 60*time.Second)
	g.waitHub(t, "fk-"+g.nonce, markers, 30*time.Second)
	g.waitBucket(t, markers, 30*time.Second)
	h := g.goproxyHealth(t)
	if d := shipping(t, h, "dropped"); d != 0 {
		t.Errorf("goproxy dropped %d records; want none at this volume (the queue holds 16 MiB)", d)
	}
}

// testHubDown: the hub is away for a while (20 s, TAPWIRE_E2E_HUB_OUTAGE);
// the forwarder's health check says so, the app does not notice, the bucket
// keeps receiving, and the forwarder delivers what it spooled to the hub
// once the hub is back.
func testHubDown(t *testing.T, g *guide) {
	outage := hubOutage(t)
	g.hub.kill(t, syscall.SIGKILL)
	down := time.Now()
	// The guide's health check turns to Not connected.
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, body := g.forwarderHealth(t)
		if code == http.StatusServiceUnavailable && strings.Contains(body, "Not connected") && strings.Contains(body, "hub") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("with the hub down the forwarder's health says %d %q, want 503 Not connected naming the hub", code, body)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	var markers []string
	for i := 0; time.Since(down) < outage; i++ {
		m := fmt.Sprintf("hd-%s-%03d.", g.nonce, i)
		markers = append(markers, m)
		if code, body := g.get(t, "/call?id="+m); code != 200 {
			t.Errorf("request %d during the hub's outage got %d %q, want 200", i, code, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%d requests during %s without the hub", len(markers), time.Since(down).Round(time.Second))
	// Each sink has its own cursor: the bucket got the outage's records
	// while the hub was away. (60 s: one run on a loaded machine missed the
	// inbound half at 30 s; the delivery itself takes a second or two.)
	g.waitBucket(t, markers, 60*time.Second)
	g.world.start(g.hub)
	g.waitPort(t, g.hub, g.hubNS, "127.0.0.1:443")
	// The forwarder's backoff is at most 30 s.
	g.waitHub(t, "hd-"+g.nonce, markers, 60*time.Second)
	if code, body := g.forwarderHealth(t); code != 200 || !strings.Contains(body, "Connected") {
		t.Errorf("after the hub came back the forwarder's health says %d %q, want Connected", code, body)
	}
}

// leafVia opens a CONNECT tunnel through goproxy's :4140 from inside the
// task, as the app does, and returns the leaf goproxy presents for host.
func (g *guide) leafVia(t *testing.T, host string) *x509.Certificate {
	t.Helper()
	c, err := g.dialer(g.task)(context.Background(), "tcp", "127.0.0.1:4140")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", host, host)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", host, res, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake through goproxy for %s: %v", host, err)
	}
	return tc.ConnectionState().PeerCertificates[0]
}

func loadPool(t *testing.T, path string) (*x509.CertPool, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", path)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return p, c.Subject.String()
}

func verifies(leaf *x509.Certificate, host string, roots *x509.CertPool) bool {
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots})
	return err == nil
}

// testCARotation: a new CA, made with the guide's commands, replaces the
// old one in the task volume while goproxy runs; SIGHUP reloads it. A
// half-written rotation (new certificate, old key) is refused and the old
// CA kept; once both files are new, new leaves, also for hosts already
// cached, are the new CA's.
func testCARotation(t *testing.T, g *guide) {
	oldRoots, _ := loadPool(t, filepath.Join(g.volume, "tls.crt"))
	if leaf := g.leafVia(t, upstreamName); !verifies(leaf, upstreamName, oldRoots) {
		t.Fatalf("before the rotation the leaf for %s is not the CA's (issuer %q)", upstreamName, leaf.Issuer)
	}
	// The new CA, with the guide's commands, into the secrets.
	os.Remove(filepath.Join(g.secrets, "tls.crt"))
	os.Remove(filepath.Join(g.secrets, "tls.key"))
	testca.OpenSSLGuideCA(t, g.secrets)
	newRoots, _ := loadPool(t, filepath.Join(g.secrets, "tls.crt"))

	// Half written: the certificate is new, the key still old.
	g.initStep(t, ">", "tls.crt")
	g.goproxy.cmd.Process.Signal(syscall.SIGHUP)
	g.goproxy.waitLog(t, "CA reload failed: keeping the CA in use", 1, 10*time.Second)
	if leaf := g.leafVia(t, "rot1.upstream.test"); !verifies(leaf, "rot1.upstream.test", oldRoots) {
		t.Errorf("after a refused reload a new leaf is not the old CA's (issuer %q)", leaf.Issuer)
	}
	if code, body := g.get(t, "/call?id=half-"+g.nonce); code != 200 {
		t.Errorf("after a refused reload the app (trusting the old CA) got %d %q, want 200", code, body)
	}

	// Complete: the key too. Now new leaves are the new CA's, also for the
	// host goproxy had cached.
	g.initStep(t, ">", "tls.key")
	g.goproxy.cmd.Process.Signal(syscall.SIGHUP)
	g.goproxy.waitLog(t, "CA reloaded: new leaves are signed by it", 1, 10*time.Second)
	for _, host := range []string{upstreamName, "rot2.upstream.test"} {
		leaf := g.leafVia(t, host)
		if !verifies(leaf, host, newRoots) {
			t.Errorf("after the reload the leaf for %s is not the new CA's (issuer %q)", host, leaf.Issuer)
		}
		if verifies(leaf, host, oldRoots) {
			t.Errorf("after the reload the leaf for %s still verifies with the old CA", host)
		}
	}
	// The app read SSL_CERT_FILE when it started: it trusts only the old
	// CA. Its tunnel to api.upstream.test, open since before the reload,
	// keeps the old leaf and still works; a new tunnel gets a leaf of the
	// new CA, which it refuses, as docs/goproxy.md says. Restarted, it
	// reads the new CA and its calls are captured again.
	if code, body := g.get(t, "/call?id=stale-open-"+g.nonce); code != 200 {
		t.Errorf("the app's call over its tunnel opened before the reload got %d %q, want 200", code, body)
	}
	if code, body := g.get(t, "/call?host=rot2.upstream.test&id=stale-new-"+g.nonce); code != http.StatusBadGateway || !strings.Contains(body, "certificate") {
		t.Errorf("the app still trusting the old CA got %d %q on a new tunnel, want 502 with a certificate error", code, body)
	}
	g.app.kill(t, syscall.SIGTERM)
	g.world.start(g.app)
	g.waitPort(t, g.app, g.task, "127.0.0.1:8080")
	marker := "rotated-" + g.nonce
	if code, body := g.get(t, "/call?id="+marker); code != 200 {
		t.Fatalf("the restarted app got %d %q, want 200", code, body)
	}
	got := g.waitHub(t, marker, []string{marker}, 30*time.Second)
	checkGuideRecord(t, got["out"][marker])
	if h := g.goproxyHealth(t); h["ca"] == nil {
		t.Errorf("goproxy /healthz names no CA: %v", h)
	}
}
