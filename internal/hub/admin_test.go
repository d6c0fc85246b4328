package hub

import (
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
)

// do sends method path with key and body (JSON, or none if ""), and
// returns the status and the answer's text.
func (h *hub) do(method, key, path, body string) (int, string) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		h.t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return resp.StatusCode, string(b)
}

// mustDo is do that wants status want and decodes the answer into v.
func (h *hub) mustDo(want int, method, key, path, body string, v any) {
	h.t.Helper()
	code, text := h.do(method, key, path, body)
	if code != want {
		h.t.Fatalf("%s %s: %d %s, want %d", method, path, code, text, want)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(text), v); err != nil {
			h.t.Fatalf("%s %s: %q: %v", method, path, text, err)
		}
	}
}

// wantError checks an answer's status and that its {"error"} contains msg.
func (h *hub) wantError(wantCode int, msg, method, key, path, body string) {
	h.t.Helper()
	code, text := h.do(method, key, path, body)
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(text), &e); code != wantCode || err != nil || !strings.Contains(e.Error, msg) {
		h.t.Errorf("%s %s %s: %d %s, want %d and an error containing %q", method, path, body, code, strings.TrimSpace(text), wantCode, msg)
	}
}

type createdTenant struct {
	Tenant store.Tenant
	Keys   []apitype.CreatedKey
}

func (c createdTenant) key(role store.Role) string {
	for _, k := range c.Keys {
		if k.Role == role {
			return k.Secret
		}
	}
	return ""
}

// TestAdminAPI: an admin key creates tenants and keys that work at once,
// lists them, revokes keys; the answers to mistakes.
func TestAdminAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(*testing.T) store.Store) {
		h := newHub(t, open(t), Config{})
		admin, err := createKey(ctx, h.store, "acme", store.RoleAdmin, "ops", time.Now())
		if err != nil {
			t.Fatal(err)
		}

		var c createdTenant
		h.mustDo(201, "POST", admin, "/api/v1/tenants", `{"id": "gamma", "name": "Gamma Ltd", "keyName": "init"}`, &c)
		if c.Tenant.ID != "gamma" || c.Tenant.Name != "Gamma Ltd" || c.Tenant.Created.IsZero() || len(c.Keys) != 2 {
			t.Fatalf("created %+v, want gamma with 2 keys", c)
		}
		for i, role := range []store.Role{store.RoleIngest, store.RoleRead} {
			k := c.Keys[i]
			if k.Role != role || k.Tenant != "gamma" || k.Name != "init" || keyID(k.Secret) != k.ID {
				t.Errorf("key %d: %+v, want a %s key of gamma named init whose id is %s", i, k, role, keyID(k.Secret))
			}
		}

		// The new keys work at once: ingest with one, read with the other;
		// the tenant is apart from the others.
		rec := storetest.Rec(1, "orders", "in", "GET", "http://orders/1", 200)
		if n, resp := h.post(c.key(store.RoleIngest), []*capture.Record{rec}); resp.StatusCode != 200 || n != 1 {
			t.Fatalf("post with gamma's new ingest key: %d %d", resp.StatusCode, n)
		}
		if p := h.list(c.key(store.RoleRead), ""); !slices.Equal(pageIDs(p), recIDs(rec)) {
			t.Errorf("gamma's read key lists %v, want %v", pageIDs(p), recIDs(rec))
		}
		if p := h.list(h.keys["acme/read"], ""); len(p.Items) != 0 {
			t.Errorf("acme sees gamma's records: %v", pageIDs(p))
		}

		h.wantError(409, `tenant "gamma" exists; POST /api/v1/tenants/gamma/keys makes new keys`, "POST", admin, "/api/v1/tenants", `{"id": "gamma"}`)
		for _, body := range []string{`{"id": "Not OK"}`, `{"id": ""}`, `{}`, `{"id": "-x"}`, `{"id": "` + strings.Repeat("a", 65) + `"}`} {
			h.wantError(400, "tenant id", "POST", admin, "/api/v1/tenants", body)
		}
		h.wantError(400, `unknown field "nmae"`, "POST", admin, "/api/v1/tenants", `{"id": "delta", "nmae": "x"}`)
		h.wantError(400, "not the JSON object", "POST", admin, "/api/v1/tenants", `id=delta`)
		h.wantError(400, "more than one JSON value", "POST", admin, "/api/v1/tenants", `{"id": "delta"} {"id": "epsilon"}`)
		h.wantError(400, "name: want at most 200 bytes", "POST", admin, "/api/v1/tenants", `{"id": "delta", "name": "`+strings.Repeat("n", 201)+`"}`)
		h.wantError(400, "name: want at most 200 bytes", "POST", admin, "/api/v1/tenants", `{"id": "delta", "name": "a\nb"}`)
		h.wantError(413, "larger than", "POST", admin, "/api/v1/tenants", `{"id": "delta", "name": "`+strings.Repeat("n", adminMaxBody)+`"}`)

		// A key for an existing tenant, of each role.
		var alice apitype.CreatedKey
		h.mustDo(201, "POST", admin, "/api/v1/tenants/gamma/keys", `{"role": "read", "name": "alice"}`, &alice)
		if alice.Role != store.RoleRead || alice.Tenant != "gamma" || alice.Name != "alice" || keyID(alice.Secret) != alice.ID {
			t.Errorf("new key %+v", alice)
		}
		if p := h.list(alice.Secret, ""); len(p.Items) != 1 {
			t.Errorf("alice's key lists %v", pageIDs(p))
		}
		var admin2 apitype.CreatedKey
		h.mustDo(201, "POST", admin, "/api/v1/tenants/beta/keys", `{"role": "ADMIN"}`, &admin2)
		if admin2.Role != store.RoleAdmin {
			t.Errorf("new admin key: %+v", admin2)
		}
		h.wantError(400, `role "owner": want ingest, read or admin`, "POST", admin, "/api/v1/tenants/gamma/keys", `{"role": "owner"}`)
		h.wantError(400, `role "": want`, "POST", admin, "/api/v1/tenants/gamma/keys", `{"name": "x"}`)
		h.wantError(404, `no tenant "nobody"`, "POST", admin, "/api/v1/tenants/nobody/keys", `{"role": "read"}`)
		h.wantError(400, `tenant id "Gamma"`, "POST", admin, "/api/v1/tenants/Gamma/keys", `{"role": "read"}`)

		// Lists: tenants, one tenant, a tenant's keys without their secrets.
		var ts struct{ Tenants []store.Tenant }
		h.mustDo(200, "GET", admin2.Secret, "/api/v1/tenants", "", &ts)
		var ids []string
		for _, tn := range ts.Tenants {
			ids = append(ids, tn.ID)
		}
		if !slices.Equal(ids, []string{"acme", "beta", "gamma"}) {
			t.Errorf("tenants %v, want acme beta gamma", ids)
		}
		var one store.Tenant
		h.mustDo(200, "GET", admin, "/api/v1/tenants/gamma", "", &one)
		if one.ID != "gamma" || one.Name != "Gamma Ltd" {
			t.Errorf("GET tenant: %+v", one)
		}
		h.wantError(404, `no tenant "nobody"`, "GET", admin, "/api/v1/tenants/nobody", "")
		h.wantError(404, `no tenant "nobody"`, "GET", admin, "/api/v1/tenants/nobody/keys", "")
		code, text := h.do("GET", admin, "/api/v1/tenants/gamma/keys", "")
		var ks struct{ Keys []store.Key }
		if err := json.Unmarshal([]byte(text), &ks); code != 200 || err != nil || len(ks.Keys) != 3 {
			t.Fatalf("gamma's keys: %d %s", code, text)
		}
		for _, secret := range []string{c.Keys[0].Secret, c.Keys[1].Secret, alice.Secret} {
			if strings.Contains(text, secret[len(secret)-52:]) {
				t.Errorf("the key list shows a key's secret: %s", text)
			}
		}

		// Revoking a key stops it at once on this hub, though it was cached.
		var revoked store.Key
		h.mustDo(200, "DELETE", admin, "/api/v1/keys/"+alice.ID, "", &revoked)
		if revoked.ID != alice.ID || revoked.Revoked.IsZero() {
			t.Errorf("revoked %+v", revoked)
		}
		if code := h.get(alice.Secret, "/api/v1/records", nil); code != 401 {
			t.Errorf("list with the revoked key: %d, want 401", code)
		}
		h.wantError(400, "give the key's id ("+alice.ID+"), not the whole key", "DELETE", admin, "/api/v1/keys/"+alice.Secret, "")
		h.wantError(404, `no key "tw_aaaaaaaaaaaa"`, "DELETE", admin, "/api/v1/keys/tw_aaaaaaaaaaaa", "")
		h.wantError(400, `key id "nope"`, "DELETE", admin, "/api/v1/keys/nope", "")
	})
}

// TestAdminRoles: only an admin key manages tenants and keys, and an admin
// key reads no records and posts no batches.
func TestAdminRoles(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	admin, err := createKey(ctx, h.store, "acme", store.RoleAdmin, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrong := admin[:len(admin)-4] + "aaaa"
	if wrong == admin {
		wrong = admin[:len(admin)-4] + "bbbb"
	}
	endpoints := []struct{ method, path, body string }{
		{"POST", "/api/v1/tenants", `{"id": "delta"}`},
		{"GET", "/api/v1/tenants", ""},
		{"GET", "/api/v1/tenants/acme", ""},
		{"POST", "/api/v1/tenants/acme/keys", `{"role": "read"}`},
		{"GET", "/api/v1/tenants/acme/keys", ""},
		{"DELETE", "/api/v1/keys/" + keyID(h.keys["beta/read"]), ""},
	}
	for _, e := range endpoints {
		h.wantError(401, "missing or invalid API key", e.method, "", e.path, e.body)
		h.wantError(401, "missing or invalid API key", e.method, wrong, e.path, e.body)
		h.wantError(403, "is a read key; tenants and keys are managed with an admin key", e.method, h.keys["acme/read"], e.path, e.body)
		h.wantError(403, "is an ingest key; tenants and keys are managed with an admin key", e.method, h.keys["beta/ingest"], e.path, e.body)
	}
	// Nothing was done by the refused requests.
	if ts, _ := h.store.Tenants(ctx); len(ts) != 2 {
		t.Errorf("tenants after refused requests: %+v", ts)
	}
	if k, _ := h.store.Key(ctx, keyID(h.keys["beta/read"])); !k.Revoked.IsZero() {
		t.Errorf("a refused DELETE revoked beta's read key")
	}

	// The admin key reads no records of any tenant (its own included) and
	// posts no batches.
	rec := storetest.Rec(1, "orders", "in", "GET", "http://orders/1", 200)
	if _, resp := h.post(h.keys["acme/ingest"], []*capture.Record{rec}); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	for _, path := range []string{"/api/v1/records", "/api/v1/records/" + rec.ID, "/api/v1/records/" + rec.ID + "/body/req",
		"/api/v1/services", "/api/v1/map", "/api/v1/histogram", "/api/v1/export/har", "/api/v1/export/records.jsonl", "/api/v1/whoami"} {
		h.wantError(403, "is an admin key; the API needs a read key", "GET", admin, path, "")
	}
	if _, resp := h.post(admin, []*capture.Record{storetest.Rec(2, "orders", "in", "GET", "http://orders/2", 200)}); resp.StatusCode != 403 {
		t.Errorf("post with the admin key: %d, want 403", resp.StatusCode)
	}
	if p := h.list(h.keys["acme/read"], ""); len(p.Items) != 1 {
		t.Errorf("acme holds %v after the admin key's batch, want only %s", pageIDs(p), rec.ID)
	}
	// An unknown endpoint: 404 for any valid key, 401 without one.
	h.wantError(404, "no such endpoint", "GET", admin, "/api/v1/nope", "")
	h.wantError(404, "no such endpoint", "PUT", h.keys["acme/read"], "/api/v1/tenants", "")
	h.wantError(401, "missing or invalid", "GET", "", "/api/v1/nope", "")
}
