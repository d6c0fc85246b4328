package replay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

const jwtKey = "s3cret"

// makeJWT signs claims with HS256 and jwtKey.
func makeJWT(claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	c, _ := json.Marshal(claims)
	s := h + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, []byte(jwtKey))
	m.Write([]byte(s))
	return s + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkJWT verifies a Bearer token: signature and expiry.
func checkJWT(auth string, now time.Time) (map[string]any, error) {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 {
		return nil, errors.New("no bearer token")
	}
	m := hmac.New(sha256.New, []byte(jwtKey))
	m.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(m.Sum(nil)) != parts[2] {
		return nil, errors.New("bad signature")
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		return nil, err
	}
	if exp, _ := claims["exp"].(float64); int64(exp) < now.Unix() {
		return nil, errors.New("expired")
	}
	return claims, nil
}

// shopApp logs users in (POST /login → a fresh JWT), creates orders (POST /orders → a fresh id) and shows
// them (GET /orders/ID, only the ones it made, to their owner). Every call but /login needs a valid JWT.
func shopApp() http.Handler {
	var mu sync.Mutex
	orders := map[string]string{} // id → owner
	next := 1000
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/login" {
			var in struct{ User string }
			json.NewDecoder(r.Body).Decode(&in)
			now := time.Now().Unix()
			fmt.Fprintf(w, `{"token":%q}`, makeJWT(map[string]any{"sub": in.User, "iat": now, "exp": now + 600, "nonce": time.Now().UnixNano()}))
			return
		}
		claims, err := checkJWT(r.Header.Get("Authorization"), time.Now())
		if err != nil {
			w.WriteHeader(401)
			fmt.Fprintf(w, `{"error":%q}`, err.Error())
			return
		}
		user, _ := claims["sub"].(string)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == "POST" && r.URL.Path == "/orders":
			next++
			id := fmt.Sprint(next)
			orders[id] = user
			w.WriteHeader(201)
			fmt.Fprintf(w, `{"id":%q}`, id)
		case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/orders/"):
			id := strings.TrimPrefix(r.URL.Path, "/orders/")
			if orders[id] != user {
				w.WriteHeader(404)
				return
			}
			fmt.Fprintf(w, `{"id":%q,"owner":%q}`, id, user)
		case r.URL.Path == "/me":
			fmt.Fprintf(w, `{"user":%q}`, user)
		}
	})
}

// loginRecording is a day-old recording of two users: each logs in, creates an order and reads it back, and a
// third client calls /me with a token it had from elsewhere (its login is not in the recording).
func loginRecording() []*capture.Record {
	day := t0.Unix()
	var recs []*capture.Record
	at := time.Duration(0)
	add := func(r *capture.Record) { recs = append(recs, r); at += time.Millisecond }
	bearer := func(r *capture.Record, tok string) *capture.Record {
		r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: "Authorization", Value: "Bearer " + tok})
		return r
	}
	for i, user := range []string{"ann", "bob"} {
		client := fmt.Sprintf("10.0.0.%d", i+1)
		tok := makeJWT(map[string]any{"sub": user, "iat": day, "exp": day + 600, "nonce": i})
		id := fmt.Sprint(500 + i)
		add(rec("POST", "/login", fmt.Sprintf(`{"user":%q}`, user), client, 200, fmt.Sprintf(`{"token":%q}`, tok), at))
		add(bearer(rec("POST", "/orders", `{"item":"book"}`, client, 201, fmt.Sprintf(`{"id":%q}`, id), at), tok))
		add(bearer(rec("GET", "/orders/"+id, "", client, 200, fmt.Sprintf(`{"id":%q,"owner":%q}`, id, user), at), tok))
	}
	add(bearer(rec("GET", "/me", "", "10.0.0.9", 200, `{"user":"cy"}`, at), makeJWT(map[string]any{"sub": "cy", "iat": day, "exp": day + 3600})))
	return recs
}

func TestLoginFlow(t *testing.T) {
	srv := httptest.NewServer(shopApp())
	defer srv.Close()
	tf := writeFile(t, "transforms.yaml", `
chain:
  - match: POST /login
    json: token
  - match: POST /orders
    json: $.id
jwt:
  key: s3cret
`)
	tr, err := LoadTransforms(tf)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		tf            *Transforms
		statusMatched int
	}{
		// As recorded: the tokens are a day old and the ids are the recorded ones: 401s and 404s.
		{"as recorded", nil, 2},
		{"chained and re-signed", tr, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := run(t, Config{Target: srv.URL, Transforms: tc.tf, Times: 2, Guard: -1}, loginRecording())
			if err != nil {
				t.Fatal(err)
			}
			if rep.StatusMatched != 2*tc.statusMatched || rep.Sent != 14 {
				t.Errorf("status matched %d of %d, want %d: %+v", rep.StatusMatched, rep.Sent, 2*tc.statusMatched, rep.Diffs)
			}
			if tc.tf != nil && rep.BodyMatched != 14 {
				t.Errorf("body matched %d of 14 (the token, the ids and /me as noise or chained): %+v", rep.BodyMatched, rep.Diffs)
			}
		})
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStaticTransforms(t *testing.T) {
	var got []*http.Request
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, bodies = append(got, r), append(bodies, string(b))
	}))
	defer srv.Close()
	r := rec("POST", "/search?from=2025-02-11T20:00:00Z&since=1739304000&cache=1", `{"user":{"name":"ann","pw":"x"},"at":"2025-02-11T20:30:00.123Z","n":1}`, "10.0.0.1", 200, "", 0)
	r.HTTP.Req.Headers = append(r.HTTP.Req.Headers, capture.Header{Name: "X-Trace", Value: "abc"}, capture.Header{Name: "If-Modified-Since", Value: "Tue, 11 Feb 2025 20:00:00 GMT"})
	other := rec("GET", "/other?cache=1", "", "10.0.0.1", 200, "", time.Millisecond)
	tf := writeFile(t, "t.json", `{
  "rules": [
    {"match": "POST /search", "set_headers": {"X-Env": "replay"}, "delete_headers": ["X-Trace"],
     "set_query": {"debug": "1"}, "delete_query": ["cache"],
     "set_body": {"user.name": "replay-user", "$.meta.source": "replay"}, "delete_body": ["user.pw"]}
  ],
  "timestamps": {"shift": true, "headers": ["If-Modified-Since"], "unix": ["query.since"]}
}`)
	tr, err := LoadTransforms(tf)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if _, err := run(t, Config{Target: srv.URL, Transforms: tr, VUs: 1}, []*capture.Record{r, other}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("target got %d requests", len(got))
	}
	q := got[0].URL.Query()
	age := before.Sub(t0) // the shift, give or take the test's own time
	near := func(name string, ts time.Time, recorded time.Time) {
		if d := ts.Sub(recorded.Add(age)); d < -time.Second || d > time.Minute {
			t.Errorf("%s shifted to %v, want %v plus the recording's age (%v)", name, ts, recorded, age)
		}
	}
	from, err := time.Parse(time.RFC3339, q.Get("from"))
	if err != nil {
		t.Fatalf("from=%q: %v", q.Get("from"), err)
	}
	near("query from", from, time.Date(2025, 2, 11, 20, 0, 0, 0, time.UTC))
	var since int64
	fmt.Sscan(q.Get("since"), &since)
	near("query since", time.Unix(since, 0), time.Unix(1739304000, 0))
	ims, _ := http.ParseTime(got[0].Header.Get("If-Modified-Since"))
	near("If-Modified-Since", ims, time.Date(2025, 2, 11, 20, 0, 0, 0, time.UTC))
	if q.Get("debug") != "1" || q.Has("cache") || got[0].Header.Get("X-Env") != "replay" || got[0].Header.Get("X-Trace") != "" {
		t.Errorf("query %v, headers %v: want debug=1, no cache, X-Env set, X-Trace gone", q, got[0].Header)
	}
	var body struct {
		User map[string]any
		At   string
		Meta map[string]any
		N    int
	}
	if err := json.Unmarshal([]byte(bodies[0]), &body); err != nil {
		t.Fatalf("body %s: %v", bodies[0], err)
	}
	if body.User["name"] != "replay-user" || body.User["pw"] != nil || body.Meta["source"] != "replay" || body.N != 1 {
		t.Errorf("body %s: want the name set, pw gone, meta.source added, n kept", bodies[0])
	}
	at, _ := time.Parse(time.RFC3339Nano, body.At)
	near("body at", at, time.Date(2025, 2, 11, 20, 30, 0, 123e6, time.UTC))
	if !strings.HasSuffix(body.At, "Z") || len(body.At) != len("2025-02-11T20:30:00.123Z") {
		t.Errorf("body at %q: want the recorded layout kept", body.At)
	}
	if got[1].URL.RawQuery != "cache=1" {
		t.Errorf("a request the rule does not match changed: %q", got[1].URL.RawQuery)
	}
}

func TestLoadTransformsErrors(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"t.yaml", "rulez: []", "field rulez not found"},
		{"t.json", `{"chain":[{"json":"a","header":"b"}]}`, "exactly one of"},
		{"t.yaml", "jwt: {alg: RS256, key: k}", "jwt.alg"},
		{"t.yaml", "jwt: {}", "a key"},
		{"t.yaml", "chain: [{regex: '('}]", "chain[0].regex"},
	} {
		_, err := LoadTransforms(writeFile(t, tc.name, tc.content))
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrUsage containing %q", tc.content, err, tc.want)
		}
	}
}

func TestReplaceToken(t *testing.T) {
	for _, tc := range []struct{ s, old, repl, want string }{
		{"/orders/1", "1", "7", "/orders/7"},
		{"/orders/12", "1", "7", "/orders/12"},
		{`{"id":"1","n":11}`, "1", "7", `{"id":"7","n":11}`},
		{"a1a 1", "1", "x", "a1a x"},
	} {
		if got := replaceToken(tc.s, tc.old, tc.repl); got != tc.want {
			t.Errorf("replaceToken(%q, %q, %q) = %q, want %q", tc.s, tc.old, tc.repl, got, tc.want)
		}
	}
}
