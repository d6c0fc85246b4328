package s3

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/sink/sinktest"
	"github.com/tapwire/tapwire/internal/tests3"
	"github.com/tapwire/tapwire/internal/wire"
)

func newSink(t *testing.T, srv *tests3.Server, prefix string) *Sink {
	t.Helper()
	s, err := New(context.Background(), Options{Bucket: srv.NewBucket(t), Region: tests3.Region, Endpoint: srv.Endpoint,
		PathStyle: true, Prefix: prefix, Credentials: srv.Credentials(), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readAll reads every object of the sink's bucket.
func readAll(t *testing.T, s *Sink) []*capture.Record {
	t.Helper()
	keys, err := s.AllKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []*capture.Record
	for _, k := range keys {
		if err := s.ReadObject(context.Background(), k, func(r *capture.Record) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func TestConformance(t *testing.T) {
	srv := tests3.Start(t)
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		s := newSink(t, srv, "")
		return sinktest.Target{Sink: s, ExactlyOnce: true, Read: func(t *testing.T) []*capture.Record { return readAll(t, s) }}
	})
}

func TestKeyLayoutAndList(t *testing.T) {
	srv := tests3.Start(t)
	s := newSink(t, srv, "raw/")
	recs := sinktest.Records(6, 10)
	h0 := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	for i, r := range recs {
		r.Start = h0.Add(time.Duration(i%2) * time.Minute) // 23:59 and 00:00 the next day
		if i >= 4 {
			r.Labels.Service = "cart/v2"
			r.Labels.Cluster = ""
		}
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	keys, err := s.AllKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	layout := regexp.MustCompile(`^raw/t-1/(ecs|_)/(orders|cart%2Fv2)/2026-03-0[12]/(23|00)/[0-9a-f-]{36}\.jsonl\.zst$`)
	if len(keys) != 4 {
		t.Errorf("keys %v, want 4 (2 services × 2 hours)", keys)
	}
	for _, k := range keys {
		if !layout.MatchString(k) {
			t.Errorf("key %q does not follow PREFIX/TENANT/CLUSTER/SERVICE/DATE/HOUR/BATCH.jsonl.zst", k)
		}
	}
	// Objects are zstd JSON lines whose name is their records' batch id.
	var orders2359 []*capture.Record
	for _, r := range recs[:4] {
		if r.Start.Hour() == 23 {
			orders2359 = append(orders2359, r)
		}
	}
	want := "raw/t-1/ecs/orders/2026-03-01/23/" + wire.BatchID(orders2359) + Suffix
	got, err := s.List(context.Background(), "t-1", "ecs", "orders", h0, h0)
	if err != nil || len(got) != 1 || got[0] != want {
		t.Errorf("List one hour = %v, %v; want [%s]", got, err, want)
	}
	all, err := s.List(context.Background(), "t-1", "", "", h0, h0.Add(time.Hour))
	if err != nil || len(all) != 4 {
		t.Errorf("List all services over two hours = %v, %v; want 4 keys", all, err)
	}
	if err := s.Probe(context.Background()); err != nil {
		t.Errorf("Probe: %v", err)
	}
}

func TestProbeAndWriteFail(t *testing.T) {
	srv := tests3.Start(t)
	s, err := New(context.Background(), Options{Bucket: "no-such-bucket", Region: tests3.Region, Endpoint: srv.Endpoint,
		PathStyle: true, Credentials: srv.Credentials(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(context.Background()); err == nil {
		t.Errorf("Probe of a missing bucket: nil error")
	}
	err = s.Write(context.Background(), sinktest.Records(1, 1))
	var perm *capture.PermanentError
	if err == nil || errorsAs(err, &perm) {
		t.Errorf("Write to a missing bucket: %v, want a retryable error", err)
	}
	if !strings.Contains(s.URL(), "s3://no-such-bucket") {
		t.Errorf("URL %q", s.URL())
	}
}

func TestKeyPart(t *testing.T) {
	for in, want := range map[string]string{"": "_", "orders": "orders", "a/b": "a%2Fb", "..": "%2E%2E", "ü": "%C3%BC", "x y": "x%20y"} {
		if got := KeyPart(in); got != want {
			t.Errorf("KeyPart(%q) = %q, want %q", in, got, want)
		}
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
