// Package sinktest is the conformance suite that every sink the forwarder
// delivers to runs: the directory (internal/sink/file), the bucket
// (internal/sink/s3, against a real MinIO) and the hub (internal/sink/hub).
// Each implementation's test calls Run with a constructor and a way to read
// back what was delivered.
package sinktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

// Target is one sink under test and how to read what it delivered.
type Target struct {
	Sink capture.Sink
	// Read returns every record delivered so far, in any order,
	// duplicates included (delivery is at least once).
	Read func(t *testing.T) []*capture.Record
	// ExactlyOnce says a repeated Write of the same batch is stored once
	// (the bucket overwrites the same object); otherwise the suite only
	// requires that de-duplicating by id gives each record once.
	ExactlyOnce bool
	// Stamp, if not nil, applies the sink's own documented changes to a
	// written record before it is compared with what was read (the hub
	// sets labels.tenant from the API key).
	Stamp func(*capture.Record)
}

// Run runs the suite; newTarget returns a fresh, empty sink for each
// subtest.
func Run(t *testing.T, newTarget func(t *testing.T) Target) {
	t.Run("RoundTrip", func(t *testing.T) {
		tg := newTarget(t)
		a, b := Records(5, 300), Records(3, 0)
		for _, batch := range [][]*capture.Record{a, b} {
			if err := tg.Sink.Write(context.Background(), batch); err != nil {
				t.Fatalf("Write: %v", err)
			}
		}
		expect(t, tg.Read(t), stamp(tg, append(a, b...)), false)
	})
	t.Run("RetryIsHarmless", func(t *testing.T) {
		tg := newTarget(t)
		batch := Records(4, 100)
		for range 2 {
			if err := tg.Sink.Write(context.Background(), batch); err != nil {
				t.Fatalf("Write: %v", err)
			}
		}
		expect(t, tg.Read(t), stamp(tg, batch), tg.ExactlyOnce)
	})
	t.Run("EmptyBatch", func(t *testing.T) {
		tg := newTarget(t)
		if err := tg.Sink.Write(context.Background(), nil); err != nil {
			t.Fatalf("Write(nil): %v", err)
		}
		if got := tg.Read(t); len(got) != 0 {
			t.Errorf("an empty batch delivered %d records", len(got))
		}
	})
	t.Run("LargeBatch", func(t *testing.T) {
		tg := newTarget(t)
		batch := Records(2000, 1024) // about 4 MiB of JSON
		if err := tg.Sink.Write(context.Background(), batch); err != nil {
			t.Fatalf("Write: %v", err)
		}
		expect(t, tg.Read(t), stamp(tg, batch), false)
	})
	t.Run("ManyServicesAndHours", func(t *testing.T) {
		tg := newTarget(t)
		batch := Records(12, 10)
		for i, r := range batch {
			r.Labels.Service = fmt.Sprintf("svc-%d", i%3)
			r.Start = r.Start.Add(time.Duration(i%2) * time.Hour)
		}
		if err := tg.Sink.Write(context.Background(), batch); err != nil {
			t.Fatalf("Write: %v", err)
		}
		expect(t, tg.Read(t), stamp(tg, batch), false)
	})
	t.Run("Close", func(t *testing.T) {
		tg := newTarget(t)
		batch := Records(2, 10)
		if err := tg.Sink.Write(context.Background(), batch); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := tg.Sink.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		expect(t, tg.Read(t), stamp(tg, batch), false)
	})
}

// stamp applies tg.Stamp to copies of recs (after they were written).
func stamp(tg Target, recs []*capture.Record) []*capture.Record {
	if tg.Stamp == nil {
		return recs
	}
	out := make([]*capture.Record, len(recs))
	for i, r := range recs {
		c := *r
		tg.Stamp(&c)
		out[i] = &c
	}
	return out
}

// expect checks that got holds want: every record, member for member;
// once each when exact, else once each after de-duplication by id.
func expect(t *testing.T, got, want []*capture.Record, exact bool) {
	t.Helper()
	byID := map[string][]*capture.Record{}
	for _, r := range got {
		byID[r.ID] = append(byID[r.ID], r)
	}
	for _, w := range want {
		rs := byID[w.ID]
		if len(rs) == 0 {
			t.Errorf("record %s not delivered", w.ID)
			continue
		}
		if exact && len(rs) > 1 {
			t.Errorf("record %s delivered %d times, want once", w.ID, len(rs))
		}
		wb, _ := json.Marshal(w)
		for _, r := range rs {
			if gb, _ := json.Marshal(r); !bytes.Equal(gb, wb) {
				t.Errorf("record %s changed on the way:\ngot  %s\nwant %s", w.ID, gb, wb)
			}
		}
		delete(byID, w.ID)
	}
	for id := range byID {
		t.Errorf("record %s delivered but never written", id)
	}
}

// Records returns n records of every kind the forwarder carries: HTTP with
// headers, a binary request body of bodyBytes and a response; every
// fourth is a TCP record with chunks. Ids are new, start times distinct.
func Records(n, bodyBytes int) []*capture.Record {
	base := time.Now().UTC().Truncate(time.Microsecond)
	recs := make([]*capture.Record, n)
	for i := range recs {
		body := make([]byte, bodyBytes)
		for j := range body {
			body[j] = byte(i + j)
		}
		r := &capture.Record{
			Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn,
			Start: base.Add(time.Duration(i) * time.Millisecond), DurMicros: int64(1000 + i), TTFBMicros: 500,
			Labels: capture.Labels{Cluster: "ecs", Namespace: "shop", Service: "orders", Pod: "orders-1", Tenant: "t-1"},
			Net:    capture.Net{ClientAddr: "10.0.0.1:5000", ServerAddr: "localhost:8080", ServerHost: "localhost", Proxy: "reverse"},
			Tags:   capture.Tags{"proxyType": "dual"},
		}
		if i%4 == 3 {
			r.Kind, r.Direction = capture.KindTCP, capture.DirOut
			r.TCP = &capture.TCP{BytesUp: int64(len(body)), BytesDown: 2, Chunks: []capture.Chunk{{Up: true, Data: body}, {AtMicros: 7, Data: []byte("ok")}}}
		} else {
			r.HTTP = &capture.HTTP{
				Req: capture.Request{Method: "POST", URL: fmt.Sprintf("http://orders:4143/v1/orders/%d?x=<y>&z=1", i), Proto: "HTTP/1.1", Host: "orders:4143",
					Headers: capture.Headers{{Name: "Content-Type", Value: "application/octet-stream"}, {Name: "X-Trace", Value: "a"}, {Name: "X-Trace", Value: "b"}},
					Body:    capture.Body{Data: body, Size: int64(len(body)) * 2, Truncated: len(body) > 0}},
				Res: &capture.Response{Status: 201, StatusText: "Created", Proto: "HTTP/1.1",
					Headers: capture.Headers{{Name: "Content-Type", Value: "application/json"}}, Body: capture.Body{Data: []byte(`{"id":1}`), Size: 8}},
			}
		}
		recs[i] = r
	}
	return slices.Clip(recs)
}
