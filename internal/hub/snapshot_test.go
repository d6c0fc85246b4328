package hub

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/storetest"
	"github.com/tapwire/tapwire/internal/wire"
)

// send sends a request with key and returns the status, the body and the
// response's trailer.
func (h *hub) send(method, key, path string, body []byte, header map[string]string) (int, []byte, http.Header) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.url+path, bytes.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Trailer
}

// createSnapshot POSTs a snapshot request and decodes the answer.
func (h *hub) createSnapshot(key string, req any) (int, apitype.Snapshot, string) {
	h.t.Helper()
	b, _ := json.Marshal(req)
	code, body, _ := h.send("POST", key, "/api/v1/snapshots", b, nil)
	var sn apitype.Snapshot
	if code == http.StatusCreated {
		if err := json.Unmarshal(body, &sn); err != nil {
			h.t.Fatalf("create snapshot: %s: %v", body, err)
		}
	}
	return code, sn, string(body)
}

func jsonlIDs(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	if err := wire.DecodeBatch(bytes.NewReader(body), "", 0, func(r *capture.Record) error {
		out = append(out, r.ID)
		return nil
	}); err != nil {
		t.Fatalf("decode JSONL: %v", err)
	}
	return out
}

// TestSnapshots: made from a filter and a window, read in every format and
// through the query API's snapshot parameter, whole after retention,
// deleted; key roles.
func TestSnapshots(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(*testing.T) store.Store) {
		h := newHub(t, open(t), Config{})
		in := storetest.Rec(10, "orders", "in", "GET", "http://orders/v1/orders/7", 200)
		out := storetest.Rec(20, "orders", "out", "POST", "https://pay.example/v1/charges", 402)
		out.HTTP.Req.Body = capture.Body{Data: []byte(`{"card":"4242"}`), Size: 15}
		late := storetest.Rec(3600, "orders", "in", "GET", "http://orders/v1/orders/8", 200)
		users := storetest.Rec(11, "users", "in", "GET", "http://users/", 200)
		if _, resp := h.post(h.keys["acme/ingest"], []*capture.Record{in, out, late, users}); resp.StatusCode != 200 {
			t.Fatalf("post: %d", resp.StatusCode)
		}
		from, to := storetest.T0.Format(time.RFC3339), storetest.T0.Add(time.Minute).Format(time.RFC3339)
		req := apitype.CreateSnapshotRequest{Name: "checkout", Filter: apitype.Filter{Service: "orders"}, From: from, To: to}

		ingest, read := h.keys["acme/ingest"], h.keys["acme/read"]
		if code, _, body := h.createSnapshot(read, req); code != 403 || !strings.Contains(body, "ingest key") {
			t.Errorf("create with a read key: %d %s, want 403 naming the ingest key", code, body)
		}
		if code, _, _ := h.createSnapshot("", req); code != 401 {
			t.Errorf("create without a key: %d, want 401", code)
		}
		for _, bad := range []any{
			apitype.CreateSnapshotRequest{Filter: req.Filter},
			apitype.CreateSnapshotRequest{Name: "x", From: from, Filter: apitype.Filter{From: from}},
			apitype.CreateSnapshotRequest{Name: "x", Filter: apitype.Filter{Direction: "sideways"}},
			map[string]any{"name": "x", "filtre": map[string]string{}},
		} {
			if code, _, body := h.createSnapshot(ingest, bad); code != 400 {
				t.Errorf("create %+v: %d %s, want 400", bad, code, body)
			}
		}
		code, sn, body := h.createSnapshot(ingest, req)
		if code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
		if sn.Records != 2 || sn.Name != "checkout" || sn.Source != "filter" || !strings.HasPrefix(sn.ID, "snap_") ||
			sn.Filter == nil || sn.Filter.Service != "orders" || sn.Filter.From != "" || !sn.From.Equal(storetest.T0) {
			t.Errorf("created: %+v", sn)
		}

		var list apitype.Snapshots
		if code := h.get(read, "/api/v1/snapshots", &list); code != 200 || len(list.Snapshots) != 1 || list.Snapshots[0].ID != sn.ID {
			t.Errorf("list: %d %+v", code, list)
		}
		var shown apitype.Snapshot
		if code := h.get(read, "/api/v1/snapshots/"+sn.ID, &shown); code != 200 || shown.Counts == nil {
			t.Fatalf("show: %d %+v", code, shown)
		}
		wantEndpoints := []store.EndpointCount{
			{Direction: "in", Method: "GET", Host: "orders", Route: "/v1/orders/{id}", Count: 1},
			{Direction: "out", Method: "POST", Host: "pay.example", Route: "/v1/charges", Count: 1},
		}
		if c := shown.Counts; !slices.Equal(c.Endpoints, wantEndpoints) || len(c.Directions) != 2 ||
			!slices.Equal(c.Services, []store.Count{{Name: "orders", Count: 2}}) || len(c.Hosts) != 2 {
			t.Errorf("counts: %+v", c)
		}

		// Retention deletes the traffic; the snapshot stays whole.
		if _, err := h.store.DeleteBefore(ctx, storetest.T0.Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if ids := jsonlIDs(t, []byte(h.download(read, "/api/v1/snapshots/"+sn.ID+"/records/jsonl"))); !slices.Equal(ids, recIDs(out, in)) {
			t.Errorf("snapshot's jsonl after retention: %v, want %v", ids, recIDs(out, in))
		}
		if har := h.download(read, "/api/v1/snapshots/"+sn.ID+"/records/har"); !strings.Contains(har, `"version": "1.2"`) && !strings.Contains(har, `"version":"1.2"`) || !strings.Contains(har, "pay.example") {
			t.Errorf("snapshot's HAR: %.300s", har)
		}
		if raw := h.download(read, "/api/v1/snapshots/"+sn.ID+"/records/raw"); strings.Count(raw, "\n") != 2 {
			t.Errorf("snapshot's raw.jsonl: %.300s", raw)
		}
		code, _, trailer := h.send("GET", read, "/api/v1/snapshots/"+sn.ID+"/records/jsonl?limit=1", nil, nil)
		if code != 200 || trailer.Get(apitype.ExportNextCursor) == "" {
			t.Errorf("snapshot's records with limit=1: %d, trailer %v; want a next cursor", code, trailer)
		}
		if code := h.get(read, "/api/v1/snapshots/"+sn.ID+"/records/md", nil); code != 404 {
			t.Errorf("records/md: %d, want 404", code)
		}
		// The query API reads it with snapshot=ID, as the viewer does.
		if p := h.list(read, "?snapshot="+sn.ID+"&direction=out"); !slices.Equal(pageIDs(p), recIDs(out)) {
			t.Errorf("list ?snapshot&direction=out: %v", pageIDs(p))
		}
		var rec capture.Record
		if code := h.get(read, "/api/v1/records/"+out.ID+"?snapshot="+sn.ID, &rec); code != 200 || rec.ID != out.ID {
			t.Errorf("record of the snapshot: %d %s", code, rec.ID)
		}
		var bv apitype.BodyView
		if code := h.get(read, "/api/v1/records/"+out.ID+"/body/req?snapshot="+sn.ID, &bv); code != 200 || !strings.Contains(bv.Text, "4242") {
			t.Errorf("body of the snapshot's record: %d %+v", code, bv)
		}
		if code := h.get(read, "/api/v1/records/"+out.ID, nil); code != 404 {
			t.Errorf("the traffic's record after retention: %d, want 404", code)
		}

		// Tenants are apart.
		beta, betaIngest := h.keys["beta/read"], h.keys["beta/ingest"]
		var none apitype.Snapshots
		if code := h.get(beta, "/api/v1/snapshots", &none); code != 200 || len(none.Snapshots) != 0 {
			t.Errorf("beta lists %+v", none)
		}
		for _, path := range []string{"/api/v1/snapshots/" + sn.ID, "/api/v1/snapshots/" + sn.ID + "/records/jsonl",
			"/api/v1/records?snapshot=" + sn.ID, "/api/v1/services?snapshot=" + sn.ID, "/api/v1/records/" + out.ID + "?snapshot=" + sn.ID} {
			if code := h.get(beta, path, nil); code != 404 {
				t.Errorf("beta GET %s: %d, want 404", path, code)
			}
		}
		if code, _, _ := h.send("DELETE", betaIngest, "/api/v1/snapshots/"+sn.ID, nil, nil); code != 404 {
			t.Errorf("beta deletes acme's snapshot: %d, want 404", code)
		}

		// Delete: an ingest key's.
		if code, _, _ := h.send("DELETE", read, "/api/v1/snapshots/"+sn.ID, nil, nil); code != 403 {
			t.Errorf("delete with a read key: %d, want 403", code)
		}
		if code, body, _ := h.send("DELETE", ingest, "/api/v1/snapshots/"+sn.ID, nil, nil); code != 200 {
			t.Errorf("delete: %d %s", code, body)
		}
		if code := h.get(read, "/api/v1/snapshots/"+sn.ID, nil); code != 404 {
			t.Errorf("show after delete: %d, want 404", code)
		}
		if code, _, _ := h.send("DELETE", ingest, "/api/v1/snapshots/"+sn.ID, nil, nil); code != 404 {
			t.Errorf("delete twice: %d, want 404", code)
		}
	})
}

// TestSnapshotUpload: our JSONL, compressed or not, becomes a snapshot;
// a bad body leaves none.
func TestSnapshotUpload(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(*testing.T) store.Store) {
		h := newHub(t, open(t), Config{})
		var recs []*capture.Record
		for i := range uploadChunkRecords + 3 { // more than one chunk
			recs = append(recs, storetest.Rec(i, "s", "out", "GET", "http://x.example/", 200))
		}
		var zst bytes.Buffer
		if err := wire.EncodeBatch(&zst, recs); err != nil {
			t.Fatal(err)
		}
		ingest, read := h.keys["acme/ingest"], h.keys["acme/read"]
		zstd := map[string]string{"Content-Encoding": "zstd"}
		if code, _, _ := h.send("POST", read, "/api/v1/snapshots/upload?name=pushed", zst.Bytes(), zstd); code != 403 {
			t.Errorf("upload with a read key: %d, want 403", code)
		}
		if code, body, _ := h.send("POST", ingest, "/api/v1/snapshots/upload", zst.Bytes(), zstd); code != 400 {
			t.Errorf("upload without a name: %d %s, want 400", code, body)
		}
		code, body, _ := h.send("POST", ingest, "/api/v1/snapshots/upload?name=pushed", zst.Bytes(), zstd)
		var sn apitype.Snapshot
		if code != 201 || json.Unmarshal(body, &sn) != nil || sn.Records != int64(len(recs)) || sn.Source != "upload" {
			t.Fatalf("upload: %d %s", code, body)
		}
		if ids := jsonlIDs(t, []byte(h.download(read, "/api/v1/snapshots/"+sn.ID+"/records/jsonl?limit=1000"))); len(ids) != len(recs) {
			t.Errorf("uploaded snapshot has %d records, want %d", len(ids), len(recs))
		}
		// Plain JSONL, with a bad line at the end: refused, and nothing kept.
		plain := []byte(h.download(read, "/api/v1/snapshots/"+sn.ID+"/records/jsonl?limit=3"))
		bad := append(slices.Clip(plain), "{not json\n"...)
		if code, body, _ := h.send("POST", ingest, "/api/v1/snapshots/upload?name=bad", bad, nil); code != 400 {
			t.Errorf("upload of a bad line: %d %s, want 400", code, body)
		}
		if code, body, _ := h.send("POST", ingest, "/api/v1/snapshots/upload?name=br", plain, map[string]string{"Content-Encoding": "br"}); code != 415 {
			t.Errorf("upload in br: %d %s, want 415", code, body)
		}
		code, body, _ = h.send("POST", ingest, "/api/v1/snapshots/upload?name=plain", plain, nil)
		if code != 201 {
			t.Errorf("upload of plain JSONL: %d %s", code, body)
		}
		var list apitype.Snapshots
		h.get(read, "/api/v1/snapshots", &list)
		var names []string
		for _, s := range list.Snapshots {
			names = append(names, s.Name)
		}
		if slices.Contains(names, "bad") || slices.Contains(names, "br") || len(names) != 2 {
			t.Errorf("snapshots after the refused uploads: %q, want pushed and plain", names)
		}
	})
}
