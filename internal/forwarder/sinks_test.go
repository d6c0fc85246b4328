package forwarder

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/sink/s3"
	"github.com/tapwire/tapwire/internal/tests3"
	"github.com/tapwire/tapwire/internal/wire"
	"github.com/tapwire/tapwire/internal/wire/wiretest"
)

// waitFor polls cond every 10ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func health(t *testing.T, addr string) (int, string) {
	t.Helper()
	return get(t, "http://"+addr+"/")
}

// TestHubDownThenBack: while the hub answers 503 the batches are
// acknowledged and wait in the spool, health says why; when it is back the
// backlog drains, each record once after the hub's de-duplication, and
// the directory sink was never held up.
func TestHubDownThenBack(t *testing.T) {
	h := wiretest.New(t)
	h.RequireToken("key-1")
	var down atomic.Bool
	down.Store(true)
	h.Refuse(func(*http.Request, int) *wire.ServerError {
		if down.Load() {
			return &wire.ServerError{Status: http.StatusServiceUnavailable, Message: "hub maintenance", Wait: time.Second}
		}
		return nil
	})
	f := start(t, Config{HubURL: h.Server.URL, APIKey: "key-1", Dir: filepath.Join(t.TempDir(), "records")})
	client := newClient(t, f.addr, "")
	var sent []*capture.Record
	for range 5 {
		recs := httpRecords(20, 100)
		if err := client.Write(context.Background(), recs); err != nil {
			t.Fatalf("Write while the hub is down: %v, want it spooled", err)
		}
		sent = append(sent, recs...)
	}
	if got := waitDir(t, f.dir, len(sent)); len(got) != len(sent) {
		t.Errorf("directory sink got %d records while the hub was down, want %d", len(got), len(sent))
	}
	waitFor(t, 10*time.Second, "a failed hub delivery", func() bool { return f.srv.Stats().Sinks["hub"].Failures > 0 })
	code, body := health(t, f.addr)
	if code != 503 || !strings.Contains(body, "hub: ") || !strings.Contains(body, "hub maintenance") {
		t.Errorf("health while the hub is down: %d %q, want 503 naming the hub", code, body)
	}
	if st := f.srv.Stats().Sinks["hub"]; st.PendingBytes == 0 || st.Delivered != 0 {
		t.Errorf("hub stats %+v, want the backlog pending", st)
	}

	down.Store(false)
	got := h.WaitRecords(t, len(sent), 15*time.Second)
	ids := map[string]bool{}
	for _, r := range got {
		ids[r.ID] = true
	}
	for _, r := range sent {
		if !ids[r.ID] {
			t.Fatalf("record %s never reached the hub", r.ID)
		}
	}
	waitFor(t, 5*time.Second, "the hub's pending bytes to reach 0", func() bool { return f.srv.Stats().Sinks["hub"].PendingBytes == 0 })
	if code, body := health(t, f.addr); code != 200 || !strings.Contains(body, "Connected: ") || !strings.Contains(body, "hub "+h.Server.URL) {
		t.Errorf("health after recovery: %d %q", code, body)
	}
	if st := f.srv.Stats().Sinks["hub"]; st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("hub stats %+v, want nothing failed or dropped", st)
	}
	_, metrics := get(t, "http://"+f.addr+"/metrics")
	for _, want := range []string{`forwarder_sink_records_delivered_total{sink="hub"} 100`, `forwarder_sink_pending_bytes{sink="hub"} 0`,
		`forwarder_sink_lag_seconds{sink="hub"} 0`, `forwarder_records_received_total 100`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestHubWrongKey: a 401 is a configuration fault, not a bad batch: the
// records stay in the spool and health says so.
func TestHubWrongKey(t *testing.T) {
	h := wiretest.New(t)
	h.RequireToken("right")
	f := start(t, Config{HubURL: h.Server.URL, APIKey: "wrong", ShutdownTimeout: 100 * time.Millisecond})
	if code, body := health(t, f.addr); code != 503 || !strings.Contains(body, "401") {
		t.Errorf("health with a wrong key: %d %q, want 503 with the 401", code, body)
	}
	if err := newClient(t, f.addr, "").Write(context.Background(), httpRecords(3, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a refused delivery", func() bool { return f.srv.Stats().Sinks["hub"].Failures > 0 })
	if st := f.srv.Stats().Sinks["hub"]; st.Failed != 0 || st.PendingBytes == 0 {
		t.Errorf("hub stats %+v: want the records kept in the spool, none dropped", st)
	}
}

// TestSpoolFullCountsLoss: with the hub away and a small spool, the
// oldest records are dropped, counted and the spool stays in its bound;
// when the hub is back, delivered + dropped = spooled.
func TestSpoolFullCountsLoss(t *testing.T) {
	h := wiretest.New(t)
	var down atomic.Bool
	down.Store(true)
	h.Refuse(func(*http.Request, int) *wire.ServerError {
		if down.Load() {
			return wire.Errorf(http.StatusBadGateway, "away")
		}
		return nil
	})
	const bound = 256 << 10
	f := start(t, Config{HubURL: h.Server.URL, APIKey: "k", MaxBatchBytes: 64 << 10, SpoolBytes: bound, SpoolSegmentBytes: 64 << 10,
		ShutdownTimeout: time.Second})
	client := newClient(t, f.addr, "")
	for range 40 { // ~1 MiB of records into a 256 KiB spool
		if err := client.Write(context.Background(), httpRecords(10, 1500)); err != nil {
			t.Fatal(err)
		}
		if b := f.srv.Stats().SpoolBytes; b > bound {
			t.Fatalf("spool holds %d bytes, bound %d", b, bound)
		}
	}
	st := f.srv.Stats()
	if st.Sinks["hub"].Dropped == 0 {
		t.Fatalf("stats %+v: want records dropped by the bound", st.Sinks["hub"])
	}
	down.Store(false)
	waitFor(t, 15*time.Second, "the backlog to drain", func() bool { return f.srv.Stats().Sinks["hub"].PendingBytes == 0 })
	st = f.srv.Stats()
	hs := st.Sinks["hub"]
	if hs.Delivered+hs.Dropped != st.Spooled || hs.Delivered == 0 {
		t.Errorf("delivered %d + dropped %d != spooled %d", hs.Delivered, hs.Dropped, st.Spooled)
	}
	t.Logf("spooled %d records, delivered %d, dropped %d (oldest first)", st.Spooled, hs.Delivered, hs.Dropped)
	_, metrics := get(t, "http://"+f.addr+"/metrics")
	if !strings.Contains(metrics, `forwarder_sink_records_dropped_total{sink="hub"}`) {
		t.Errorf("metrics lack the dropped counter")
	}
}

// TestBucketDownThenBack runs the bucket sink against a real MinIO that
// goes away and comes back: the backlog drains into the bucket.
func TestBucketDownThenBack(t *testing.T) {
	srv := tests3.Start(t)
	bucket := srv.NewBucket(t)
	// The SDK's usual credential chain: the environment.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	f := start(t, Config{Bucket: bucket, Region: tests3.Region, BucketEndpoint: srv.Endpoint, TenantID: "tenant-1", Cluster: "ecs"})
	if code, body := health(t, f.addr); code != 200 || !strings.Contains(body, "bucket s3://"+bucket) {
		t.Fatalf("health: %d %q", code, body)
	}
	client := newClient(t, f.addr, "")
	first := httpRecords(30, 200)
	if err := client.Write(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first batch in the bucket", func() bool { return f.srv.Stats().Sinks["bucket"].Delivered == 30 })

	srv.Stop(t)
	second := httpRecords(30, 200)
	if err := client.Write(context.Background(), second); err != nil {
		t.Fatalf("Write while MinIO is down: %v, want it spooled", err)
	}
	waitFor(t, 20*time.Second, "a failed bucket delivery", func() bool { return f.srv.Stats().Sinks["bucket"].Failures > 0 })
	if code, body := health(t, f.addr); code != 503 || !strings.Contains(body, "bucket: ") {
		t.Errorf("health while MinIO is down: %d %q", code, body)
	}
	srv.Restart(t)
	waitFor(t, 40*time.Second, "the backlog in the bucket", func() bool { return f.srv.Stats().Sinks["bucket"].Delivered == 60 })

	reader, err := s3.New(context.Background(), s3.Options{Bucket: bucket, Region: tests3.Region, Endpoint: srv.Endpoint, PathStyle: true, Credentials: srv.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := reader.List(context.Background(), "tenant-1", "ecs", "notifications", time.Now().Add(-time.Hour), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if err := reader.ReadObject(context.Background(), k, func(r *capture.Record) error { seen[r.ID] = true; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range append(first, second...) {
		if !seen[r.ID] {
			t.Fatalf("record %s not in the bucket (keys %v)", r.ID, keys)
		}
	}
}
