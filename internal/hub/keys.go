package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tapwire/tapwire/internal/store"
)

// An API key is "tw_" + id + "_" + secret: the id (12 characters, 60
// random bits) is public and names the key in the store and in logs; the
// secret is 32 random bytes (52 characters). Both are lower-case base32.
// The store keeps the SHA-256 of the whole key, never the key: a fast hash
// is enough because the key has 256 bits of entropy, which no brute force
// can search, unlike a password (whose slow hashes would cost CPU on every
// ingest request for no gain).
const keyPrefix = "tw_"

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewKey returns a new key and its stored form.
func NewKey(tenant string, role store.Role, name string, now time.Time) (key string, k store.Key, err error) {
	var id [8]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", k, fmt.Errorf("new key: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", k, fmt.Errorf("new key: %w", err)
	}
	k = store.Key{ID: keyPrefix + b32.EncodeToString(id[:])[:12], Tenant: tenant, Role: role, Name: name, Created: now.UTC()}
	key = k.ID + "_" + b32.EncodeToString(secret[:])
	h := sha256.Sum256([]byte(key))
	k.Hash = h[:]
	return key, k, nil
}

// keyID returns the public id of a key, or "" if key is not one.
func keyID(key string) string {
	if !strings.HasPrefix(key, keyPrefix) {
		return ""
	}
	id, secret, ok := strings.Cut(key[len(keyPrefix):], "_")
	if !ok || len(id) != 12 || len(secret) != 52 {
		return ""
	}
	return keyPrefix + id
}

// Errors of authentication, answered 401 and 403.
var (
	errNoKey     = errors.New("missing or invalid API key (Authorization: Bearer <key>)")
	errWrongRole = errors.New("this key's role does not allow this")
)

// authCacheTTL is how long a checked key is trusted without asking the
// store again: a revoked key keeps working for up to this long.
const authCacheTTL = 30 * time.Second

// authCacheMax bounds the cache of checked keys.
const authCacheMax = 1024

// auth checks API keys against the store, with a small cache so that a
// forwarder's every batch is not a database query.
type auth struct {
	store store.Store
	now   func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]cachedKey // by SHA-256 of the presented key; at most authCacheMax
}

type cachedKey struct {
	key     store.Key
	expires time.Time
}

func newAuth(s store.Store, now func() time.Time) *auth {
	return &auth{store: s, now: now, cache: map[[32]byte]cachedKey{}}
}

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// check returns the valid, unrevoked key that token is, or errNoKey. A
// store failure is returned as it is.
func (a *auth) check(ctx context.Context, token string) (store.Key, error) {
	id := keyID(token)
	if id == "" {
		return store.Key{}, errNoKey
	}
	h := sha256.Sum256([]byte(token))
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[h]
	a.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.key, nil
	}
	k, err := a.store.Key(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Key{}, errNoKey
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("look up key %s: %w", id, err)
	}
	if subtle.ConstantTimeCompare(k.Hash, h[:]) != 1 || !k.Revoked.IsZero() {
		return store.Key{}, errNoKey
	}
	a.mu.Lock()
	if len(a.cache) >= authCacheMax {
		clear(a.cache)
	}
	a.cache[h] = cachedKey{key: k, expires: now.Add(authCacheTTL)}
	a.mu.Unlock()
	return k, nil
}

// forget drops the cached checks of the key with this id, so that its
// revocation takes effect on this hub at once.
func (a *auth) forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, c := range a.cache {
		if c.key.ID == id {
			delete(a.cache, h)
		}
	}
}
