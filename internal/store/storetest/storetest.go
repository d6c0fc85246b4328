// Package storetest is the conformance suite of store.Store: one set of
// tests that every implementation (store/sqlite, store/postgres) runs
// against a real database, in the manner of Litestream's
// RunWithReplicaClient.
package storetest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/content"
	"github.com/tapwire/tapwire/internal/store"
)

// Open returns a new, empty store for one test. The suite closes it.
type Open func(t *testing.T) store.Store

// T0 is the start of the suite's records.
var T0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Run runs every conformance test against stores from open.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Idempotent", testIdempotent},
		{"ChunkedInsert", testChunkedInsert},
		{"TenantIsolation", testTenantIsolation},
		{"Order", testOrder},
		{"Pagination", testPagination},
		{"Filters", testFilters},
		{"LiteralPatterns", testLiteralPatterns},
		{"Full", testFull},
		{"BadCursor", testBadCursor},
		{"Scan", testScan},
		{"Summaries", testSummaries},
		{"DeleteBefore", testDeleteBefore},
		{"Since", testSince},
		{"SinceAfterRetention", testSinceAfterRetention},
		{"LargeRecord", testLargeRecord},
		{"EncodedBodies", testEncodedBodies},
		{"ConcurrentInsert", testConcurrentInsert},
		{"Tenants", testTenants},
		{"Keys", testKeys},
		{"Canceled", testCanceled},
		{"SnapshotFromFilter", testSnapshotFromFilter},
		{"SnapshotUpload", testSnapshotUpload},
		{"SnapshotTenants", testSnapshotTenants},
		{"Reports", testReports},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

var ctx = context.Background()

// Rec is an HTTP record for the tests: started sec seconds after T0.
func Rec(sec int, service string, dir capture.Direction, method, url string, status int) *capture.Record {
	r := &capture.Record{
		Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: dir,
		Start: T0.Add(time.Duration(sec) * time.Second), DurMicros: int64(1000 + sec),
		Labels: capture.Labels{Service: service, Cluster: "ecs", Namespace: "shop", Pod: service + "-1"},
		Net:    capture.Net{ClientAddr: "10.0.0.1:5000", ServerAddr: "upstream:443", ConnID: "c1"},
		HTTP: &capture.HTTP{Req: capture.Request{
			Method: method, URL: url, Proto: "HTTP/1.1", Host: hostOf(url),
			Headers: capture.Headers{{Name: "Accept", Value: "*/*"}},
		}},
	}
	if status > 0 {
		r.HTTP.Res = &capture.Response{Status: status, StatusText: "X", Proto: "HTTP/1.1",
			Headers: capture.Headers{{Name: "Content-Type", Value: "application/json"}}}
	}
	return r
}

func hostOf(u string) string {
	_, rest, _ := strings.Cut(u, "://")
	h, _, _ := strings.Cut(rest, "/")
	return h
}

func insert(t *testing.T, s store.Store, tenant string, recs ...*capture.Record) {
	t.Helper()
	n, err := s.Insert(ctx, tenant, recs)
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	if n != len(recs) {
		t.Fatalf("Insert: %d new, want %d", n, len(recs))
	}
}

func list(t *testing.T, s store.Store, tenant string, q store.Query) store.Page {
	t.Helper()
	p, err := s.List(ctx, tenant, q)
	if err != nil {
		t.Fatalf("List(%+v): %v", q, err)
	}
	return p
}

func ids(p store.Page) []string {
	out := []string{}
	for _, it := range p.Items {
		out = append(out, it.ID)
	}
	return out
}

func idsOf(recs ...*capture.Record) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

// jsonEqual compares two records by their JSON form.
func jsonEqual(t *testing.T, got, want *capture.Record) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("record differs:\n got %s\nwant %s", g, w)
	}
}

func fullRecord() *capture.Record {
	r := Rec(1, "orders", capture.DirOut, "POST", "https://api.example.com:8443/v1/pay?x=1&y=%20", 201)
	r.TTFBMicros = 800
	r.Labels.Tenant = "acme"
	r.Net.ServerHost = "api.example.com"
	r.Net.TLS = &capture.TLS{SNI: "api.example.com", Version: "TLS 1.3", ALPN: "h2", CipherSuite: "TLS_AES_128_GCM_SHA256",
		Upstream: &capture.TLS{Version: "TLS 1.2", CipherSuite: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}
	r.Net.Proxy = "connect"
	r.HTTP.Req.Headers = capture.Headers{{Name: "X-B", Value: "2"}, {Name: "x-a", Value: "1"}, {Name: "X-B", Value: "3"}}
	r.HTTP.Req.Body = capture.Body{Data: []byte(`{"amount":12,"note":"ünïcode ✓"}`), Size: 1 << 20, Truncated: true}
	r.HTTP.Res.Body = capture.Body{Data: []byte{0, 1, 2, 0xff}, Size: 4}
	r.HTTP.Res.Trailers = capture.Headers{{Name: "Grpc-Status", Value: "0"}}
	r.Error = "read upstream body: unexpected EOF"
	r.Tags = capture.Tags{"proxyType": "dual", "captureMode": "proxy"}
	r.Redactions = []string{"std-auth"}
	r.Vendor = &capture.VendorFacts{Tech: "JSON", Signature: map[string]string{"k": "dg=="}}
	return r
}

func testRoundTrip(t *testing.T, s store.Store) {
	want := fullRecord()
	tcp := &capture.Record{Schema: 1, ID: capture.NewID(), Kind: capture.KindTCP, Direction: capture.DirOut,
		Start: T0.Add(1500 * time.Microsecond), DurMicros: 1_500_000,
		Labels: capture.Labels{Service: "orders"}, Net: capture.Net{ServerAddr: "db.internal:5432", ServerHost: "db.internal"},
		TCP: &capture.TCP{BytesUp: 10, BytesDown: 20, Chunks: []capture.Chunk{{Up: true, AtMicros: 5, Data: []byte("hello")}}, Truncated: true}}
	insert(t, s, "acme", want, tcp)
	for _, w := range []*capture.Record{want, tcp} {
		got, err := s.Get(ctx, "acme", w.ID)
		if err != nil {
			t.Fatalf("Get %s: %v", w.ID, err)
		}
		jsonEqual(t, got, w)
	}
	if _, err := s.Get(ctx, "acme", "no-such-id"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of a missing id: %v, want ErrNotFound", err)
	}

	p := list(t, s, "acme", store.Query{})
	if len(p.Items) != 2 || p.Next != "" {
		t.Fatalf("List: %d items next %q, want 2 and no next", len(p.Items), p.Next)
	}
	got := p.Items[1].Summary // want started at T0+1s, tcp at T0+1.5ms: want is newest
	got = p.Items[0].Summary
	wantSum := store.Summary{
		ID: want.ID, Start: want.Start, DurMicros: want.DurMicros, Kind: "http", Direction: "out",
		Labels: capture.Labels{Cluster: "ecs", Namespace: "shop", Service: "orders", Pod: "orders-1"},
		Method: "POST", URL: want.HTTP.Req.URL, Host: "api.example.com", Status: 201,
		Error: want.Error, Failed: true, ReqSize: 1 << 20, ResSize: 4,
	}
	if !reflect.DeepEqual(got, wantSum) {
		t.Errorf("summary:\n got %+v\nwant %+v", got, wantSum)
	}
	tsum := p.Items[1].Summary
	if tsum.Kind != "tcp" || tsum.URL != "tcp://db.internal:5432" || tsum.Host != "db.internal" ||
		tsum.ReqSize != 10 || tsum.ResSize != 20 || tsum.Failed || !tsum.Start.Equal(tcp.Start) {
		t.Errorf("tcp summary: %+v", tsum)
	}
	if p.Items[0].Record != nil {
		t.Errorf("List without Full filled Record")
	}
}

func testIdempotent(t *testing.T, s store.Store) {
	a, b, c := Rec(1, "s", "in", "GET", "http://s/a", 200), Rec(2, "s", "in", "GET", "http://s/b", 200), Rec(3, "s", "in", "GET", "http://s/c", 200)
	insert(t, s, "t1", a, b)
	// The same batch again, and one with an old and a new record, and a
	// record twice in one batch.
	n, err := s.Insert(ctx, "t1", []*capture.Record{a, b})
	if err != nil || n != 0 {
		t.Errorf("Insert of the same batch: %d %v, want 0 new", n, err)
	}
	c2 := *c
	c2.DurMicros = 999999 // same id, other content: the first one stays
	n, err = s.Insert(ctx, "t1", []*capture.Record{b, c, &c2})
	if err != nil || n != 1 {
		t.Errorf("Insert of old, new, new again: %d %v, want 1 new", n, err)
	}
	got, err := s.Get(ctx, "t1", c.ID)
	if err != nil || got.DurMicros != c.DurMicros {
		t.Errorf("Get after a duplicate in one batch: %v %v, want the first", got, err)
	}
	if p := list(t, s, "t1", store.Query{}); len(p.Items) != 3 {
		t.Errorf("List: %v, want 3 records", ids(p))
	}
	if n, err := s.Insert(ctx, "t1", nil); err != nil || n != 0 {
		t.Errorf("Insert(nil): %d %v", n, err)
	}
}

// testChunkedInsert: BeginInsert stores chunks in one transaction, skips
// a duplicate across chunks, and a rollback leaves nothing.
func testChunkedInsert(t *testing.T, s store.Store) {
	old := Rec(1, "s", "in", "GET", "http://s/old", 200)
	insert(t, s, "t", old)
	var recs []*capture.Record
	for i := range 150 { // more than a multi-row INSERT takes
		recs = append(recs, Rec(10+i, "s", "in", "GET", fmt.Sprintf("http://s/%d", i), 200))
	}
	tests := []struct {
		name   string
		chunks [][]*capture.Record
		commit bool
		want   int // new records Commit reports
		stored int // records of the tenant after
	}{
		{"rollback stores nothing", [][]*capture.Record{recs[:70], recs[70:100]}, false, 0, 1},
		{"chunks in one transaction", [][]*capture.Record{recs[:70], {old}, recs[70:100], recs[60:80], nil}, true, 100, 101},
		{"all known", [][]*capture.Record{recs[:10], recs[90:100]}, true, 0, 101},
		{"more", [][]*capture.Record{recs[100:]}, true, 50, 151},
	}
	for _, tt := range tests {
		ins, err := s.BeginInsert(ctx, "t")
		if err != nil {
			t.Fatalf("%s: BeginInsert: %v", tt.name, err)
		}
		for _, c := range tt.chunks {
			rows, err := store.NewRows(c)
			if err != nil {
				t.Fatalf("%s: NewRows: %v", tt.name, err)
			}
			if err := ins.Add(rows); err != nil {
				t.Fatalf("%s: Add: %v", tt.name, err)
			}
		}
		if tt.commit {
			n, err := ins.Commit()
			if err != nil || n != tt.want {
				t.Errorf("%s: Commit = %d, %v; want %d new", tt.name, n, err, tt.want)
			}
		}
		ins.Rollback() // after Commit: nothing
		p := list(t, s, "t", store.Query{Limit: 1000})
		if got := len(p.Items); got != tt.stored {
			t.Errorf("%s: %d records stored, want %d", tt.name, got, tt.stored)
		}
	}
	// The writer is free again: a plain Insert goes through.
	insert(t, s, "t", Rec(500, "s", "in", "GET", "http://s/last", 200))
}

func testTenantIsolation(t *testing.T, s store.Store) {
	a := Rec(1, "orders", "in", "GET", "http://orders/secret", 200)
	a.HTTP.Req.Body = capture.Body{Data: []byte("password=hunter2"), Size: 16}
	insert(t, s, "alpha", a)
	// The same id in another tenant is another record.
	same := *a
	same.DurMicros = 7
	insert(t, s, "beta", &same, Rec(2, "users", "out", "GET", "http://users/", 500))

	if _, err := s.Get(ctx, "gamma", a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get by another tenant: %v, want ErrNotFound", err)
	}
	if got, err := s.Get(ctx, "beta", a.ID); err != nil || got.DurMicros != 7 {
		t.Errorf("Get of beta's copy: %+v %v, want beta's own", got, err)
	}
	if got, err := s.Get(ctx, "alpha", a.ID); err != nil || got.DurMicros != a.DurMicros {
		t.Errorf("Get of alpha's copy: %+v %v", got, err)
	}
	for _, q := range []store.Query{{}, {Filter: store.Filter{Text: "hunter2"}}, {Filter: store.Filter{Service: "users"}}} {
		p := list(t, s, "gamma", q)
		if len(p.Items) != 0 {
			t.Errorf("List %+v by a tenant with no records: %v", q.Filter, ids(p))
		}
	}
	if p := list(t, s, "alpha", store.Query{}); !slices.Equal(ids(p), idsOf(a)) {
		t.Errorf("alpha lists %v, want only its own %s", ids(p), a.ID)
	}
	if p := list(t, s, "alpha", store.Query{Filter: store.Filter{Service: "users"}}); len(p.Items) != 0 {
		t.Errorf("alpha lists beta's service: %v", ids(p))
	}
	n := 0
	if err := s.Scan(ctx, "alpha", store.Filter{}, func(*store.Row) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("Scan of alpha: %d rows %v, want 1", n, err)
	}
	// A cursor is a position: from one tenant's page it reaches only the
	// other tenant's own records.
	p := list(t, s, "beta", store.Query{Limit: 1})
	if p.Next == "" {
		t.Fatal("beta's first page of 1 has no next")
	}
	if q := list(t, s, "alpha", store.Query{Cursor: p.Next}); !slices.Equal(ids(q), idsOf(a)) {
		t.Errorf("alpha with beta's cursor: %v, want only %s", ids(q), a.ID)
	}
}

func testOrder(t *testing.T, s store.Store) {
	// Inserted out of order, two with the same start: by start, then id.
	r3, r1, r2 := Rec(3, "s", "in", "GET", "http://s/3", 200), Rec(1, "s", "in", "GET", "http://s/1", 200), Rec(2, "s", "in", "GET", "http://s/2", 200)
	tie := Rec(2, "s", "in", "GET", "http://s/2b", 200)
	insert(t, s, "t", r3, r1)
	insert(t, s, "t", tie, r2)
	lo, hi := r2, tie
	if lo.ID > hi.ID {
		lo, hi = hi, lo
	}
	want := idsOf(r3, hi, lo, r1)
	if got := ids(list(t, s, "t", store.Query{})); !slices.Equal(got, want) {
		t.Errorf("order: got %v, want %v", got, want)
	}
}

func testPagination(t *testing.T, s store.Store) {
	var all []*capture.Record
	for i := range 57 {
		r := Rec(i/3, "s", "in", "GET", fmt.Sprintf("http://s/%d", i), 200) // three records per start time
		all = append(all, r)
	}
	insert(t, s, "t", all...)
	slices.SortFunc(all, func(a, b *capture.Record) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	for _, limit := range []int{1, 5, 19, 57, 100} {
		var got []string
		q := store.Query{Limit: limit}
		for pages := 0; ; pages++ {
			if pages > 60 {
				t.Fatalf("limit %d: more than 60 pages", limit)
			}
			p := list(t, s, "t", q)
			if len(p.Items) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(p.Items))
			}
			got = append(got, ids(p)...)
			if p.Next == "" {
				break
			}
			q.Cursor = p.Next
		}
		if want := idsOf(all...); !slices.Equal(got, want) {
			t.Errorf("limit %d: pages give %d ids %v, want %d %v", limit, len(got), got, len(want), want)
		}
	}
	// Records newer than a cursor do not shift the following pages.
	p := list(t, s, "t", store.Query{Limit: 10})
	insert(t, s, "t", Rec(100, "s", "in", "GET", "http://s/new", 200))
	next := list(t, s, "t", store.Query{Limit: 10, Cursor: p.Next})
	if want := idsOf(all[10:20]...); !slices.Equal(ids(next), want) {
		t.Errorf("page 2 after an insert: %v, want %v", ids(next), want)
	}
	// The limit is clamped.
	if n := (&store.Query{Limit: 5000}).PageLimit(); n != store.MaxLimit {
		t.Errorf("PageLimit(5000) = %d", n)
	}
	if n := len(list(t, s, "t", store.Query{}).Items); n != 58 {
		t.Errorf("default limit: %d items, want all 58", n)
	}
}

// corpus is the records the filter tests run on.
type corpus struct {
	inGet, inPost, out500, outNoRes, outErr, other, tcp *capture.Record
}

func newCorpus(t *testing.T, s store.Store) corpus {
	c := corpus{
		inGet:    Rec(10, "orders", "in", "GET", "http://orders.shop:4143/v1/orders/123?verbose=1", 200),
		inPost:   Rec(20, "orders", "in", "POST", "http://orders.shop:4143/v1/orders", 201),
		out500:   Rec(30, "orders", "out", "GET", "https://API.Stripe.com/v1/charges/ch_123", 502),
		outNoRes: Rec(40, "orders", "out", "GET", "http://users.shop/v2/Users/ABC", 0),
		outErr:   Rec(50, "users", "out", "DELETE", "http://db.internal:8080/cache/key", 404),
		other:    Rec(60, "users", "in", "GET", "http://users.shop/v2/users/7", 200),
	}
	c.inPost.HTTP.Req.Body = capture.Body{Data: []byte(`{"customer":"Ada Lovelace","sku":"TW-42"}`), Size: 41}
	c.out500.HTTP.Res.Body = capture.Body{Data: []byte(`{"error":"card_declined","code":"Insufficient_Funds"}`), Size: 52}
	// A gzip body is searched decoded.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"shipment":"Zebra Crossing Logistics"}`))
	zw.Close()
	c.inGet.HTTP.Res.Headers = append(c.inGet.HTTP.Res.Headers, capture.Header{Name: "Content-Encoding", Value: "gzip"})
	c.inGet.HTTP.Res.Body = capture.Body{Data: gz.Bytes(), Size: int64(gz.Len())}
	c.outNoRes.Error = "dial tcp: connection refused"
	c.outErr.Error = "read upstream body: unexpected EOF"
	// Binary body: not searchable.
	c.other.HTTP.Res.Body = capture.Body{Data: append([]byte("binarymarker"), 0, 1, 2), Size: 15}
	c.tcp = &capture.Record{Schema: 1, ID: capture.NewID(), Kind: capture.KindTCP, Direction: "out",
		Start: T0.Add(70 * time.Second), Labels: capture.Labels{Service: "users"},
		Net: capture.Net{ServerAddr: "redis.internal:6379"},
		TCP: &capture.TCP{BytesUp: 14, BytesDown: 5, Chunks: []capture.Chunk{
			{Up: true, Data: []byte("*1\r\n$4\r\nPING\r\n")}, {Data: []byte("+PONG")}}}}
	insert(t, s, "t", c.inGet, c.inPost, c.out500, c.outNoRes, c.outErr, c.other, c.tcp)
	insert(t, s, "noise", Rec(10, "orders", "in", "GET", "http://orders.shop:4143/v1/orders/123", 200))
	return c
}

func testFilters(t *testing.T, s store.Store) {
	c := newCorpus(t, s)
	at := func(sec int) time.Time { return T0.Add(time.Duration(sec) * time.Second) }
	tests := []struct {
		name string
		f    store.Filter
		want []*capture.Record // newest first
	}{
		{"all", store.Filter{}, []*capture.Record{c.tcp, c.other, c.outErr, c.outNoRes, c.out500, c.inPost, c.inGet}},
		{"from", store.Filter{From: at(40)}, []*capture.Record{c.tcp, c.other, c.outErr, c.outNoRes}},
		{"to is exclusive", store.Filter{To: at(30)}, []*capture.Record{c.inPost, c.inGet}},
		{"from to", store.Filter{From: at(20), To: at(31)}, []*capture.Record{c.out500, c.inPost}},
		{"empty range", store.Filter{From: at(31), To: at(39)}, nil},
		{"service", store.Filter{Service: "users"}, []*capture.Record{c.tcp, c.other, c.outErr}},
		{"service exact", store.Filter{Service: "user"}, nil},
		{"direction in", store.Filter{Direction: "in"}, []*capture.Record{c.other, c.inPost, c.inGet}},
		{"direction out", store.Filter{Direction: "out"}, []*capture.Record{c.tcp, c.outErr, c.outNoRes, c.out500}},
		{"method", store.Filter{Method: "post"}, []*capture.Record{c.inPost}},
		{"status 2xx", store.Filter{StatusLo: 200, StatusHi: 299}, []*capture.Record{c.other, c.inPost, c.inGet}},
		{"status 5xx", store.Filter{StatusLo: 500, StatusHi: 599}, []*capture.Record{c.out500}},
		{"status 404", store.Filter{StatusLo: 404, StatusHi: 404}, []*capture.Record{c.outErr}},
		{"host", store.Filter{Host: "api.stripe.com"}, []*capture.Record{c.out500}},
		{"host any case, no port", store.Filter{Host: "ORDERS.shop"}, []*capture.Record{c.inPost, c.inGet}},
		{"host of tcp", store.Filter{Host: "redis.internal"}, []*capture.Record{c.tcp}},
		{"path substring", store.Filter{Path: "/orders"}, []*capture.Record{c.inPost, c.inGet}},
		{"path is case-sensitive", store.Filter{Path: "Users"}, []*capture.Record{c.outNoRes}},
		{"path without query", store.Filter{Path: "verbose"}, nil},
		{"text in url", store.Filter{Text: "verbose=1"}, []*capture.Record{c.inGet}},
		{"text any case", store.Filter{Text: "STRIPE.com/V1"}, []*capture.Record{c.out500}},
		{"text in request body", store.Filter{Text: "ada lovelace"}, []*capture.Record{c.inPost}},
		{"text in response body", store.Filter{Text: "insufficient_funds"}, []*capture.Record{c.out500}},
		{"text not in binary body", store.Filter{Text: "binarymarker"}, nil},
		{"text in a gzip body", store.Filter{Text: "zebra crossing"}, []*capture.Record{c.inGet}},
		{"text in tcp stream", store.Filter{Text: "pong"}, []*capture.Record{c.tcp}},
		{"text no match", store.Filter{Text: "nothing-like-this"}, nil},
		{"failed", store.Filter{Failed: true}, []*capture.Record{c.outErr, c.outNoRes, c.out500}},
		{"combined", store.Filter{Service: "orders", Direction: "out", Method: "GET", Failed: true, From: at(35)}, []*capture.Record{c.outNoRes}},
		{"combined text", store.Filter{Service: "orders", Text: "/v1/"}, []*capture.Record{c.out500, c.inPost, c.inGet}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(list(t, s, "t", store.Query{Filter: tc.f}))
			if want := idsOf(tc.want...); !slices.Equal(got, want) {
				t.Errorf("got  %v\nwant %v", got, want)
			}
			// Paging one by one gives the same.
			var paged []string
			q := store.Query{Filter: tc.f, Limit: 1}
			for range 10 {
				p := list(t, s, "t", q)
				paged = append(paged, ids(p)...)
				if q.Cursor = p.Next; p.Next == "" {
					break
				}
			}
			if want := idsOf(tc.want...); !slices.Equal(paged, want) {
				t.Errorf("paged one by one: %v, want %v", paged, want)
			}
		})
	}
}

func testLiteralPatterns(t *testing.T, s store.Store) {
	a := Rec(1, "s", "in", "GET", "http://s/a%25b_c", 200)
	b := Rec(2, "s", "in", "GET", "http://s/aXbYc", 200)
	c := Rec(3, "s", "in", "GET", `http://s/back\slash`, 200)
	insert(t, s, "t", a, b, c)
	for _, tc := range []struct {
		f    store.Filter
		want []*capture.Record
	}{
		{store.Filter{Path: "%25b_"}, []*capture.Record{a}},
		{store.Filter{Path: "_"}, []*capture.Record{a}},
		{store.Filter{Text: "%"}, []*capture.Record{a}},
		{store.Filter{Text: "a_c"}, nil},
		{store.Filter{Text: `\s`}, []*capture.Record{c}},
		{store.Filter{Text: `'; drop table records; --`}, nil},
	} {
		if got, want := ids(list(t, s, "t", store.Query{Filter: tc.f})), idsOf(tc.want...); !slices.Equal(got, want) {
			t.Errorf("%+v: got %v, want %v", tc.f, got, want)
		}
	}
	if n := len(list(t, s, "t", store.Query{}).Items); n != 3 {
		t.Errorf("%d records left, want 3", n)
	}
}

func testFull(t *testing.T, s store.Store) {
	want := fullRecord()
	insert(t, s, "t", want, Rec(0, "s", "in", "GET", "http://s/", 200))
	p := list(t, s, "t", store.Query{Full: true, Limit: 1})
	if len(p.Items) != 1 || p.Items[0].Record == nil {
		t.Fatalf("List Full: %+v", p)
	}
	jsonEqual(t, p.Items[0].Record, want)
	if p.Items[0].ID != want.ID {
		t.Errorf("summary id %s, want %s", p.Items[0].ID, want.ID)
	}
}

func testBadCursor(t *testing.T, s store.Store) {
	for _, c := range []string{"!!!", "bm90LWEtY3Vyc29y", store.Cursor{StartUs: 1}.String()[:3]} {
		if _, err := s.List(ctx, "t", store.Query{Cursor: c}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", c, err)
		}
	}
}

func testScan(t *testing.T, s store.Store) {
	c := newCorpus(t, s)
	got := map[int64]store.Row{} // by start: unique in the corpus
	err := s.Scan(ctx, "t", store.Filter{Direction: "out"}, func(r *store.Row) error {
		got[r.StartUs] = *r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("Scan out: %d rows, want 4", len(got))
	}
	r := got[c.out500.Start.UnixMicro()]
	want := store.Row{StartUs: c.out500.Start.UnixMicro(), DurUs: c.out500.DurMicros, Direction: "out", Service: "orders",
		Method: "GET", Host: "api.stripe.com", Route: "/v1/charges/ch_123", Status: 502, Failed: true}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("row:\n got %+v\nwant %+v", r, want)
	}
	if r := got[c.outNoRes.Start.UnixMicro()]; !r.Failed || r.Status != 0 || r.Host != "users.shop" {
		t.Errorf("row without response: %+v", r)
	}
	if r := got[c.tcp.Start.UnixMicro()]; r.Failed || r.Host != "redis.internal" || r.Method != "" {
		t.Errorf("tcp row: %+v", r)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Scan(ctx, "t", store.Filter{}, func(*store.Row) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Scan stopped by fn: %v after %d rows, want stop after 1", err, n)
	}

	// Count: per step, with the filter.
	b, err := s.Count(ctx, "t", store.Filter{}, 30*time.Second)
	want3 := []store.Bucket{{Start: T0, Count: 2}, {Start: T0.Add(30 * time.Second), Count: 3, Errors: 3},
		{Start: T0.Add(60 * time.Second), Count: 2}}
	if err != nil || !reflect.DeepEqual(b, want3) {
		t.Errorf("Count in 30s steps: %+v %v\nwant %+v", b, err, want3)
	}
	b, err = s.Count(ctx, "t", store.Filter{Service: "users", Failed: true}, time.Hour)
	if err != nil || !reflect.DeepEqual(b, []store.Bucket{{Start: T0, Count: 1, Errors: 1}}) {
		t.Errorf("Count of users' failures: %+v %v", b, err)
	}
	b, err = s.Count(ctx, "nobody", store.Filter{}, time.Hour)
	if err != nil || len(b) != 0 {
		t.Errorf("Count of an empty tenant: %+v %v", b, err)
	}
	// Before 1970, steps still start at multiples of the step.
	old := Rec(0, "s", "in", "GET", "http://s/", 200)
	old.Start = time.Date(1969, 12, 31, 23, 59, 30, 0, time.UTC)
	insert(t, s, "old", old)
	b, err = s.Count(ctx, "old", store.Filter{}, time.Minute)
	if err != nil || len(b) != 1 || !b[0].Start.Equal(time.Date(1969, 12, 31, 23, 59, 0, 0, time.UTC)) {
		t.Errorf("Count before 1970: %+v %v", b, err)
	}
}

func testSummaries(t *testing.T, s store.Store) {
	var recs []*capture.Record
	for i := range 100 {
		r := Rec(i, "orders", "in", "GET", fmt.Sprintf("http://orders/v1/orders/%d", i+1), 200)
		r.DurMicros = int64(i + 1) // 1..100
		if i%10 == 0 {
			r.HTTP.Res.Status = 503
		}
		recs = append(recs, r)
	}
	for i := range 4 {
		r := Rec(200+i, "orders", "out", "POST", "https://api.stripe.com/v1/charges", 200)
		r.DurMicros = 5000
		recs = append(recs, r)
	}
	recs = append(recs, Rec(300, "users", "out", "GET", "http://orders.shop.svc.cluster.local/v1/orders", 200))
	insert(t, s, "t", recs...)

	sum, err := store.Summarize(ctx, s, "t", store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum) != 2 || sum[0].Service != "orders" || sum[1].Service != "users" {
		t.Fatalf("services: %+v", sum)
	}
	o := sum[0]
	if o.Count != 104 || o.Errors != 10 || len(o.Endpoints) != 2 {
		t.Errorf("orders: %+v", o)
	}
	in := o.Endpoints[0]
	wantIn := store.EndpointSummary{Direction: "in", Method: "GET", Route: "/v1/orders/{id}",
		Stats: store.Stats{Count: 100, Errors: 10, ErrorRate: 0.1, P50Us: 50, P95Us: 95, P99Us: 99}}
	if !reflect.DeepEqual(in, wantIn) {
		t.Errorf("inbound endpoint:\n got %+v\nwant %+v", in, wantIn)
	}
	out := o.Endpoints[1]
	if out.Direction != "out" || out.Host != "api.stripe.com" || out.Route != "/v1/charges" || out.Count != 4 || out.P99Us != 5000 {
		t.Errorf("outbound endpoint: %+v", out)
	}
	if sum, err := store.Summarize(ctx, s, "t", store.Filter{Service: "users", From: T0.Add(time.Hour)}); err != nil || len(sum) != 0 {
		t.Errorf("empty summary: %+v %v", sum, err)
	}

	m, err := store.Map(ctx, s, "t", store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	wantEdges := []store.Edge{
		{From: "orders", To: "api.stripe.com", Stats: store.Stats{Count: 4, P50Us: 5000, P95Us: 5000, P99Us: 5000}},
		{From: "users", To: "orders.shop.svc.cluster.local", ToService: "orders", Stats: store.Stats{Count: 1, P50Us: 1300, P95Us: 1300, P99Us: 1300}},
	}
	if !reflect.DeepEqual(m.Edges, wantEdges) {
		t.Errorf("edges:\n got %+v\nwant %+v", m.Edges, wantEdges)
	}
	if len(m.Services) != 2 || m.Services[0].Inbound.Count != 100 || m.Services[0].Outbound.Count != 4 {
		t.Errorf("map services: %+v", m.Services)
	}

	h, err := store.Histogram(ctx, s, "t", store.Filter{From: T0, To: T0.Add(2 * time.Minute)}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wantH := []store.Bucket{{Start: T0, Count: 60, Errors: 6}, {Start: T0.Add(time.Minute), Count: 40, Errors: 4}}
	if !reflect.DeepEqual(h, wantH) {
		t.Errorf("histogram: %+v, want %+v", h, wantH)
	}
	h, err = store.Histogram(ctx, s, "t", store.Filter{Direction: "out"}, time.Minute)
	if err != nil || len(h) != 3 || h[0].Start != T0.Add(3*time.Minute) || h[0].Count != 4 || h[1].Count != 0 || h[2].Count != 1 {
		t.Errorf("histogram of out, unbounded: %+v %v", h, err)
	}
}

func testDeleteBefore(t *testing.T, s store.Store) {
	var old, young []*capture.Record
	for i := range 30 {
		old = append(old, Rec(i, "s", "in", "GET", "http://s/", 200))
		young = append(young, Rec(1000+i, "s", "in", "GET", "http://s/", 200))
	}
	insert(t, s, "a", old[:20]...)
	insert(t, s, "b", old[20:]...)
	insert(t, s, "a", young...)
	n, err := s.DeleteBefore(ctx, T0.Add(1000*time.Second))
	if err != nil || n != 30 {
		t.Errorf("DeleteBefore: %d %v, want 30", n, err)
	}
	if p := list(t, s, "a", store.Query{}); !slices.Equal(ids(p), reversed(idsOf(young...))) {
		t.Errorf("after DeleteBefore a has %d records, want the 30 young", len(p.Items))
	}
	if p := list(t, s, "b", store.Query{}); len(p.Items) != 0 {
		t.Errorf("after DeleteBefore b has %v", ids(p))
	}
	if n, err := s.DeleteBefore(ctx, T0); err != nil || n != 0 {
		t.Errorf("DeleteBefore again: %d %v", n, err)
	}
}

func since(t *testing.T, s store.Store, tenant string, f store.Filter, after int64, limit int) ([]string, int64) {
	t.Helper()
	items, next, err := s.Since(ctx, tenant, f, after, limit)
	if err != nil {
		t.Fatalf("Since(%d, %d): %v", after, limit, err)
	}
	out := []string{}
	last := after
	for _, it := range items {
		if it.Seq <= last {
			t.Errorf("Since(%d): seq %d after %d, want increasing", after, it.Seq, last)
		}
		last = it.Seq
		out = append(out, it.ID)
	}
	if next != last {
		t.Errorf("Since(%d): next %d, want %d (the last seq)", after, next, last)
	}
	return out, next
}

// testSince: records come in the order they arrived, whatever their start:
// one that started an hour before the others but arrived after them comes
// after them, and a cursor resumes where it stopped.
func testSince(t *testing.T, s store.Store) {
	a := Rec(3600, "web", "in", "GET", "http://a/1", 200)
	b := Rec(3601, "web", "in", "GET", "http://a/2", 500)
	late := Rec(0, "web", "in", "GET", "http://a/late", 200) // an hour older than a and b
	other := Rec(3602, "web", "in", "GET", "http://a/other", 200)
	insert(t, s, "a", a, b)
	insert(t, s, "b", other)
	insert(t, s, "a", late)

	got, next := since(t, s, "a", store.Filter{}, 0, 0)
	if want := idsOf(a, b, late); !slices.Equal(got, want) {
		t.Errorf("Since(0) = %v, want %v (arrival order)", got, want)
	}
	if got, again := since(t, s, "a", store.Filter{}, next, 0); len(got) != 0 || again != next {
		t.Errorf("Since(next) = %v, %d; want none, %d", got, again, next)
	}
	first, cur := since(t, s, "a", store.Filter{}, 0, 2)
	if want := idsOf(a, b); !slices.Equal(first, want) {
		t.Errorf("Since(0, limit 2) = %v, want %v", first, want)
	}
	if rest, _ := since(t, s, "a", store.Filter{}, cur, 2); !slices.Equal(rest, idsOf(late)) {
		t.Errorf("Since(cursor, limit 2) = %v, want %v", rest, idsOf(late))
	}
	if got, _ := since(t, s, "a", store.Filter{StatusLo: 200, StatusHi: 299}, 0, 0); !slices.Equal(got, idsOf(a, late)) {
		t.Errorf("Since(0, status 2xx) = %v, want %v", got, idsOf(a, late))
	}
	if got, _ := since(t, s, "b", store.Filter{}, 0, 0); !slices.Equal(got, idsOf(other)) {
		t.Errorf("Since(0) of tenant b = %v, want %v", got, idsOf(other))
	}
	// Again (a duplicate, skipped) and new after it: only the new one.
	insert2 := Rec(1, "web", "in", "GET", "http://a/new", 200)
	if n, err := s.Insert(ctx, "a", []*capture.Record{late, insert2}); err != nil || n != 1 {
		t.Fatalf("Insert: %d %v, want 1 new", n, err)
	}
	if got, _ := since(t, s, "a", store.Filter{}, next, 0); !slices.Equal(got, idsOf(insert2)) {
		t.Errorf("Since(next) after a duplicate and a new record = %v, want %v", got, idsOf(insert2))
	}
	end := next
	if items, latest, err := s.Since(ctx, "a", store.Filter{}, -1, 0); err != nil || len(items) != 0 || latest <= end {
		t.Errorf("Since(-1) = %d items, %d, %v; want none, the latest seq (after %d)", len(items), latest, err, end)
	} else if got, _ := since(t, s, "a", store.Filter{}, latest, 0); len(got) != 0 {
		t.Errorf("Since(latest) = %v, want none", got)
	}
	if items, latest, err := s.Since(ctx, "nobody", store.Filter{}, -1, 0); err != nil || len(items) != 0 || latest != 0 {
		t.Errorf("Since(-1) of a tenant without records = %d items, %d, %v; want none, 0", len(items), latest, err)
	}
	if _, _, err := s.Since(ctx, "a", store.Filter{Snapshot: "x"}, 0, 0); err == nil {
		t.Errorf("Since of a snapshot: no error")
	}
}

// testSinceAfterRetention: retention deleting the newest arrival does not
// make its seq be given again, which a cursor past it would skip.
func testSinceAfterRetention(t *testing.T, s store.Store) {
	insert(t, s, "a", Rec(100, "web", "in", "GET", "http://a/1", 200))
	insert(t, s, "a", Rec(0, "web", "in", "GET", "http://a/old", 200))
	_, next := since(t, s, "a", store.Filter{}, 0, 0)
	if n, err := s.DeleteBefore(ctx, T0.Add(50*time.Second)); err != nil || n != 1 {
		t.Fatalf("DeleteBefore: %d %v, want 1", n, err)
	}
	fresh := Rec(200, "web", "in", "GET", "http://a/2", 200)
	insert(t, s, "a", fresh)
	if got, _ := since(t, s, "a", store.Filter{}, next, 0); !slices.Equal(got, idsOf(fresh)) {
		t.Errorf("Since(%d) after retention = %v, want %v", next, got, idsOf(fresh))
	}
}

func reversed(s []string) []string {
	slices.Reverse(s)
	return s
}

func testLargeRecord(t *testing.T, s store.Store) {
	r := Rec(1, "s", "out", "PUT", "http://s/upload", 200)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	copy(big[5000:], "needle-beyond-the-search-limit")
	r.HTTP.Req.Body = capture.Body{Data: big, Size: 1 << 20}
	r.HTTP.Res.Body = capture.Body{Data: []byte("ok"), Size: 2}
	insert(t, s, "t", r)
	got, err := s.Get(ctx, "t", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, r)
	if p := list(t, s, "t", store.Query{Filter: store.Filter{Text: "needle-beyond"}}); len(p.Items) != 0 {
		t.Errorf("text past SearchBodyBytes found: %v", ids(p))
	}
	if p := list(t, s, "t", store.Query{Filter: store.Filter{Text: "xyzabc"}}); len(p.Items) != 1 {
		t.Errorf("text in the first bytes of a large body not found")
	}
}

// testEncodedBodies: text search reads bodies with their content codings
// undone as the viewer undoes them, stacked ones too.
func testEncodedBodies(t *testing.T, s store.Store) {
	encode := func(codings string, b []byte) []byte {
		out, err := content.Encode(codings, b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	withBody := func(sec int, body []byte, encs ...string) *capture.Record {
		r := Rec(sec, "s", "out", "GET", "http://s/", 200)
		for _, e := range encs {
			r.HTTP.Res.Headers = append(r.HTTP.Res.Headers, capture.Header{Name: "Content-Encoding", Value: e})
		}
		r.HTTP.Res.Body = capture.Body{Data: body, Size: int64(len(body))}
		return r
	}
	stacked := withBody(1, encode("gzip, br", []byte(`{"animal":"Stacked Kangaroo"}`)), "gzip, br")
	twoLines := withBody(2, encode("gzip, br", []byte(`{"animal":"Two-Line Wombat"}`)), "gzip", "br")
	var long []byte
	for i := range 2000 {
		long = fmt.Appendf(long, "truncated platypus %d %x\n", i, i*i*7919)
	}
	whole := encode("gzip, br", long)
	cut := withBody(3, whole[:len(whole)/2], "gzip, br")
	unknown := withBody(4, []byte("compressed echidna"), "compress")
	insert(t, s, "t", stacked, twoLines, cut, unknown)
	tests := []struct {
		name, text string
		want       []*capture.Record
	}{
		{"gzip, br in one header", "stacked kangaroo", []*capture.Record{stacked}},
		{"gzip, br in two headers", "two-line wombat", []*capture.Record{twoLines}},
		{"stacked and cut short", "truncated platypus", []*capture.Record{cut}},
		{"an unknown coding is not searched", "echidna", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(list(t, s, "t", store.Query{Filter: store.Filter{Text: tc.text}}))
			if want := idsOf(tc.want...); !slices.Equal(got, want) {
				t.Errorf("Text %q: got %v, want %v", tc.text, got, want)
			}
		})
	}
}

func testConcurrentInsert(t *testing.T, s store.Store) {
	// Four writers, each batch overlapping the next writer's.
	var recs []*capture.Record
	for i := range 400 {
		recs = append(recs, Rec(i, "s", "in", "GET", "http://s/", 200))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	errs := make(chan error, 40)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < 10; b++ {
				lo := (w*100 + b*10) % 400
				batch := recs[lo : lo+20-min(20, max(0, lo+20-400))]
				n, err := s.Insert(ctx, "t", batch)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Insert: %v", err)
	}
	n := 0
	if err := s.Scan(ctx, "t", store.Filter{}, func(*store.Row) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != total {
		t.Errorf("%d rows stored, Insert said %d new", n, total)
	}
	if n < 400 {
		t.Errorf("%d rows stored, want all 400", n)
	}
}

func testTenants(t *testing.T, s store.Store) {
	if ts, err := s.Tenants(ctx); err != nil || len(ts) != 0 {
		t.Errorf("Tenants of a new store: %v %v", ts, err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, tn := range []store.Tenant{{ID: "zeta", Created: now}, {ID: "acme", Name: "Acme Inc.", Created: now}} {
		if err := s.CreateTenant(ctx, tn); err != nil {
			t.Fatalf("CreateTenant %s: %v", tn.ID, err)
		}
	}
	if err := s.CreateTenant(ctx, store.Tenant{ID: "acme", Created: now}); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateTenant twice: %v, want ErrExists", err)
	}
	if err := s.CreateTenant(ctx, store.Tenant{ID: "Bad Name"}); err == nil {
		t.Errorf("CreateTenant with a bad id: no error")
	}
	ts, err := s.Tenants(ctx)
	want := []store.Tenant{{ID: "acme", Name: "Acme Inc.", Created: now}, {ID: "zeta", Created: now}}
	if err != nil || !reflect.DeepEqual(ts, want) {
		t.Errorf("Tenants: %+v %v\nwant %+v", ts, err, want)
	}
}

func testKeys(t *testing.T, s store.Store) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, id := range []string{"acme", "beta"} {
		if err := s.CreateTenant(ctx, store.Tenant{ID: id, Created: now}); err != nil {
			t.Fatal(err)
		}
	}
	hash := func(b byte) []byte { return slices.Repeat([]byte{b}, 32) }
	k1 := store.Key{ID: "k1", Tenant: "acme", Role: store.RoleIngest, Name: "forwarder", Hash: hash(1), Created: now}
	k2 := store.Key{ID: "k2", Tenant: "acme", Role: store.RoleRead, Hash: hash(2), Created: now.Add(time.Second)}
	k3 := store.Key{ID: "k3", Tenant: "beta", Role: store.RoleRead, Hash: hash(3), Created: now}
	k4 := store.Key{ID: "k4", Tenant: "beta", Role: store.RoleAdmin, Name: "ops", Hash: hash(4), Created: now.Add(time.Second)}
	for _, k := range []store.Key{k1, k2, k3, k4} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatalf("CreateKey %s: %v", k.ID, err)
		}
	}
	if err := s.CreateKey(ctx, store.Key{ID: "k1", Tenant: "beta", Role: store.RoleRead, Hash: hash(9), Created: now}); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateKey with a taken id: %v, want ErrExists", err)
	}
	if err := s.CreateKey(ctx, store.Key{ID: "k9", Tenant: "nobody", Role: store.RoleRead, Hash: hash(9), Created: now}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateKey for a missing tenant: %v, want ErrNotFound", err)
	}
	got, err := s.Key(ctx, "k1")
	if err != nil || !reflect.DeepEqual(got, k1) {
		t.Errorf("Key k1: %+v %v\nwant %+v", got, err, k1)
	}
	if _, err := s.Key(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Key nope: %v, want ErrNotFound", err)
	}
	ks, err := s.Keys(ctx, "acme")
	if err != nil || len(ks) != 2 || ks[0].ID != "k1" || ks[1].ID != "k2" {
		t.Errorf("Keys acme: %+v %v", ks, err)
	}
	if ks, err := s.Keys(ctx, ""); err != nil || len(ks) != 4 || ks[2].ID != "k3" || ks[3].ID != "k4" {
		t.Errorf("Keys of all: %+v %v", ks, err)
	}
	// The admin role is stored and read back as it is.
	if got, err := s.Key(ctx, "k4"); err != nil || !reflect.DeepEqual(got, k4) {
		t.Errorf("Key k4 (admin): %+v %v\nwant %+v", got, err, k4)
	}
	at := now.Add(time.Minute)
	if err := s.RevokeKey(ctx, "k1", at); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, "k1", at.Add(time.Hour)); err != nil {
		t.Errorf("RevokeKey twice: %v", err)
	}
	if got, _ := s.Key(ctx, "k1"); !got.Revoked.Equal(at) {
		t.Errorf("revoked at %v, want %v (the first revocation)", got.Revoked, at)
	}
	if err := s.RevokeKey(ctx, "nope", at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeKey nope: %v, want ErrNotFound", err)
	}
}

func testCanceled(t *testing.T, s store.Store) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Insert(c, "t", []*capture.Record{Rec(1, "s", "in", "GET", "http://s/", 200)}); err == nil {
		t.Errorf("Insert with a canceled context: no error")
	}
	if p := list(t, s, "t", store.Query{}); len(p.Items) != 0 {
		t.Errorf("a canceled Insert stored %v", ids(p))
	}
}
