package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/raw"
	"github.com/tapwire/tapwire/internal/memtest"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/postgres"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/store/storetest"
	"github.com/tapwire/tapwire/internal/testpg"
	"github.com/tapwire/tapwire/internal/wire"
)

func TestMain(m *testing.M) {
	code := testpg.Main(m)
	memtest.RemoveBuilt() // the memory test's hub binary
	os.Exit(code)
}

var ctx = context.Background()

// stores are the stores the HTTP tests run on.
var stores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"sqlite", func(t *testing.T) store.Store {
		s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"postgres", func(t *testing.T) store.Store {
		s, err := postgres.Open(ctx, testpg.DSN(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// hub is a hub under test: a real HTTP server over a store, with two
// tenants (acme, beta) and a key of each role for each.
type hub struct {
	t     *testing.T
	srv   *Server
	url   string
	store store.Store
	keys  map[string]string // "acme/ingest" -> key
	now   time.Time
	mu    sync.Mutex
}

func newHub(t *testing.T, st store.Store, cfg Config) *hub {
	t.Helper()
	h := &hub{t: t, store: st, keys: map[string]string{}, now: time.Now()}
	h.srv = NewServer(cfg, st, nil)
	h.srv.now = func() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.now }
	hs := httptest.NewServer(h.srv.Handler())
	t.Cleanup(func() { hs.Close(); st.Close() })
	h.url = hs.URL
	for _, tenant := range []string{"acme", "beta"} {
		if err := st.CreateTenant(ctx, store.Tenant{ID: tenant, Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
		for _, role := range []store.Role{store.RoleIngest, store.RoleRead} {
			key, err := createKey(ctx, st, tenant, role, "", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			h.keys[tenant+"/"+string(role)] = key
		}
	}
	return h
}

func (h *hub) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

// post sends a batch as goproxy and the forwarder do (zstd, headers).
func (h *hub) post(key string, recs []*capture.Record) (int, *http.Response) {
	h.t.Helper()
	var body bytes.Buffer
	if err := wire.EncodeBatch(&body, recs); err != nil {
		h.t.Fatal(err)
	}
	req, err := wire.NewRequest(ctx, h.url+wire.Path, body.Bytes(), wire.BatchID(recs), len(recs), key)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	a, _ := wire.ParseResponse(resp) // a refusal is the caller's to check in resp
	return a.Accepted, resp
}

// get GETs path with key and decodes the JSON answer into v.
func (h *hub) get(key, path string, v any) int {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.url+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			h.t.Fatalf("GET %s: %d %q is not JSON: %v", path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func (h *hub) list(key, query string) store.Page {
	h.t.Helper()
	var p store.Page
	if code := h.get(key, "/api/v1/records"+query, &p); code != 200 {
		h.t.Fatalf("list %s: status %d", query, code)
	}
	return p
}

func pageIDs(p store.Page) []string {
	out := []string{}
	for _, it := range p.Items {
		out = append(out, it.ID)
	}
	return out
}

func recIDs(recs ...*capture.Record) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func forEachStore(t *testing.T, fn func(t *testing.T, open func(*testing.T) store.Store)) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { fn(t, s.open) })
	}
}

// TestIngest: batches in the forwarder's protocol are stored under the
// key's tenant, stamped with it, once.
func TestIngest(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(*testing.T) store.Store) {
		h := newHub(t, open(t), Config{})
		a := storetest.Rec(1, "orders", "in", "GET", "http://orders/1", 200)
		a.Labels.Tenant = "beta" // what the forwarder said; the key decides
		b := storetest.Rec(2, "orders", "out", "POST", "https://api.stripe.com/v1/charges", 502)
		n, resp := h.post(h.keys["acme/ingest"], []*capture.Record{a, b})
		if resp.StatusCode != 200 || n != 2 {
			t.Fatalf("post: %d accepted %d, want 200 and 2", resp.StatusCode, n)
		}
		// The same batch again: accepted, stored once.
		if n, resp := h.post(h.keys["acme/ingest"], []*capture.Record{a, b}); resp.StatusCode != 200 || n != 2 {
			t.Fatalf("post again: %d accepted %d, want 200 and 2", resp.StatusCode, n)
		}
		// GET /metrics counts them, without a key: 4 records ingested, 2 new.
		resp, err := http.Get(h.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"hub_batches_ingested_total 2\n", "hub_records_ingested_total 4\n", "hub_records_new_total 2\n", "go_goroutines "} {
			if !strings.Contains(string(m), want) {
				t.Errorf("GET /metrics: no %q in\n%s", want, m)
			}
		}
		p := h.list(h.keys["acme/read"], "")
		if got, want := pageIDs(p), recIDs(b, a); !slices.Equal(got, want) {
			t.Errorf("acme's records: %v, want %v", got, want)
		}
		var got capture.Record
		if code := h.get(h.keys["acme/read"], "/api/v1/records/"+a.ID, &got); code != 200 || got.Labels.Tenant != "acme" || got.HTTP.Req.URL != a.HTTP.Req.URL {
			t.Errorf("GET record: %d %+v, want acme's record stamped acme", code, got.Labels)
		}
		if p := h.list(h.keys["beta/read"], ""); len(p.Items) != 0 {
			t.Errorf("beta sees %v", pageIDs(p))
		}
		st := h.srv.Stats()
		if st.Batches != 2 || st.Records != 4 || st.New != 2 {
			t.Errorf("stats %+v, want 2 batches, 4 records, 2 new", st)
		}
	})
}

// TestIngestRefusals: the answers of docs/shipping.md for bad keys and
// bad batches; nothing of a refused batch is stored.
func TestIngestRefusals(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	rec := func() []*capture.Record {
		return []*capture.Record{storetest.Rec(1, "s", "in", "GET", "http://s/", 200)}
	}
	acmeIngest := h.keys["acme/ingest"]
	wrongSecret := acmeIngest[:len(acmeIngest)-4] + "aaaa"
	if wrongSecret == acmeIngest {
		wrongSecret = acmeIngest[:len(acmeIngest)-4] + "bbbb"
	}
	tests := []struct {
		name string
		key  string
		want int
	}{
		{"no key", "", 401},
		{"not a key", "hunter2", 401},
		{"unknown key", "tw_aaaaaaaaaaaa_" + strings.Repeat("a", 52), 401},
		{"wrong secret", wrongSecret, 401},
		{"read key", h.keys["acme/read"], 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, resp := h.post(tc.key, rec())
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	// A bad record refuses the whole batch with 400.
	good := storetest.Rec(1, "s", "in", "GET", "http://s/good", 200)
	bad := storetest.Rec(2, "s", "in", "GET", "http://s/bad", 200)
	bad.Direction = "sideways"
	var body bytes.Buffer
	if err := wire.EncodeBatch(&body, []*capture.Record{good, bad}); err != nil {
		t.Fatal(err)
	}
	req, _ := wire.NewRequest(ctx, h.url+wire.Path, body.Bytes(), "b", 2, acmeIngest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, perr := wire.ParseResponse(resp)
	resp.Body.Close()
	if resp.StatusCode != 400 || perr == nil || !strings.Contains(perr.Error(), "line 2") {
		t.Errorf("bad record: %d %v, want 400 naming line 2", resp.StatusCode, perr)
	}
	if p := h.list(h.keys["acme/read"], ""); len(p.Items) != 0 {
		t.Errorf("a refused batch stored %v", pageIDs(p))
	}
	// GET of the ingest path: 405.
	if code := h.get(acmeIngest, wire.Path, nil); code != 405 {
		t.Errorf("GET %s: %d, want 405", wire.Path, code)
	}
	if st := h.srv.Stats(); st.Unauthorized != 5 || st.Rejected != 2 {
		t.Errorf("stats %+v, want 5 unauthorized, 2 rejected", st)
	}
}

// TestRevokedKey: a revoked key stops working once the cache expires.
func TestRevokedKey(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	key := h.keys["acme/ingest"]
	rec := []*capture.Record{storetest.Rec(1, "s", "in", "GET", "http://s/", 200)}
	if _, resp := h.post(key, rec); resp.StatusCode != 200 {
		t.Fatalf("post: %d", resp.StatusCode)
	}
	if err := h.store.RevokeKey(ctx, keyID(key), time.Now()); err != nil {
		t.Fatal(err)
	}
	h.advance(authCacheTTL + time.Second)
	if _, resp := h.post(key, rec); resp.StatusCode != 401 {
		t.Errorf("post with a revoked key: %d, want 401", resp.StatusCode)
	}
	read := h.keys["acme/read"]
	if err := h.store.RevokeKey(ctx, keyID(read), time.Now()); err != nil {
		t.Fatal(err)
	}
	if code := h.get(read, "/api/v1/records", nil); code != 401 {
		t.Errorf("list with a revoked key: %d, want 401", code)
	}
}

// TestBusy: past MaxInFlight batches, 429 with Retry-After; a failing store,
// 503 with Retry-After.
func TestBusy(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{MaxInFlight: 1})
	key := h.keys["acme/ingest"]
	// A batch whose body never ends holds the one slot.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", h.url+wire.Path, pr)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set(wire.HeaderProtocol, "1")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	pw.Write([]byte("{"))
	// Wait until the slow batch's handler holds the slot (not a fast
	// batch's, which would make the slow one the refused one).
	for deadline := time.Now().Add(20 * time.Second); len(h.srv.sem) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow batch never took the slot")
		}
	}
	_, resp := h.post(key, []*capture.Record{storetest.Rec(1, "s", "in", "GET", "http://s/", 200)})
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("second batch: %d Retry-After %q, want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	<-done
	// The client gave up; the handler lets the slot go once it has seen
	// the broken body, maybe after.
	for deadline := time.Now().Add(10 * time.Second); len(h.srv.sem) != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow batch's handler still holds the slot after 10 s")
		}
	}

	h.store.Close() // the store fails from now on
	_, resp = h.post(key, []*capture.Record{storetest.Rec(2, "s", "in", "GET", "http://s/", 200)})
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" {
		t.Errorf("batch to a failed store: %d Retry-After %q, want 503 and 5", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestTenantIsolation: one tenant's read key never reaches another's
// records, by any endpoint.
func TestTenantIsolation(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(*testing.T) store.Store) {
		h := newHub(t, open(t), Config{})
		secret := storetest.Rec(1, "vault", "out", "POST", "https://vault.internal/v1/secret", 200)
		secret.HTTP.Req.Body = capture.Body{Data: []byte("topsecret-acme"), Size: 14}
		if _, resp := h.post(h.keys["acme/ingest"], []*capture.Record{secret}); resp.StatusCode != 200 {
			t.Fatalf("post: %d", resp.StatusCode)
		}
		own := storetest.Rec(2, "web", "in", "GET", "http://web/", 200)
		if _, resp := h.post(h.keys["beta/ingest"], []*capture.Record{own}); resp.StatusCode != 200 {
			t.Fatalf("post: %d", resp.StatusCode)
		}
		beta := h.keys["beta/read"]
		if code := h.get(beta, "/api/v1/records/"+secret.ID, nil); code != 404 {
			t.Errorf("beta GETs acme's record: %d, want 404", code)
		}
		for _, q := range []string{"", "?q=topsecret", "?service=vault", "?full=true", "?host=vault.internal"} {
			p := h.list(beta, q)
			if slices.Contains(pageIDs(p), secret.ID) {
				t.Errorf("beta lists acme's record with %q", q)
			}
		}
		var sum struct{ Services []store.ServiceSummary }
		h.get(beta, "/api/v1/services", &sum)
		if len(sum.Services) != 1 || sum.Services[0].Service != "web" {
			t.Errorf("beta's services: %+v", sum.Services)
		}
		var m store.ServiceMap
		h.get(beta, "/api/v1/map", &m)
		if len(m.Edges) != 0 || len(m.Services) != 1 {
			t.Errorf("beta's map: %+v", m)
		}
		for _, f := range []string{"har", "raw.jsonl", "records.jsonl"} {
			body := h.download(beta, "/api/v1/export/"+f)
			if strings.Contains(body, "vault") || strings.Contains(body, secret.ID) || !strings.Contains(body, "web") {
				t.Errorf("beta's %s export: %.300s", f, body)
			}
		}
		// The ingest key of acme reads nothing, and no key reads nothing.
		if code := h.get(h.keys["acme/ingest"], "/api/v1/records", nil); code != 403 {
			t.Errorf("list with an ingest key: %d, want 403", code)
		}
		if code := h.get("", "/api/v1/records", nil); code != 401 {
			t.Errorf("list without a key: %d, want 401", code)
		}
		if code := h.get("", "/api/v1/export/har", nil); code != 401 {
			t.Errorf("export without a key: %d, want 401", code)
		}
	})
}

func (h *hub) download(key, path string) string {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		h.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// TestQuery: the list parameters of docs/api.md over HTTP.
func TestQuery(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	now := time.Now().UTC().Truncate(time.Second)
	h.now = now
	at := func(r *capture.Record, ago time.Duration) *capture.Record { r.Start = now.Add(-ago); return r }
	old := at(storetest.Rec(0, "orders", "in", "GET", "http://orders/v1/orders/1", 200), 3*time.Hour)
	get := at(storetest.Rec(0, "orders", "in", "GET", "http://orders/v1/orders/2?x=1", 200), 30*time.Minute)
	post := at(storetest.Rec(0, "orders", "in", "POST", "http://orders/v1/orders", 201), 20*time.Minute)
	post.HTTP.Req.Body = capture.Body{Data: []byte(`{"customer":"Ada"}`), Size: 18}
	fail := at(storetest.Rec(0, "orders", "out", "GET", "https://api.stripe.com/v1/charges", 503), 10*time.Minute)
	if _, resp := h.post(h.keys["acme/ingest"], []*capture.Record{old, get, post, fail}); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	read := h.keys["acme/read"]
	tests := []struct {
		query string
		want  []*capture.Record
	}{
		{"", []*capture.Record{fail, post, get, old}},
		{"?from=-1h", []*capture.Record{fail, post, get}},
		{"?from=-1h&to=-15m", []*capture.Record{post, get}},
		{"?from=" + url.QueryEscape(now.Add(-25*time.Minute).Format(time.RFC3339)), []*capture.Record{fail, post}},
		{fmt.Sprintf("?to=%d", now.Add(-time.Hour).UnixMilli()), []*capture.Record{old}},
		{"?status=5xx", []*capture.Record{fail}},
		{"?status=201", []*capture.Record{post}},
		{"?failed=true", []*capture.Record{fail}},
		{"?direction=out", []*capture.Record{fail}},
		{"?method=post", []*capture.Record{post}},
		{"?host=API.stripe.com", []*capture.Record{fail}},
		{"?path=/v1/orders/", []*capture.Record{get, old}},
		{"?q=ada", []*capture.Record{post}},
		{"?q=x%3D1", []*capture.Record{get}},
		{"?service=orders&direction=in&limit=2", []*capture.Record{post, get}},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			if got, want := pageIDs(h.list(read, tc.query)), recIDs(tc.want...); !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
	// Cursor paging through the API.
	var all []string
	q := "?limit=1"
	for range 10 {
		p := h.list(read, q)
		all = append(all, pageIDs(p)...)
		if p.Next == "" {
			break
		}
		q = "?limit=1&cursor=" + url.QueryEscape(p.Next)
	}
	if want := recIDs(fail, post, get, old); !slices.Equal(all, want) {
		t.Errorf("paged: %v, want %v", all, want)
	}
	// Full records.
	var p struct {
		Records []struct {
			ID     string
			Record *capture.Record
		}
	}
	h.get(read, "/api/v1/records?limit=1&full=1", &p)
	if len(p.Records) != 1 || p.Records[0].Record == nil || p.Records[0].Record.HTTP.Res.Status != 503 {
		t.Errorf("full=1: %+v", p)
	}

	bad := []struct{ query, want string }{
		{"?limit=0", "limit"}, {"?limit=x", "limit"}, {"?direction=up", "direction"}, {"?status=6xx", "status"},
		{"?from=yesterday", "from"}, {"?to=-3x", "to"}, {"?failed=maybe", "failed"}, {"?cursor=%21%21", "cursor"},
		{"?full=perhaps", "full"},
	}
	for _, tc := range bad {
		var e struct{ Error string }
		if code := h.get(read, "/api/v1/records"+tc.query, &e); code != 400 || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s: %d %q, want 400 naming %s", tc.query, code, e.Error, tc.want)
		}
	}
	var e struct{ Error string }
	if code := h.get(read, "/api/v1/records/nope", &e); code != 404 || !strings.Contains(e.Error, "nope") {
		t.Errorf("missing record: %d %q", code, e.Error)
	}
	if code := h.get(read, "/api/v1/nothing", &e); code != 404 {
		t.Errorf("unknown endpoint: %d", code)
	}
	var who map[string]string
	if code := h.get(read, "/api/v1/whoami", &who); code != 200 || who["tenant"] != "acme" || who["role"] != "read" {
		t.Errorf("whoami: %d %v", code, who)
	}
}

// TestSummaries: services, map and histogram over HTTP.
func TestSummaries(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	now := time.Now().UTC().Truncate(time.Minute)
	h.now = now
	var recs []*capture.Record
	for i := range 20 {
		r := storetest.Rec(0, "orders", "in", "GET", fmt.Sprintf("http://orders/v1/orders/%d", i), 200)
		r.Start = now.Add(-time.Duration(i) * time.Minute)
		r.DurMicros = int64(1000 * (i + 1))
		if i < 2 {
			r.HTTP.Res.Status = 500
		}
		recs = append(recs, r)
	}
	call := storetest.Rec(0, "orders", "out", "GET", "http://users.shop/v1/users/7", 200)
	call.Start = now.Add(-time.Minute)
	recs = append(recs, call)
	if _, resp := h.post(h.keys["acme/ingest"], recs); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	read := h.keys["acme/read"]
	var sum struct{ Services []store.ServiceSummary }
	if code := h.get(read, "/api/v1/services?from=-1h", &sum); code != 200 || len(sum.Services) != 1 {
		t.Fatalf("services: %d %+v", code, sum)
	}
	ep := sum.Services[0].Endpoints[0]
	if ep.Route != "/v1/orders/{id}" || ep.Count != 20 || ep.Errors != 2 || ep.P50Us != 10000 || ep.P95Us != 19000 || ep.P99Us != 20000 {
		t.Errorf("endpoint: %+v", ep)
	}
	var m store.ServiceMap
	if code := h.get(read, "/api/v1/map", &m); code != 200 || len(m.Edges) != 1 || m.Edges[0].To != "users.shop" {
		t.Errorf("map: %d %+v", code, m)
	}
	var hist struct {
		Step    string
		Buckets []store.Bucket
	}
	if code := h.get(read, "/api/v1/histogram?from=-30m&to=now", &hist); code != 200 || hist.Step != "30s" || len(hist.Buckets) != 60 {
		t.Fatalf("histogram: %d step %s, %d buckets", code, hist.Step, len(hist.Buckets))
	}
	var n, errs int64
	for _, b := range hist.Buckets {
		n += b.Count
		errs += b.Errors
	}
	if n != 20 || errs != 1 { // the record at now (an error) is past the end
		t.Errorf("histogram counts %d, %d errors", n, errs)
	}
	if code := h.get(read, "/api/v1/histogram?from=-1h&step=1ms", nil); code != 400 {
		t.Errorf("histogram with a tiny step: %d, want 400", code)
	}
}

// TestExports: HAR, raw.jsonl and records.jsonl of a selection.
func TestExports(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	a := storetest.Rec(1, "orders", "in", "POST", "http://orders/v1/orders?dry=1", 201)
	a.TTFBMicros, a.DurMicros = 800, 1000
	a.HTTP.Req.Headers = append(a.HTTP.Req.Headers, capture.Header{Name: "Cookie", Value: "sid=abc; theme=dark"},
		capture.Header{Name: "Content-Type", Value: "application/json"})
	a.HTTP.Req.Body = capture.Body{Data: []byte(`{"n":1}`), Size: 7}
	a.HTTP.Res.Headers = append(a.HTTP.Res.Headers, capture.Header{Name: "Set-Cookie", Value: "sid=def; Path=/; HttpOnly"})
	a.HTTP.Res.Body = capture.Body{Data: []byte{0xff, 0x00, 0x01}, Size: 3}
	b := storetest.Rec(2, "orders", "out", "GET", "https://api.stripe.com/v1/charges", 0)
	b.Error = "dial tcp: refused"
	tcp := &capture.Record{Schema: 1, ID: capture.NewID(), Kind: "tcp", Direction: "out", Start: storetest.T0.Add(3 * time.Second),
		Labels: capture.Labels{Service: "orders"}, Net: capture.Net{ServerAddr: "db:5432"}, TCP: &capture.TCP{BytesUp: 1, BytesDown: 2}}
	if _, resp := h.post(h.keys["acme/ingest"], []*capture.Record{a, b, tcp}); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	read := h.keys["acme/read"]

	var har struct {
		Log struct {
			Version string
			Entries []struct {
				StartedDateTime string
				Time            float64
				Request         struct {
					Method, URL, HTTPVersion string
					Cookies                  []struct{ Name, Value string }
					QueryString              []struct{ Name, Value string }
					PostData                 *struct{ MimeType, Text string }
				}
				Response struct {
					Status  int
					Cookies []struct {
						Name, Value string
						HTTPOnly    bool
					}
					Content struct {
						Size           int64
						Text, Encoding string
					}
				}
				Timings struct{ Send, Wait, Receive float64 }
				ID      string `json:"_id"`
				Error   string `json:"_error"`
			}
		}
	}
	body := h.download(read, "/api/v1/export/har")
	if err := json.Unmarshal([]byte(body), &har); err != nil {
		t.Fatalf("HAR is not JSON: %v\n%s", err, body)
	}
	if har.Log.Version != "1.2" || len(har.Log.Entries) != 2 {
		t.Fatalf("HAR: version %q, %d entries, want 1.2 and the 2 http records", har.Log.Version, len(har.Log.Entries))
	}
	ea, eb := har.Log.Entries[0], har.Log.Entries[1] // oldest first, as browsers write HAR
	if ea.ID != a.ID || ea.Request.Method != "POST" || ea.Request.PostData == nil || ea.Request.PostData.Text != `{"n":1}` ||
		ea.Request.PostData.MimeType != "application/json" || len(ea.Request.Cookies) != 2 || ea.Request.Cookies[1].Value != "dark" ||
		len(ea.Request.QueryString) != 1 || ea.Response.Status != 201 || ea.Response.Content.Encoding != "base64" ||
		ea.Response.Content.Text != "/wAB" || len(ea.Response.Cookies) != 1 || !ea.Response.Cookies[0].HTTPOnly ||
		ea.Time != 1 || ea.Timings.Wait != 0.8 || ea.StartedDateTime != "2025-03-01T12:00:01.000Z" {
		t.Errorf("HAR entry of a: %+v", ea)
	}
	if eb.ID != b.ID || eb.Response.Status != 0 || eb.Error != b.Error {
		t.Errorf("HAR entry of a failed exchange: %+v", eb)
	}

	var got []string
	rawBody := h.download(read, "/api/v1/export/raw.jsonl?direction=out")
	if err := raw.Read(strings.NewReader(rawBody), func(r *capture.Record) error { got = append(got, r.ID); return nil }); err != nil {
		t.Fatalf("raw.jsonl does not read back: %v", err)
	}
	if want := recIDs(tcp, b); !slices.Equal(got, want) {
		t.Errorf("raw.jsonl ids %v, want %v", got, want)
	}
	got = nil
	lines := h.download(read, "/api/v1/export/jsonl?limit=2")
	if err := wire.DecodeBatch(strings.NewReader(lines), "", 0, func(r *capture.Record) error { got = append(got, r.ID); return nil }); err != nil {
		t.Fatalf("records.jsonl does not decode: %v", err)
	}
	if want := recIDs(tcp, b); !slices.Equal(got, want) {
		t.Errorf("records.jsonl?limit=2 ids %v, want %v", got, want)
	}
	var e struct{ Error string }
	if code := h.get(read, "/api/v1/export/pdf", &e); code != 404 {
		t.Errorf("export pdf: %d", code)
	}
}

// TestExportPages: an export longer than a store page is whole.
func TestExportPages(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	var recs []*capture.Record
	for i := range exportPage + 7 {
		recs = append(recs, storetest.Rec(i, "s", "in", "GET", "http://s/", 200))
	}
	if _, resp := h.post(h.keys["acme/ingest"], recs); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	n := 0
	err := wire.DecodeBatch(strings.NewReader(h.download(h.keys["acme/read"], "/api/v1/export/records.jsonl")), "", 0,
		func(*capture.Record) error { n++; return nil })
	if err != nil || n != len(recs) {
		t.Errorf("exported %d records (%v), want %d", n, err, len(recs))
	}
}

func TestHealthz(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	var v map[string]string
	if code := h.get("", "/healthz", &v); code != 200 || v["status"] != "ok" {
		t.Errorf("healthz: %d %v", code, v)
	}
	h.store.Close()
	if code := h.get("", "/healthz", &v); code != 503 {
		t.Errorf("healthz with a closed store: %d %v, want 503", code, v)
	}
}
