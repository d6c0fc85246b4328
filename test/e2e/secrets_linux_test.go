package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

// creds are the run's secrets: what the load balancer's request carries
// to the app and the app passes to the upstream (a bearer token, a Vault
// token, a password as a query parameter and in JSON, a card number in a
// JSON string), and what the upstream answers (a Vault token header, an
// access token, a password, another card number). Each is unique to the run,
// so finding one anywhere is a leak of this run.
type creds struct {
	Bearer, Vault, QueryPassword, JSONPassword, Card   string // request
	ResVault, ResAccessToken, ResJSONPassword, ResCard string // response
}

func newCreds(t *testing.T, nonce string) creds {
	t.Helper()
	c := creds{
		Bearer:          "e2eBearer" + nonce + "x9",
		Vault:           "hvs.e2eVault" + nonce,
		QueryPassword:   "e2e-qpass-" + nonce,
		JSONPassword:    "e2e-jpass-" + nonce,
		Card:            luhnCard(t, "4"),
		ResVault:        "hvs.e2eResVault" + nonce,
		ResAccessToken:  "e2e-access-" + nonce,
		ResJSONPassword: "e2e-rpass-" + nonce,
		ResCard:         luhnCard(t, "5"),
	}
	for _, n := range []string{c.Card, c.ResCard} {
		if !luhnValid(n) {
			t.Fatalf("card number %s does not pass the Luhn check", n)
		}
	}
	return c
}

// all returns the secrets by name.
func (c creds) all() map[string]string {
	return map[string]string{
		"request Authorization bearer": c.Bearer, "request X-Vault-Token": c.Vault,
		"query password": c.QueryPassword, "request JSON password": c.JSONPassword, "request card number": c.Card,
		"response X-Vault-Token": c.ResVault, "response JSON access_token": c.ResAccessToken,
		"response JSON password": c.ResJSONPassword, "response card number": c.ResCard,
	}
}

// luhnCard returns a random 16-digit number that starts with prefix and
// passes the Luhn check.
func luhnCard(t *testing.T, prefix string) string {
	t.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(1e14))
	if err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf("%s%014d", prefix, n)[:15]
	sum := 0
	for i := range len(p) { // from the right, every first digit doubled: the check digit comes after
		d := int(p[len(p)-1-i] - '0')
		if i%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return p + strconv.Itoa((10-sum%10)%10)
}

// luhnValid is the Luhn check, written the other way round.
func luhnValid(n string) bool {
	sum := 0
	for i := len(n) - 1; i >= 0; i-- {
		d := int(n[i] - '0')
		if (len(n)-1-i)%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return len(n) >= 13 && sum%10 == 0
}

// login is what the upstream's /login received.
type login struct {
	id, auth, vault, password, body string
}

// login answers /login with the run's response secrets, after keeping
// what it received: the app's traffic must reach it unchanged.
func (u *upstream) login(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	u.mu.Lock()
	u.logins = append(u.logins, &login{id: r.URL.Query().Get("id"), auth: r.Header.Get("Authorization"),
		vault: r.Header.Get("X-Vault-Token"), password: r.URL.Query().Get("password"), body: string(body)})
	u.mu.Unlock()
	c := u.creds
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Vault-Token", c.ResVault)
	fmt.Fprintf(w, `{"id":%q,"access_token":%q,"user":{"name":"ada","password":%q},"memo":"refund to %s by Friday"}`,
		r.URL.Query().Get("id"), c.ResAccessToken, c.ResJSONPassword, c.ResCard)
}

func (u *upstream) loginOf(id string) *login {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, l := range u.logins {
		if l.id == id {
			return l
		}
	}
	return nil
}

// leaks returns the names of the secrets found in data: in clear anywhere,
// or inside a base64 string of a JSON value (record bodies are base64 in
// JSON), data being JSON lines or one JSON document.
func (c creds) leaks(data []byte) []string {
	found := map[string]bool{}
	secrets := c.all()
	check := func(b []byte) {
		for name, v := range secrets {
			if bytes.Contains(b, []byte(v)) {
				found[name] = true
			}
		}
	}
	check(data)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			check([]byte(v))
			if b, err := base64.StdEncoding.DecodeString(v); err == nil {
				check(b)
			}
		case json.Number:
			check([]byte(v))
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for k, e := range v {
				check([]byte(k))
				walk(e)
			}
		}
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		var v any
		if d.Decode(&v) == nil {
			walk(v)
		}
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// spoolLines returns the JSON lines of every frame in the forwarder's
// spool: segments of the magic "TWSPL001" and frames of a 20-byte header
// (payload length first, little endian) and the payload (docs/forwarder.md,
// "The spool"). A frame still being written is left out.
func spoolLines(dir string) ([]byte, int, error) {
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		return nil, 0, err
	}
	var out []byte
	frames := 0
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			if os.IsNotExist(err) {
				continue // delivered and removed meanwhile
			}
			return nil, 0, err
		}
		if !bytes.HasPrefix(b, []byte("TWSPL001")) {
			return nil, 0, fmt.Errorf("%s: no spool magic: the spool's format changed", seg)
		}
		for off := 8; off+20 <= len(b); {
			n := int(binary.LittleEndian.Uint32(b[off:]))
			if off+20+n > len(b) {
				break
			}
			out = append(out, b[off+20:off+20+n]...)
			out = append(out, '\n')
			off += 20 + n
			frames++
		}
	}
	return out, frames, nil
}

// testSecrets sends the run's secrets through the app, in and out, and
// checks that the traffic carried them unchanged while no record holds
// one in clear: not on the wire from goproxy to the forwarder, not in the
// forwarder's spool, not in the hub, not in the bucket. Each place must
// hold the records themselves (their marker), so that finding nothing
// means something.
func testSecrets(t *testing.T, g *guide) {
	c := g.creds
	marker := "sec-" + g.nonce
	q := url.Values{"id": {marker}, "password": {c.QueryPassword}}
	body := fmt.Sprintf(`{"user":"ada","password":%q,"memo":"pay with %s"}`, c.JSONPassword, c.Card)
	req, _ := http.NewRequest("POST", "http://"+subnet+strconv.Itoa(taskOctet)+":4143/login?"+q.Encode(), strings.NewReader(body))
	req.Host = "notifications.ecs.test"
	req.Header.Set("Authorization", "Bearer "+c.Bearer)
	req.Header.Set("X-Vault-Token", c.Vault)
	req.Header.Set("Content-Type", "application/json")
	res, err := g.lbClient.Do(req)
	if err != nil {
		t.Fatalf("POST /login through the load balancer: %v", err)
	}
	resBody, _ := io.ReadAll(res.Body)
	res.Body.Close()

	// The traffic itself is not changed: redaction works on the records.
	if res.StatusCode != 200 || res.Header.Get("X-Vault-Token") != c.ResVault ||
		!strings.Contains(string(resBody), c.ResJSONPassword) || !strings.Contains(string(resBody), c.ResCard) {
		t.Fatalf("the app answered %d (X-Vault-Token %q) %q, want 200 with the upstream's secrets unchanged", res.StatusCode, res.Header.Get("X-Vault-Token"), resBody)
	}
	if l := g.upstream.loginOf(marker); l == nil {
		t.Fatalf("the upstream received no /login for %s", marker)
	} else if l.auth != "Bearer "+c.Bearer || l.vault != c.Vault || l.password != c.QueryPassword || l.body != body {
		t.Errorf("the upstream received %+v, want the app's secrets unchanged", *l)
	}

	// The leak finder finds every secret in the record the exchange would
	// make unredacted, bodies in base64 as in every JSON record.
	probe, err := json.Marshal(&capture.Record{HTTP: &capture.HTTP{
		Req: capture.Request{URL: "https://" + upstreamName + "/login?" + q.Encode(), Body: capture.Body{Data: []byte(body)},
			Headers: capture.Headers{{Name: "Authorization", Value: "Bearer " + c.Bearer}, {Name: "X-Vault-Token", Value: c.Vault}}},
		Res: &capture.Response{Headers: capture.Headers{{Name: "X-Vault-Token", Value: c.ResVault}}, Body: capture.Body{Data: resBody}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if l := c.leaks(probe); len(l) != len(c.all()) {
		t.Fatalf("the leak finder finds %d of the %d secrets in an unredacted record (%s)", len(l), len(c.all()), strings.Join(l, ", "))
	}

	// The hub: both records, redacted by both rules, their bodies still
	// JSON; no secret in the pages the API returns, and a search for
	// each secret finds nothing.
	got := g.waitHub(t, marker, []string{marker}, 30*time.Second)
	for _, d := range []string{"in", "out"} {
		r := got[d][marker]
		checkGuideRecord(t, r)
		for _, rule := range []string{"std-auth", "std-card"} {
			if !slices.Contains(r.Record.Redactions, rule) {
				t.Errorf("%s record %s: redactions %v, want %s among them", d, r.URL, r.Record.Redactions, rule)
			}
		}
		h := r.Record.HTTP
		if h == nil || h.Res == nil {
			t.Errorf("%s record %s has no HTTP exchange", d, r.URL)
			continue
		}
		if a := h.Req.Headers.Get("Authorization"); a != "REDACTED-std-auth" {
			t.Errorf("%s record %s: Authorization %q, want REDACTED-std-auth", d, r.URL, a)
		}
		var reqJSON, resJSON map[string]any
		if err := json.Unmarshal(h.Req.Body.Data, &reqJSON); err != nil || reqJSON["password"] != "REDACTED-std-auth" {
			t.Errorf("%s record %s: request body %q (%v), want valid JSON with the password REDACTED-std-auth", d, r.URL, h.Req.Body.Data, err)
		}
		if err := json.Unmarshal(h.Res.Body.Data, &resJSON); err != nil || resJSON["access_token"] != "REDACTED-std-auth" {
			t.Errorf("%s record %s: response body %q (%v), want valid JSON with the access_token REDACTED-std-auth", d, r.URL, h.Res.Body.Data, err)
		}
	}
	_, pages, err := g.hubQuery(marker)
	if err != nil {
		t.Fatalf("query the hub: %v", err)
	}
	if l := c.leaks(bytes.Join(pages, []byte("\n"))); len(l) > 0 {
		t.Errorf("the hub's records hold in clear: %s", strings.Join(l, ", "))
	}
	for name, v := range c.all() {
		if recs, err := g.hubRecords(t, v); err != nil || len(recs) > 0 {
			t.Errorf("the hub's search for the %s found %d records (%v), want none", name, len(recs), err)
		}
	}

	// The bucket.
	if g.bucket != nil {
		g.waitBucket(t, []string{marker}, 30*time.Second)
		g.bucket.mu.Lock()
		var all []byte
		for _, b := range g.bucket.lines {
			all = append(all, b...)
		}
		g.bucket.mu.Unlock()
		if !bytes.Contains(all, []byte(marker)) {
			t.Errorf("the bucket's objects, decompressed, do not hold %s", marker)
		}
		if l := c.leaks(all); len(l) > 0 {
			t.Errorf("the bucket's objects hold in clear: %s", strings.Join(l, ", "))
		}
	}

	// The forwarder's spool (the hub has the records, so they were spooled).
	lines, frames, err := spoolLines(filepath.Join(g.fwdDir, "tapwire-spool"))
	if err != nil {
		t.Fatalf("read the forwarder's spool: %v", err)
	}
	if !bytes.Contains(lines, []byte(marker)) {
		t.Errorf("the forwarder's spool (%d frames) does not hold %s", frames, marker)
	}
	if l := c.leaks(lines); len(l) > 0 {
		t.Errorf("the forwarder's spool holds in clear: %s", strings.Join(l, ", "))
	}

	// The wire from goproxy to the forwarder, every byte since the start.
	reqs, raw, err := g.tap.batches()
	g.tap.recording.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	s2s := 0
	for i, r := range reqs {
		bodies = append(bodies, r.body)
		// goproxy's first batch is zstd (it knows nothing of the
		// forwarder yet), the next ones S2: the forwarder lists it.
		switch enc := r.header.Get("Content-Encoding"); {
		case i == 0 && enc != "zstd":
			t.Errorf("goproxy's first batch on the wire has Content-Encoding %q, want zstd", enc)
		case enc == "s2":
			s2s++
		case enc != "zstd":
			t.Errorf("a batch on the wire has Content-Encoding %q, want goproxy's zstd or s2", enc)
		}
	}
	if len(reqs) > 1 && s2s == 0 {
		t.Errorf("none of the %d batches on the wire is in s2, which the forwarder lists in Accept-Encoding", len(reqs))
	}
	all := bytes.Join(bodies, []byte("\n"))
	if !bytes.Contains(all, []byte(marker)) {
		t.Errorf("the %d batches on the wire from goproxy (%d bytes) do not hold %s", len(reqs), len(raw), marker)
	}
	if l := c.leaks(append(raw, all...)); len(l) > 0 {
		t.Errorf("the wire from goproxy to the forwarder carries in clear: %s", strings.Join(l, ", "))
	}
	t.Logf("searched %d batches (%d bytes) on the wire from goproxy, %d spool frames, %d hub pages", len(reqs), len(raw), frames, len(pages))
}
