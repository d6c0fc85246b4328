package hub

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/har"
	"github.com/tapwire/tapwire/internal/sink/file"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/store/storetest"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoad(t *testing.T) {
	var out bytes.Buffer
	c, err := Load(nil, env(nil), &out)
	if err != nil || c.Listen != DefaultListen || c.DataDir != DefaultDataDir || c.Retention != DefaultRetention ||
		c.MaxInFlight != 4 || c.Database != "" || c.SQLitePath() != filepath.Join(DefaultDataDir, "hub.db") {
		t.Errorf("defaults: %+v %v", c, err)
	}
	c, err = Load([]string{"-listen", ":9000", "-retention", "7d"}, env(map[string]string{
		"HUB_LISTEN": ":1", "HUB_DATA_DIR": "/d", "HUB_RETENTION": "off", "HUB_MAX_INFLIGHT": "9",
		"HUB_DATABASE_URL": "postgres://u:secret@db/tw", "LOG_LEVEL": "DEBUG",
	}), &out)
	if err != nil || c.Listen != ":9000" || c.DataDir != "/d" || c.Retention != 7*24*time.Hour || c.MaxInFlight != 9 || c.LogLevel != "debug" {
		t.Errorf("flags over env: %+v %v", c, err)
	}
	if d := c.describe(); strings.Contains(d, "secret") || !strings.Contains(d, "postgres://u:xxxxx@db/tw") {
		t.Errorf("describe %q shows the password", d)
	}
	if c, err := Load(nil, env(map[string]string{"HUB_RETENTION": "off"}), &out); err != nil || c.Retention >= 0 {
		t.Errorf("HUB_RETENTION=off: %v %v", c.Retention, err)
	}
	// Byte sizes take units, as goproxy's and the forwarder's do.
	if c, err := Load([]string{"-max-batch-bytes", "8MiB"}, env(map[string]string{"HUB_MAX_BATCH_BYTES": "64MiB"}), &out); err != nil || c.MaxBatchBytes != 8<<20 {
		t.Errorf("-max-batch-bytes 8MiB: %v %v", c.MaxBatchBytes, err)
	}
	if c, err := Load(nil, env(map[string]string{"HUB_MAX_BATCH_BYTES": "16MiB"}), &out); err != nil || c.MaxBatchBytes != 16<<20 {
		t.Errorf("HUB_MAX_BATCH_BYTES=16MiB: %v %v", c.MaxBatchBytes, err)
	}
	bad := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-listen", "8080"}, nil, "HUB_LISTEN"},
		{nil, map[string]string{"HUB_RETENTION": "soon"}, "HUB_RETENTION"},
		{nil, map[string]string{"HUB_RETENTION": "10s"}, "HUB_RETENTION"},
		{nil, map[string]string{"HUB_TLS_CERT": "c.pem"}, "HUB_TLS_KEY"},
		{nil, map[string]string{"HUB_DATABASE_URL": "mysql://x"}, "HUB_DATABASE_URL"},
		{nil, map[string]string{"HUB_MAX_INFLIGHT": "-1"}, "HUB_MAX_INFLIGHT"},
		{nil, map[string]string{"HUB_MAX_INFLIGHT": "x"}, "HUB_MAX_INFLIGHT"},
		{nil, map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{nil, map[string]string{"HUB_MAX_BATCH_BYTES": "lots"}, "HUB_MAX_BATCH_BYTES"},
		{[]string{"extra"}, nil, "unexpected argument"},
	}
	for _, tc := range bad {
		if _, err := Load(tc.args, env(tc.env), &out); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%v, %v): %v, want an error naming %s", tc.args, tc.env, err, tc.want)
		}
	}
	out.Reset()
	if _, err := Load([]string{"-help"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-help: %v", err)
	}
	for _, want := range []string{"POST /v1/batches", "/api/v1/records", "keys create", "HUB_DATABASE_URL", "HUB_RETENTION", "import",
		"(default 30d) [$HUB_RETENTION]", "(default 32MiB) [$HUB_MAX_BATCH_BYTES]",
		"-retention duration\n", "-max-batch-bytes size\n", "-max-inflight n\n", "-db DSN\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`(?m)^  -\S+ (value|string)$`).FindAllString(out.String(), -1); m != nil {
		t.Errorf("flags without a named placeholder: %q", m)
	}
}

// TestServe: the first start prints two keys that work; a second start
// prints none; Serve stops cleanly on cancel, closing the store, without
// leaking goroutines.
func TestServe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	serve := func() (*hub, func() error) {
		hb, err := New(Config{DataDir: dir, Listen: "127.0.0.1:0"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		PrintFirstKeys(&out, hb.FirstKeys)
		c, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- hb.Serve(c) }()
		// Wait until it answers.
		h := &hub{t: t, url: "http://" + hb.Addr().String()}
		for i := 0; h.get("", "/healthz", nil) != 200 && i < 100; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		h.store = hb.store
		stop := func() error {
			cancel()
			return <-done
		}
		h.keys = map[string]string{}
		for _, m := range regexp.MustCompile(`(ingest|read|admin) key .*:\s+(tw_\S+)`).FindAllStringSubmatch(out.String(), -1) {
			h.keys[m[1]] = m[2]
		}
		return h, stop
	}
	h, stop := serve()
	if len(h.keys) != 3 {
		t.Fatalf("first start printed keys %v, want an ingest, a read and an admin key", h.keys)
	}
	rec := storetest.Rec(1, "s", "in", "GET", "http://s/", 200)
	if _, resp := h.post(h.keys["ingest"], []*capture.Record{rec}); resp.StatusCode != 200 {
		t.Fatalf("post with the first ingest key: %d", resp.StatusCode)
	}
	if p := h.list(h.keys["read"], ""); len(p.Items) != 1 || p.Items[0].ID != rec.ID {
		t.Errorf("list with the first read key: %v", pageIDs(p))
	}
	h.mustDo(201, "POST", h.keys["admin"], "/api/v1/tenants", `{"id": "acme"}`, nil)
	if code := h.get(h.keys["admin"], "/api/v1/records", nil); code != 403 {
		t.Errorf("list with the first admin key: %d, want 403", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	h, stop = serve()
	if len(h.keys) != 0 {
		t.Errorf("second start printed keys %v", h.keys)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestAdmin: the tenants, keys and import commands on a SQLite store.
func TestAdmin(t *testing.T) {
	dir := t.TempDir()
	e := env(map[string]string{"HUB_DATA_DIR": dir})
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := Main(ctx, args, e, &out, &errb)
		return out.String(), errb.String(), code
	}
	must := func(args ...string) string {
		t.Helper()
		out, errs, code := run(args...)
		if code != 0 {
			t.Fatalf("hub %v: exit %d: %s", args, code, errs)
		}
		return out
	}
	must("tenants", "create", "acme", "-name", "Acme Inc.")
	if out := must("tenants", "list"); !strings.Contains(out, "acme") || !strings.Contains(out, "Acme Inc.") {
		t.Errorf("tenants list: %q", out)
	}
	if _, errs, code := run("tenants", "create", "acme"); code != 1 || !strings.Contains(errs, "exists") {
		t.Errorf("tenants create twice: %d %q", code, errs)
	}
	if _, _, code := run("tenants", "create", "Not OK"); code != 2 {
		t.Errorf("tenants create with a bad id: exit %d, want 2", code)
	}
	key := strings.TrimSpace(must("keys", "create", "-tenant", "acme", "-role", "read", "-name", "alice"))
	if keyID(key) == "" {
		t.Fatalf("keys create printed %q, not a key", key)
	}
	if _, errs, code := run("keys", "create", "-tenant", "nobody", "-role", "read"); code != 1 || !strings.Contains(errs, "no tenant") {
		t.Errorf("keys create for a missing tenant: %d %q", code, errs)
	}
	if _, _, code := run("keys", "create", "-tenant", "acme", "-role", "owner"); code != 2 {
		t.Errorf("keys create with a bad role: exit %d, want 2", code)
	}
	// An admin key for a store made before the role existed.
	out, errs, code := run("keys", "create", "-tenant", "acme", "-role", "admin")
	admin := strings.TrimSpace(out)
	if code != 0 || keyID(admin) == "" || !strings.Contains(errs, "created an admin key for tenant acme") {
		t.Fatalf("keys create -role admin: exit %d, printed %q and %q; want a key", code, admin, errs)
	}
	if out := must("keys", "list"); !strings.Contains(out, keyID(admin)) || !strings.Contains(out, "admin") {
		t.Errorf("keys list: %q, want the admin key", out)
	}
	if out := must("keys", "list", "-tenant", "acme"); !strings.Contains(out, keyID(key)) || !strings.Contains(out, "alice") || strings.Contains(out, key) {
		t.Errorf("keys list: %q (must show the id and never the key)", out)
	}
	must("keys", "revoke", keyID(key))
	st, err := sqlite.Open(ctx, filepath.Join(dir, "hub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := st.Key(ctx, keyID(key)); err != nil || k.Revoked.IsZero() {
		t.Errorf("after revoke: %+v %v", k, err)
	}
	st.Close()

	// Import: a directory of the file sink's records and the vendor's sample.
	recDir := filepath.Join(dir, "records")
	fs, err := file.New(recDir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*capture.Record
	for i := range 5 {
		recs = append(recs, storetest.Rec(i, "s", "in", "GET", "http://s/", 200))
	}
	if err := fs.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	fs.Close()
	vendor := filepath.Join("..", "format", "raw", "testdata", "dynamodb-raw.jsonl")
	out = must("import", "-tenant", "acme", recDir, vendor)
	if !strings.Contains(out, "imported 50 records (50 new) from 2 files") {
		t.Errorf("import: %q", out)
	}
	if out := must("import", recDir, "-tenant", "acme"); !strings.Contains(out, "imported 5 records (0 new)") {
		t.Errorf("import again: %q", out)
	}
	if _, errs, code := run("import", "-tenant", "nobody", recDir); code != 1 || !strings.Contains(errs, "no tenant") {
		t.Errorf("import to a missing tenant: %d %q", code, errs)
	}
	// A HAR file too: three new records, then the same again, nothing new.
	harPath := filepath.Join(dir, "three.har")
	var hb bytes.Buffer
	hw := har.NewWriter(&hb, har.Creator{Name: "test", Version: "1"})
	for i := range 3 {
		if err := hw.Write(storetest.Rec(100+i, "web", "out", "POST", "https://api.example.com/v1/x", 201)); err != nil {
			t.Fatal(err)
		}
	}
	if err := hw.Close(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(harPath, hb.Bytes(), 0o600)
	if out := must("import", "-tenant", "acme", harPath); !strings.Contains(out, "imported 3 records (3 new) from 1 files") {
		t.Errorf("import of a HAR: %q", out)
	}
	if out := must("import", "-tenant", "acme", harPath); !strings.Contains(out, "imported 3 records (0 new)") {
		t.Errorf("import of a HAR again: %q", out)
	}
	// A vendor Markdown recording: a directory of .md files beside metadata.
	md := filepath.Join("..", "format", "markdown", "testdata", "recorded-2026-06-25_18-18-27")
	if out := must("import", "-tenant", "acme", md); !strings.Contains(out, "imported 4 records (4 new) from 1 files") {
		t.Errorf("import of a Markdown recording: %q", out)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"schema\":1}\n"), 0o600)
	if _, errs, code := run("import", "-tenant", "acme", bad); code != 1 || !strings.Contains(errs, "bad.jsonl") {
		t.Errorf("import of a bad file: %d %q", code, errs)
	}
	st, err = sqlite.Open(ctx, filepath.Join(dir, "hub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	st.Scan(ctx, "acme", store.Filter{}, func(*store.Row) error { n++; return nil })
	if n != 57 { // the sink's 5, the vendor's 45, the HAR's 3, the recording's 4
		t.Errorf("acme has %d records, want 57", n)
	}
	p, _ := st.List(ctx, "acme", store.Query{Limit: 1, Full: true, Filter: store.Filter{Service: "s"}})
	if len(p.Items) != 1 || p.Items[0].Record.Labels.Tenant != "acme" {
		t.Errorf("imported record not stamped with its tenant: %+v", p.Items)
	}

	for _, args := range [][]string{{"frobnicate"}, {"keys"}, {"keys", "rotate"}, {"tenants", "list", "-bogus"}} {
		if _, _, code := run(args...); code != 2 {
			t.Errorf("hub %v: exit %d, want 2", args, code)
		}
	}
	if _, errs, code := run("help"); code != 0 || !strings.Contains(errs, "keys create") {
		t.Errorf("hub help: %d %q", code, errs)
	}
}

// TestRetain: the retention loop deletes the records older than the
// retention, of every tenant, and keeps the others.
func TestRetain(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old := storetest.Rec(1, "s", "in", "GET", "http://s/old", 200) // in 2025
	young := storetest.Rec(1, "s", "in", "GET", "http://s/young", 200)
	young.Start = time.Now().Add(-time.Minute)
	for _, tenant := range []string{"a", "b"} {
		if _, err := st.Insert(ctx, tenant, []*capture.Record{old, young}); err != nil {
			t.Fatal(err)
		}
	}
	c, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { retain(c, st, time.Hour, time.Millisecond, slog.New(slog.DiscardHandler)); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, tenant := range []string{"a", "b"} {
			st.Scan(ctx, tenant, store.Filter{}, func(*store.Row) error { n++; return nil })
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records left after retention, want the 2 young ones", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	for _, tenant := range []string{"a", "b"} {
		if _, err := st.Get(ctx, tenant, young.ID); err != nil {
			t.Errorf("tenant %s lost its young record: %v", tenant, err)
		}
	}
}

// TestShutdown: Shutdown stops a Serve whose context is still live, and a
// Hub that is never served releases its store and listener with Close.
func TestShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	hb, err := New(Config{DataDir: dir, Listen: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- hb.Serve(context.Background()) }()
	h := &hub{t: t, url: "http://" + hb.Addr().String()}
	for i := 0; h.get("", "/healthz", nil) != 200 && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hb.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve after Shutdown = %v, want nil", err)
	}
	// The store was closed: a second hub opens the same directory.
	hb2, err := New(Config{DataDir: dir, Listen: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatalf("New on the same directory after Shutdown: %v", err)
	}
	if hb2.FirstKeys.Ingest != "" {
		t.Errorf("second New made first keys again")
	}
	if err := hb2.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := New(Config{DataDir: dir, Listen: "256.0.0.1:1"}, nil); err == nil {
		t.Errorf("New with a bad listen address = nil error")
	}
}
