package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/store"
)

// The administration API (docs/api.md, "Administration"): tenants and keys,
// with an admin key. An admin key acts on every tenant; it reads no records
// and posts no batches, and read and ingest keys get 403 here.

// adminMaxBody bounds the JSON body of an administration request.
const adminMaxBody = 64 << 10

// maxNameLen bounds the name of a tenant or a key, in bytes.
const maxNameLen = 200

func (s *Server) routeAdmin() {
	s.mux.HandleFunc("POST /api/v1/tenants", s.admin(s.createTenant))
	s.mux.HandleFunc("GET /api/v1/tenants", s.admin(s.listTenants))
	s.mux.HandleFunc("GET /api/v1/tenants/{tenant}", s.admin(s.getTenant))
	s.mux.HandleFunc("POST /api/v1/tenants/{tenant}/keys", s.admin(s.createTenantKey))
	s.mux.HandleFunc("GET /api/v1/tenants/{tenant}/keys", s.admin(s.listKeys))
	s.mux.HandleFunc("DELETE /api/v1/keys/{id}", s.admin(s.revokeKey))
}

// adminKey authenticates an administration request: an admin key.
func (s *Server) adminKey(r *http.Request) (store.Key, error) {
	return s.roleKey(r, store.RoleAdmin, "tenants and keys are managed with an admin key (the hub prints one on its first start; hub keys create -tenant default -role admin)")
}

func withArticle(r store.Role) string {
	if r != "" && strings.ContainsRune("aeiou", rune(r[0])) {
		return "an " + string(r)
	}
	return "a " + string(r)
}

// admin wraps an administration handler: it checks the admin key, and
// writes the result as JSON with the handler's status, or the error as
// {"error": msg}.
func (s *Server) admin(h func(*http.Request, store.Key) (int, any, error)) http.HandlerFunc {
	return s.serveJSON(s.adminKey, "  ", h)
}

// decodeBody reads a request's JSON object into v: at most adminMaxBody
// bytes, no unknown fields, nothing after it.
func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, adminMaxBody+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "reading the body: %s", err)
	}
	if len(body) > adminMaxBody {
		return errorf(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes", adminMaxBody)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "the body is not the JSON object this endpoint takes: %s", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "the body has more than one JSON value")
	}
	return nil
}

func checkName(field, name string) error {
	if len(name) > maxNameLen || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return errorf(http.StatusBadRequest, "%s: want at most %d bytes of UTF-8 text without control characters", field, maxNameLen)
	}
	return nil
}

// tenantParam returns the {tenant} of the path, checked.
func tenantParam(r *http.Request) (string, error) {
	id := r.PathValue("tenant")
	if err := store.ValidTenantID(id); err != nil {
		return "", errorf(http.StatusBadRequest, "%s", err)
	}
	return id, nil
}

// findTenant returns the tenant id, or a 404 that says how to make it.
func (s *Server) findTenant(r *http.Request, id string) (store.Tenant, error) {
	ts, err := s.store.Tenants(r.Context())
	if err != nil {
		return store.Tenant{}, fmt.Errorf("list tenants: %w", err)
	}
	i := slices.IndexFunc(ts, func(t store.Tenant) bool { return t.ID == id })
	if i < 0 {
		return store.Tenant{}, errorf(http.StatusNotFound, "no tenant %q (POST /api/v1/tenants creates it)", id)
	}
	return ts[i], nil
}

// newKey makes and stores a key of tenant and returns it with its secret.
func (s *Server) newKey(r *http.Request, by store.Key, tenant string, role store.Role, name string) (apitype.CreatedKey, error) {
	secret, k, err := NewKey(tenant, role, name, s.now())
	if err != nil {
		return apitype.CreatedKey{}, err
	}
	if err := s.store.CreateKey(r.Context(), k); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apitype.CreatedKey{}, errorf(http.StatusNotFound, "no tenant %q (POST /api/v1/tenants creates it)", tenant)
		}
		return apitype.CreatedKey{}, fmt.Errorf("store key: %w", err)
	}
	s.log.Info("admin: created a key", "key", k.ID, "tenant", tenant, "role", string(role), "by", by.ID)
	return apitype.CreatedKey{Key: k, Secret: secret}, nil
}

// createTenant is POST /api/v1/tenants {"id", "name", "keyName"}: the
// tenant, an ingest key and a read key.
func (s *Server) createTenant(r *http.Request, by store.Key) (int, any, error) {
	var req apitype.CreateTenantRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	if err := store.ValidTenantID(req.ID); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "%s", err)
	}
	if err := checkName("name", req.Name); err != nil {
		return 0, nil, err
	}
	if err := checkName("keyName", req.KeyName); err != nil {
		return 0, nil, err
	}
	if req.KeyName == "" {
		req.KeyName = "created with the tenant"
	}
	t := store.Tenant{ID: req.ID, Name: req.Name, Created: s.now().UTC()}
	if err := s.store.CreateTenant(r.Context(), t); err != nil {
		if errors.Is(err, store.ErrExists) {
			return 0, nil, errorf(http.StatusConflict, "tenant %q exists; POST /api/v1/tenants/%s/keys makes new keys for it", req.ID, req.ID)
		}
		return 0, nil, fmt.Errorf("create tenant: %w", err)
	}
	s.log.Info("admin: created a tenant", "tenant", t.ID, "by", by.ID)
	var keys []apitype.CreatedKey
	for _, role := range []store.Role{store.RoleIngest, store.RoleRead} {
		k, err := s.newKey(r, by, t.ID, role, req.KeyName)
		if err != nil {
			return 0, nil, err
		}
		keys = append(keys, k)
	}
	return http.StatusCreated, apitype.CreatedTenant{Tenant: t, Keys: keys}, nil
}

func (s *Server) listTenants(r *http.Request, _ store.Key) (int, any, error) {
	ts, err := s.store.Tenants(r.Context())
	if err != nil {
		return 0, nil, fmt.Errorf("list tenants: %w", err)
	}
	if ts == nil {
		ts = []store.Tenant{}
	}
	return http.StatusOK, apitype.Tenants{Tenants: ts}, nil
}

func (s *Server) getTenant(r *http.Request, _ store.Key) (int, any, error) {
	id, err := tenantParam(r)
	if err != nil {
		return 0, nil, err
	}
	t, err := s.findTenant(r, id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, t, nil
}

// createTenantKey is POST /api/v1/tenants/{tenant}/keys {"role", "name"}.
func (s *Server) createTenantKey(r *http.Request, by store.Key) (int, any, error) {
	id, err := tenantParam(r)
	if err != nil {
		return 0, nil, err
	}
	var req apitype.CreateKeyRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	role, err := store.ParseRole(string(req.Role))
	if err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "%s", err)
	}
	if err := checkName("name", req.Name); err != nil {
		return 0, nil, err
	}
	k, err := s.newKey(r, by, id, role, req.Name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, k, nil
}

func (s *Server) listKeys(r *http.Request, _ store.Key) (int, any, error) {
	id, err := tenantParam(r)
	if err != nil {
		return 0, nil, err
	}
	if _, err := s.findTenant(r, id); err != nil {
		return 0, nil, err
	}
	ks, err := s.store.Keys(r.Context(), id)
	if err != nil {
		return 0, nil, fmt.Errorf("list keys: %w", err)
	}
	if ks == nil {
		ks = []store.Key{}
	}
	return http.StatusOK, apitype.Keys{Keys: ks}, nil
}

// revokeKey is DELETE /api/v1/keys/{id}: the key stops working at once on
// this hub, and within authCacheTTL on other hubs of the same store.
func (s *Server) revokeKey(r *http.Request, by store.Key) (int, any, error) {
	id := r.PathValue("id")
	if keyID(id) != "" {
		return 0, nil, errorf(http.StatusBadRequest, "give the key's id (%s), not the whole key: a URL ends up in logs", keyID(id))
	}
	if !strings.HasPrefix(id, keyPrefix) || len(id) != len(keyPrefix)+12 {
		return 0, nil, errorf(http.StatusBadRequest, "key id %q: want tw_ and 12 characters", id)
	}
	now := s.now().UTC()
	if err := s.store.RevokeKey(r.Context(), id, now); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil, errorf(http.StatusNotFound, "no key %q", id)
		}
		return 0, nil, fmt.Errorf("revoke key: %w", err)
	}
	s.auth.forget(id)
	k, err := s.store.Key(r.Context(), id)
	if err != nil {
		return 0, nil, fmt.Errorf("look up key: %w", err)
	}
	s.log.Info("admin: revoked a key", "key", id, "tenant", k.Tenant, "by", by.ID)
	return http.StatusOK, k, nil
}
