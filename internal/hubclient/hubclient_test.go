package hubclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/hub"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/store/storetest"
	"github.com/tapwire/tapwire/internal/wire"
)

var ctx = context.Background()

// testHub is a real hub over a real socket on a SQLite store, as on its
// first start: the tenant default with an ingest, a read and an admin key.
type testHub struct {
	url  string
	keys hub.FirstKeys
}

func startHub(t *testing.T) *testHub {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := hub.BootstrapKeys(ctx, st, time.Now())
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub.NewServer(hub.Config{}, st, nil).Handler())
	t.Cleanup(func() { srv.Close(); st.Close() })
	return &testHub{url: srv.URL, keys: keys}
}

func (h *testHub) client(t *testing.T, key string) *Client {
	t.Helper()
	c, err := New(h.url, key, Options{UserAgent: "hubclient-test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// records are storetest's records 1 to n, with bodies on the first.
func records(n int) []*capture.Record {
	var recs []*capture.Record
	for i := 1; i <= n; i++ {
		r := storetest.Rec(i, "orders", capture.DirIn, "POST", fmt.Sprintf("http://orders.shop/v1/orders/%d", i), 200+i)
		r.ID = fmt.Sprintf("01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e%02d", i)
		recs = append(recs, r)
	}
	recs[0].HTTP.Req.Body = capture.Body{Data: []byte(`{"amount":1200}`), Size: 15}
	recs[0].HTTP.Req.Headers = append(recs[0].HTTP.Req.Headers, capture.Header{Name: "Content-Type", Value: "application/json"})
	return recs
}

// ingest posts recs through Do with the ingest key, as the batch protocol
// does.
func (h *testHub) ingest(t *testing.T, recs []*capture.Record) {
	t.Helper()
	c := h.client(t, h.keys.Ingest)
	var body bytes.Buffer
	if err := wire.EncodeBatch(&body, recs); err != nil {
		t.Fatal(err)
	}
	req, err := wire.NewRequest(ctx, c.String()+wire.Path, body.Bytes(), wire.BatchID(recs), len(recs), c.Key())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if a, err := wire.ParseResponse(resp); err != nil || a.Accepted != len(recs) {
		t.Fatalf("ingest: accepted %d, %v; want %d", a.Accepted, err, len(recs))
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{in: "https://hub.example.com/", want: "https://hub.example.com"},
		{in: "hub.example.com", want: "https://hub.example.com"},
		{in: " hub.example.com:8443 ", want: "https://hub.example.com:8443"},
		{in: "http://proxy/tapwire/", want: "http://proxy/tapwire"},
		{in: "hub.example.com/tapwire", want: "https://hub.example.com/tapwire"},
		{in: "http://hub/a%2Fb", want: "http://hub/a%2Fb"},
		{in: "http://hub/?x=1", wantErr: `hub URL "http://hub/?x=1": a query (?x=1) cannot be kept`},
		{in: "http://hub/?", wantErr: "a query"},
		{in: "hub.example.com?tenant=a", wantErr: "a query (?tenant=a) cannot be kept"},
		{in: "http://hub/#top", wantErr: "a fragment (#...) means nothing to the hub"},
		{in: "http://hub/#", wantErr: "a fragment"},
		{in: "https://me:secret@hub", wantErr: "user:password@ is not used"},
		{in: "ftp://hub", wantErr: `hub URL "ftp://hub": want http://host[:port] or https://host[:port]`},
		{in: "http://", wantErr: "want http://host[:port]"},
		{in: "", wantErr: "want http://host[:port]"},
		{in: "hub:", wantErr: "the port is empty"},
		{in: "http://hub:x", wantErr: "want http://host[:port]"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParseURL(tc.in)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("ParseURL(%q): got %v, %v; want an error containing %q", tc.in, u, err, tc.wantErr)
			case tc.wantErr == "" && (err != nil || u.String() != tc.want):
				t.Errorf("ParseURL(%q): got %v, %v; want %s", tc.in, u, err, tc.want)
			}
		})
	}
}

// TestQueryAPI: every query endpoint against a real hub, with its types.
func TestQueryAPI(t *testing.T) {
	h := startHub(t)
	recs := records(5)
	h.ingest(t, recs)
	c := h.client(t, h.keys.Read)

	who, err := c.Whoami(ctx)
	if err != nil || who.Tenant != "default" || who.Role != store.RoleRead || !strings.HasPrefix(who.Key, "tw_") {
		t.Errorf("Whoami: got %+v, %v; want the tenant default's read key", who, err)
	}

	// Pages, newest first, following the cursors.
	var ids []string
	q := apitype.ListQuery{Limit: 2}
	for pages := 0; ; pages++ {
		page, err := c.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Records {
			ids = append(ids, it.ID[len(it.ID)-2:])
			if it.Record != nil {
				t.Errorf("List without Full: record %s has its whole record", it.ID)
			}
		}
		if page.Next == "" {
			if pages != 2 {
				t.Errorf("List: %d pages of 2 for 5 records, want 3", pages+1)
			}
			break
		}
		q.Cursor = page.Next
	}
	if want := []string{"05", "04", "03", "02", "01"}; !slices.Equal(ids, want) {
		t.Errorf("List: got %v, want %v", ids, want)
	}

	page, err := c.List(ctx, apitype.ListQuery{Filter: apitype.Filter{Status: "203", Method: "post"}, Full: true})
	if err != nil || len(page.Records) != 1 || page.Records[0].Record == nil || page.Records[0].Record.ID != recs[2].ID || page.Records[0].Status != 203 {
		t.Errorf("List status=203 full=true: got %+v, %v; want record %s, whole", page, err, recs[2].ID)
	}

	rec, err := c.Get(ctx, recs[0].ID)
	if err != nil || rec.ID != recs[0].ID || rec.HTTP == nil || rec.HTTP.Req.URL != recs[0].HTTP.Req.URL {
		t.Errorf("Get: got %+v, %v; want record %s", rec, err, recs[0].ID)
	}
	body, err := c.Body(ctx, recs[0].ID, "req")
	if err != nil || body.Kind != "json" || body.Text != "{\n  \"amount\": 1200\n}" || body.Bytes != 15 || body.Size != 15 {
		t.Errorf("Body req: got %+v, %v; want the JSON indented, 15 bytes", body, err)
	}

	svcs, err := c.Services(ctx, apitype.Filter{})
	if err != nil || len(svcs.Services) != 1 || svcs.Services[0].Service != "orders" || svcs.Services[0].Count != 5 {
		t.Errorf("Services: got %+v, %v; want orders with 5 records", svcs, err)
	}
	m, err := c.Map(ctx, apitype.Filter{Direction: "in"})
	if err != nil || len(m.Services) != 1 || m.Services[0].Name != "orders" || m.Services[0].Inbound.Count != 5 {
		t.Errorf("Map: got %+v, %v; want orders with 5 inbound", m, err)
	}
	hist, err := c.Histogram(ctx, apitype.Filter{From: storetest.T0.Format(time.RFC3339), To: storetest.T0.Add(time.Minute).Format(time.RFC3339)}, 10*time.Second)
	var n int64
	if err == nil {
		for _, b := range hist.Buckets {
			n += b.Count
		}
	}
	if err != nil || hist.Step != "10s" || hist.StepMs != 10_000 || len(hist.Buckets) != 6 || n != 5 {
		t.Errorf("Histogram: got %+v, %v; want 6 steps of 10s, 5 records", hist, err)
	}
}

// TestErrors: the hub's refusals decode into *Error with its message;
// failures to reach it into *TransportError.
func TestErrors(t *testing.T) {
	h := startHub(t)
	notHub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	}))
	defer notHub.Close()
	for _, tc := range []struct {
		name     string
		hub, key string
		call     func(c *Client) error
		status   int
		api      bool
		want     string
	}{
		{"unknown record", h.url, h.keys.Read, func(c *Client) error { _, err := c.Get(ctx, "nope"); return err },
			404, true, `answered 404 Not Found to GET /api/v1/records/nope: no record with id "nope"`},
		{"bad filter", h.url, h.keys.Read, func(c *Client) error {
			_, err := c.List(ctx, apitype.ListQuery{Filter: apitype.Filter{Direction: "sideways"}})
			return err
		}, 400, true, `direction="sideways": want in or out`},
		{"wrong key", h.url, "tw_nope", func(c *Client) error { _, err := c.Whoami(ctx); return err },
			401, true, "missing or invalid API key"},
		{"ingest key", h.url, h.keys.Ingest, func(c *Client) error { _, err := c.Whoami(ctx); return err },
			403, true, "the API needs a read key"},
		{"read key as admin", h.url, h.keys.Read, func(c *Client) error { _, err := c.Tenants(ctx); return err },
			403, true, "managed with an admin key"},
		{"not a hub", notHub.URL, h.keys.Read, func(c *Client) error { _, err := c.Whoami(ctx); return err },
			404, false, "answered 404 Not Found to GET /api/v1/whoami: 404 page not found"},
		{"export format", h.url, h.keys.Read, func(c *Client) error {
			_, err := c.Export(ctx, "xml", apitype.ExportQuery{})
			return err
		}, 404, true, `export format "xml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.hub, tc.key, Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = tc.call(c)
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.status || e.API != tc.api || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (%#v); want an *Error %d (API %v) containing %q", err, e, tc.status, tc.api, tc.want)
			}
			if StatusOf(err) != tc.status || Retryable(err) {
				t.Errorf("StatusOf %d, Retryable %v; want %d, false", StatusOf(err), Retryable(err), tc.status)
			}
		})
	}

	// A 5xx may pass.
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"store unavailable"}`)
	}))
	defer down.Close()
	c, _ := New(down.URL, "k", Options{})
	if _, err := c.Whoami(ctx); !Retryable(err) || !strings.Contains(err.Error(), "503 Service Unavailable to GET /api/v1/whoami: store unavailable") {
		t.Errorf("503: got %v, retryable %v; want a retryable error with the hub's message", err, Retryable(err))
	}

	// Nobody listens: unreachable, retryable.
	c, _ = New("http://127.0.0.1:1", "k", Options{})
	_, err := c.Whoami(ctx)
	var te *TransportError
	if !errors.As(err, &te) || !te.Unreachable || !Retryable(err) || !strings.HasPrefix(err.Error(), "hub http://127.0.0.1:1 unreachable: ") {
		t.Errorf("unreachable: got %v; want a retryable *TransportError, unreachable", err)
	}

	// https to a plain-HTTP hub: says which URL to give, not retryable.
	c, _ = New(strings.Replace(h.url, "http://", "https://", 1), h.keys.Read, Options{})
	_, err = c.Whoami(ctx)
	if !errors.As(err, &te) || !te.PlainHTTP || Retryable(err) || !strings.Contains(err.Error(), "speaks plain HTTP: give its URL as "+h.url) {
		t.Errorf("plain HTTP: got %v; want a *TransportError naming %s", err, h.url)
	}

	// The caller's cancellation is its own error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	c = h.client(t, h.keys.Read)
	if _, err := c.Whoami(cctx); !errors.Is(err, context.Canceled) || errors.As(err, &te) {
		t.Errorf("canceled: got %v; want context.Canceled", err)
	}
}

// TestExport: the export streams in the hub's format, a cut export names
// the rest in its trailer, and the parts make the whole.
func TestExport(t *testing.T) {
	h := startHub(t)
	h.ingest(t, records(5))
	c := h.client(t, h.keys.Read)
	read := func(q apitype.ExportQuery) (string, string) {
		t.Helper()
		e, err := c.Export(ctx, "jsonl", q)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		if e.NextCursor() != "" {
			t.Error("NextCursor before EOF is not empty")
		}
		b, err := io.ReadAll(e)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(e.ContentType, "application/") || !strings.HasPrefix(e.Filename, "tapwire-default-") {
			t.Errorf("Content-Type %q, filename %q", e.ContentType, e.Filename)
		}
		return string(b), e.NextCursor()
	}
	all, next := read(apitype.ExportQuery{})
	if strings.Count(all, "\n") != 5 || next != "" {
		t.Fatalf("export: %d lines, next %q; want 5 and none", strings.Count(all, "\n"), next)
	}
	first, next := read(apitype.ExportQuery{Limit: 2})
	if strings.Count(first, "\n") != 2 || next == "" {
		t.Fatalf("export limit=2: %d lines, next %q; want 2 and a cursor", strings.Count(first, "\n"), next)
	}
	rest, next2 := read(apitype.ExportQuery{Cursor: next})
	if first+rest != all || next2 != "" {
		t.Errorf("export in two parts differs from the whole (next %q)", next2)
	}
	failed, _ := read(apitype.ExportQuery{Filter: apitype.Filter{Status: "205"}})
	if strings.Count(failed, "\n") != 1 || !strings.Contains(failed, `"status":205`) {
		t.Errorf("export status=205: %q", failed)
	}
}

// TestAdminAPI: the administration calls, and the keys they make work.
func TestAdminAPI(t *testing.T) {
	h := startHub(t)
	admin := h.client(t, h.keys.Admin)
	created, err := admin.CreateTenant(ctx, apitype.CreateTenantRequest{ID: "acme", Name: "Acme & Co", KeyName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var read string
	var roles []store.Role
	for _, k := range created.Keys {
		roles = append(roles, k.Role)
		if k.Role == store.RoleRead {
			read = k.Secret
		}
		if k.Tenant != "acme" || k.Name != "test" || !strings.HasPrefix(k.Secret, k.ID+"_") {
			t.Errorf("created key %+v", k)
		}
	}
	if created.Tenant.ID != "acme" || created.Tenant.Name != "Acme & Co" || !slices.Equal(roles, []store.Role{store.RoleIngest, store.RoleRead}) {
		t.Errorf("CreateTenant: got %+v; want acme with an ingest and a read key", created)
	}
	who, err := h.client(t, read).Whoami(ctx)
	if err != nil || who.Tenant != "acme" || who.Name != "test" {
		t.Errorf("Whoami with the new read key: got %+v, %v", who, err)
	}

	_, err = admin.CreateTenant(ctx, apitype.CreateTenantRequest{ID: "acme"})
	if StatusOf(err) != http.StatusConflict {
		t.Errorf("CreateTenant again: got %v; want 409", err)
	}
	tenant, err := admin.Tenant(ctx, "acme")
	if err != nil || tenant.Name != "Acme & Co" {
		t.Errorf("Tenant: got %+v, %v", tenant, err)
	}
	if _, err := admin.Tenant(ctx, "nobody"); StatusOf(err) != http.StatusNotFound {
		t.Errorf("Tenant nobody: got %v; want 404", err)
	}
	ts, err := admin.Tenants(ctx)
	if err != nil || len(ts) != 2 || ts[0].ID != "acme" && ts[1].ID != "acme" {
		t.Errorf("Tenants: got %+v, %v; want default and acme", ts, err)
	}
	k, err := admin.CreateKey(ctx, "acme", apitype.CreateKeyRequest{Role: "READ", Name: "alice"})
	if err != nil || k.Role != store.RoleRead || k.Name != "alice" || k.Secret == "" {
		t.Fatalf("CreateKey: got %+v, %v", k, err)
	}
	keys, err := admin.Keys(ctx, "acme")
	if err != nil || len(keys) != 3 {
		t.Errorf("Keys: got %+v, %v; want 3", keys, err)
	}
	revoked, err := admin.RevokeKey(ctx, k.ID)
	if err != nil || revoked.ID != k.ID || revoked.Revoked.IsZero() {
		t.Errorf("RevokeKey: got %+v, %v", revoked, err)
	}
	if _, err := h.client(t, k.Secret).Whoami(ctx); StatusOf(err) != http.StatusUnauthorized {
		t.Errorf("Whoami with the revoked key: got %v; want 401", err)
	}
}

// TestSnapshots: every snapshot call against a real hub, with the key each
// needs, and the refusal of the other.
func TestSnapshots(t *testing.T) {
	h := startHub(t)
	h.ingest(t, records(5))
	w, r := h.client(t, h.keys.Ingest), h.client(t, h.keys.Read)
	req := apitype.CreateSnapshotRequest{Name: "orders", Filter: apitype.Filter{Status: "2xx"}, From: storetest.T0.Format(time.RFC3339)}
	if _, err := r.CreateSnapshot(ctx, req); StatusOf(err) != 403 {
		t.Errorf("CreateSnapshot with a read key: %v, want 403", err)
	}
	sn, err := w.CreateSnapshot(ctx, req)
	if err != nil || sn.Records != 5 {
		t.Fatalf("CreateSnapshot: %+v %v", sn, err)
	}
	list, err := r.Snapshots(ctx)
	if err != nil || len(list) != 1 || list[0].ID != sn.ID {
		t.Errorf("Snapshots: %+v %v", list, err)
	}
	got, err := r.Snapshot(ctx, sn.ID)
	if err != nil || got.Counts == nil || len(got.Counts.Endpoints) != 1 || got.Counts.Endpoints[0].Count != 5 {
		t.Errorf("Snapshot: %+v %v", got, err)
	}
	e, err := r.SnapshotRecords(ctx, sn.ID, "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(e)
	e.Close()
	if err != nil || strings.Count(string(body), "\n") != 5 || e.NextCursor() != "" || e.Filename != "tapwire-"+sn.ID+".jsonl" {
		t.Errorf("SnapshotRecords: %d lines %v, next %q, file %q", strings.Count(string(body), "\n"), err, e.NextCursor(), e.Filename)
	}
	up, err := w.UploadSnapshot(ctx, "pushed", bytes.NewReader(body))
	if err != nil || up.Records != 5 || up.Source != "upload" {
		t.Errorf("UploadSnapshot: %+v %v", up, err)
	}
	if _, err := w.UploadSnapshot(ctx, "bad", strings.NewReader("{not json\n")); StatusOf(err) != 400 {
		t.Errorf("UploadSnapshot of a bad line: %v, want 400", err)
	}
	if _, err := r.DeleteSnapshot(ctx, sn.ID); StatusOf(err) != 403 {
		t.Errorf("DeleteSnapshot with a read key: %v, want 403", err)
	}
	if d, err := w.DeleteSnapshot(ctx, sn.ID); err != nil || d.ID != sn.ID {
		t.Errorf("DeleteSnapshot: %+v %v", d, err)
	}
	if _, err := r.Snapshot(ctx, sn.ID); StatusOf(err) != 404 {
		t.Errorf("Snapshot after delete: %v, want 404", err)
	}
}

func TestReports(t *testing.T) {
	h := startHub(t)
	w, r := h.client(t, h.keys.Ingest), h.client(t, h.keys.Read)
	report := []byte(`{"target": "http://orders:8080", "sent": 2, "status_matched": 1, "passed": false, "answers": []}`)
	if _, err := r.PushReport(ctx, report); StatusOf(err) != 403 {
		t.Errorf("PushReport with a read key: %v, want 403", err)
	}
	if _, err := w.PushReport(ctx, []byte(`{"sent": 2}`)); StatusOf(err) != 400 {
		t.Errorf("PushReport without a target: %v, want 400", err)
	}
	rs, err := w.PushReport(ctx, report)
	if err != nil || rs.Sent != 2 || rs.StatusMatchRate != 0.5 || rs.Passed {
		t.Fatalf("PushReport: %+v %v", rs, err)
	}
	list, err := r.Reports(ctx, apitype.ReportListQuery{Limit: 10})
	if err != nil || len(list) != 1 || list[0] != *rs {
		t.Errorf("Reports: %+v %v, want the one pushed", list, err)
	}
	got, err := r.Report(ctx, rs.ID)
	var want bytes.Buffer
	json.Compact(&want, report)
	if err != nil || got.ReportSummary != *rs || string(got.Report) != want.String() {
		t.Errorf("Report: %+v %s %v, want the report as pushed (compacted)", got.ReportSummary, got.Report, err)
	}
	if d, err := w.DeleteReport(ctx, rs.ID); err != nil || d.ID != rs.ID {
		t.Errorf("DeleteReport: %+v %v", d, err)
	}
	if _, err := r.Report(ctx, rs.ID); StatusOf(err) != 404 {
		t.Errorf("Report after delete: %v, want 404", err)
	}
}
