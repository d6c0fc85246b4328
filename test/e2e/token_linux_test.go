package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/ecs"
)

// testSpeedctlForwarder runs a second forwarder in a namespace of its own
// with exactly the environment `speedctl ecs forwarder` writes into its
// task definition (ecs.NewForwarder, from a config holding a
// FORWARDER_TOKEN as speedctl generates it), pointed at the same hub, and
// posts batches to it from other namespaces: without the token and with a
// wrong one it answers 401 and the hub never sees the record; with the
// token it answers 200 and the record reaches the hub.
func testSpeedctlForwarder(t *testing.T, g *guide) {
	token, err := ecs.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]string{
		"SPEEDSCALE_APP_URL": hubName, "SPEEDSCALE_API_KEY": g.ingestKey, "TENANT_ID": tenantID,
		"TENANT_NAME": tenantBucket, "SUB_TENANT_NAME": "default", "CLUSTER_NAME": "ecs", ecs.TokenKey: token,
	}
	f, _, err := ecs.NewForwarder(ecs.ForwarderOptions{Config: func(k string) string { return cfg[k] }})
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	defs := f.TaskDefinition.Array("containerDefinitions")
	if len(defs) != 1 {
		t.Fatalf("speedctl's forwarder task definition has %d containers, want 1", len(defs))
	}
	for _, e := range defs[0].(*ecs.Object).Array("environment") {
		o := e.(*ecs.Object)
		env = append(env, o.String("name")+"="+o.String("value"))
	}
	if !slices.Contains(env, ecs.TokenKey+"="+token) {
		t.Fatalf("speedctl's forwarder environment %q lacks the config's FORWARDER_TOKEN", env)
	}
	// The hub's test CA, as for the guide's forwarder.
	env = append(env, "SSL_CERT_FILE="+g.hubCAFile)

	ns := g.host("sfwd", sfwdOctet, subnet+strconv.Itoa(hubOctet)+"\t"+hubName)
	dir := filepath.Join(g.tmp, "forwarder-speedctl")
	os.MkdirAll(dir, 0o755)
	p := &proc{name: "forwarder (speedctl)", ns: ns, argv: []string{filepath.Join(g.bin, "forwarder")}, dir: dir, env: env}
	g.start(p)
	defer p.kill(t, syscall.SIGTERM)
	g.waitPort(t, p, ns, "127.0.0.1:8888")
	defer func() {
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, tail(p.logs(), 40))
		}
	}()
	addr := subnet + strconv.Itoa(sfwdOctet) + ":8888"

	tests := []struct {
		name, from, auth string
		want             int
	}{
		{"no token, from the load balancer's namespace", g.lb, "", http.StatusUnauthorized},
		{"no token, from the task's namespace", g.task, "", http.StatusUnauthorized},
		{"a wrong token", g.task, "Bearer " + token[:len(token)-2] + "xx", http.StatusUnauthorized},
		{"another scheme with the token", g.task, "Basic " + token, http.StatusUnauthorized},
		{"the token, from the load balancer's namespace", g.lb, "Bearer " + token, http.StatusOK},
	}
	var refused []string
	var accepted string
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			marker := fmt.Sprintf("forged-%s-%d", g.nonce, i)
			code, body := g.postBatch(t, tt.from, addr, tt.auth, marker)
			if code != tt.want {
				t.Errorf("POST /v1/batches: %d %s, want %d", code, body, tt.want)
			}
			if tt.want == http.StatusOK {
				accepted = marker
			} else {
				refused = append(refused, marker)
			}
		})
	}
	// The accepted record reaches the hub; by then, had a refused one been
	// spooled, it would have too (one spool, one delivery loop, in order).
	for deadline := time.Now().Add(30 * time.Second); accepted != ""; time.Sleep(250 * time.Millisecond) {
		recs, err := g.hubRecords(t, accepted)
		if err == nil && len(recs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the batch speedctl's forwarder accepted did not reach the hub within 30 s: %v", err)
		}
	}
	for _, m := range refused {
		if recs, err := g.hubRecords(t, m); err != nil || len(recs) > 0 {
			t.Errorf("the hub holds %d records of the refused batch %s (%v), want none", len(recs), m, err)
		}
	}
	// Authenticated, it says nothing of UNAUTHENTICATED; the guide's
	// forwarder, without a token, does and stays Connected.
	if code, body := g.healthOf(t, ns); code != 200 || !strings.Contains(body, "Connected") || strings.Contains(body, "UNAUTHENTICATED") {
		t.Errorf("speedctl's forwarder health: %d %q, want 200 Connected without UNAUTHENTICATED", code, body)
	}
	if code, body := g.forwarderHealth(t); code != 200 || !strings.Contains(body, "Connected") || !strings.Contains(body, "UNAUTHENTICATED") {
		t.Errorf("the guide's forwarder health: %d %q, want 200 Connected and UNAUTHENTICATED", code, body)
	}
}

// postBatch posts a batch of one well-formed record whose URL holds marker
// to addr from namespace ns, with the Authorization header auth (none if
// empty), as a goproxy of protocol 1 would.
func (g *guide) postBatch(t *testing.T, ns, addr, auth, marker string) (int, string) {
	t.Helper()
	start := time.Now().UTC()
	rec := &capture.Record{
		Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirOut,
		Start: start, Labels: capture.Labels{Service: "forged", Namespace: "ecs"},
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: "GET", URL: "https://forged.test/x?id=" + marker, Proto: "HTTP/1.1", Host: "forged.test"},
			Res: &capture.Response{Status: 200, Proto: "HTTP/1.1"},
		},
	}
	line, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/batches", strings.NewReader(string(line)+"\n"))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Tapwire-Protocol", "1")
	req.Header.Set("Tapwire-Batch-Id", capture.NewID())
	req.Header.Set("Tapwire-Records", "1")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: g.dialer(ns)}}
	defer c.CloseIdleConnections()
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST a batch to %s from %s: %v", addr, ns, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
