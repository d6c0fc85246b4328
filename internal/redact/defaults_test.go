package redact

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
)

func defaultRedactor(t testing.TB, bodies bool) *Redactor {
	t.Helper()
	r, err := New(DefaultRules(bodies))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestDefaultMisses: every secret of issue 14's "Default redaction misses", with the default rules alone,
// is gone from the record, the record names the rule that removed it, and JSON bodies stay JSON.
func TestDefaultMisses(t *testing.T) {
	jsonCT := h("Content-Type", "application/json")
	textCT := h("Content-Type", "text/plain")
	tests := []struct {
		name   string
		rec    *capture.Record
		secret string
		rules  []string
	}{
		{"JSON password in a request", httpRec("http://svc/login", jsonCT, `{"user":"ann","password":"hunter2"}`, nil, ""),
			"hunter2", []string{DefaultRuleID}},
		{"JSON token in a response", httpRec("http://svc/login", nil, "", jsonCT, `{"token":"tk-5f1e2d","expires":3600}`),
			"tk-5f1e2d", []string{DefaultRuleID}},
		{"card in a JSON request", httpRec("http://svc/pay", jsonCT, `{"pan":"4111111111111111","amount":5}`, nil, ""),
			"4111111111111111", []string{CardRuleID}},
		{"spaced card in a JSON request", httpRec("http://svc/pay", jsonCT, `{"note":"card 4111 1111 1111 1111 ok"}`, nil, ""),
			"4111 1111 1111 1111", []string{CardRuleID}},
		{"card as a JSON number in a response", httpRec("http://svc/pay", nil, "", jsonCT, `{"card":5500000000000004}`),
			"5500000000000004", []string{CardRuleID}},
		{"spaced card in a text response", httpRec("http://svc/pay", nil, "", textCT, "your card 5500 0000 0000 0004 was charged"),
			"5500 0000 0000 0004", []string{CardRuleID}},
		{"dashed card in a text request", httpRec("http://svc/pay", textCT, "3782-822463-10005", nil, ""),
			"822463", []string{CardRuleID}},
		{"card in an HTML response", httpRec("http://svc/pay", nil, "", h("Content-Type", "text/html"), "<td>4111111111111111</td>"),
			"4111111111111111", []string{CardRuleID}},
		{"password query parameter", httpRec("http://svc/login?user=ann&password=hunter2", nil, "", nil, ""),
			"hunter2", []string{DefaultRuleID}},
		{"X-Vault-Token", httpRec("http://svc/", h("X-Vault-Token", "hvs.CAESIJ"), "", nil, ""), "hvs.CAESIJ", []string{DefaultRuleID}},
		{"Private-Token", httpRec("http://svc/", h("Private-Token", "glpat-xxxx"), "", nil, ""), "glpat-xxxx", []string{DefaultRuleID}},
		{"X-Goog-Api-Key", httpRec("http://svc/", h("X-Goog-Api-Key", "AIzaSyA"), "", nil, ""), "AIzaSyA", []string{DefaultRuleID}},
		{"X-Session-Token", httpRec("http://svc/", h("X-Session-Token", "sess-77"), "", nil, ""), "sess-77", []string{DefaultRuleID}},
		{"X-Forwarded-Authorization", httpRec("http://svc/", h("X-Forwarded-Authorization", "Bearer eyJx.y.z"), "", nil, ""),
			"eyJx.y.z", []string{DefaultRuleID}},
		{"Authentication", httpRec("http://svc/", h("Authentication", "Basic YTpi"), "", nil, ""), "YTpi", []string{DefaultRuleID}},
		{"response header", httpRec("http://svc/", nil, "", h("X-Session-Token", "sess-88"), ""), "sess-88", []string{DefaultRuleID}},
	}
	r := defaultRedactor(t, true)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Redact(tt.rec)
			if !slices.Equal(got, tt.rules) || !slices.Equal(tt.rec.Redactions, tt.rules) {
				t.Errorf("rules %v, record says %v; want %v", got, tt.rec.Redactions, tt.rules)
			}
			b, err := json.Marshal(tt.rec)
			if err != nil {
				t.Fatal(err)
			}
			x := tt.rec.HTTP
			all := string(b) + string(x.Req.Body.Data) + string(x.Res.Body.Data)
			if strings.Contains(all, tt.secret) {
				t.Errorf("%q survived: %s %s %s", tt.secret, b, x.Req.Body.Data, x.Res.Body.Data)
			}
			for _, body := range [][]byte{x.Req.Body.Data, x.Res.Body.Data} {
				if len(body) > 0 && looksJSON(body) && !json.Valid(body) {
					t.Errorf("body is no longer JSON: %s", body)
				}
			}
		})
	}
}

func TestCredentialNames(t *testing.T) {
	headers := []struct {
		name string
		want bool
	}{
		{"Authorization", true}, {"Proxy-Authorization", true}, {"Cookie", true}, {"Set-Cookie", true},
		{"X-Api-Key", true}, {"Api-Key", true}, {"apikey", true}, {"X-Auth-Token", true}, {"X-Access-Token", true},
		{"X-Amz-Security-Token", true}, {"X-Csrf-Token", true}, {"X-XSRF-TOKEN", true},
		{"X-Vault-Token", true}, {"Private-Token", true}, {"X-Goog-Api-Key", true}, {"X-Session-Token", true},
		{"X-Forwarded-Authorization", true}, {"Authentication", true}, {"X-Auth-Method", true}, {"X-Session-Id", true},
		{"Ocp-Apim-Subscription-Key", true}, {"X-Functions-Key", true}, {"X-Client-Secret", true},
		{"X-JWT-Assertion", true}, {"X-Db-Password", true}, {"X_API_KEY", true},
		{"WWW-Authenticate", false}, {"Proxy-Authenticate", false}, {":authority", false}, {"Accept", false},
		{"Content-Type", false}, {"User-Agent", false}, {"X-Request-Id", false}, {"Sec-WebSocket-Key", false},
		{"Idempotency-Key", false}, {"Host", false}, {"Traceparent", false},
	}
	for _, tt := range headers {
		if got := credentialHeader(tt.name); got != tt.want {
			t.Errorf("credentialHeader(%q) = %t, want %t", tt.name, got, tt.want)
		}
	}
	fields := []struct {
		name         string
		field, query bool
	}{
		{"password", true, true}, {"Password", true, true}, {"passwd", true, true}, {"pwd", true, true},
		{"newPassword", true, true}, {"confirm_password", true, true}, {"secret", true, true},
		{"client_secret", true, true}, {"clientSecret", true, true}, {"token", true, true},
		{"access_token", true, true}, {"refresh_token", true, true}, {"id_token", true, true},
		{"github_token", true, true}, {"api_key", true, true}, {"apiKey", true, true}, {"api-key", true, true},
		{"private_key", true, true}, {"passphrase", true, true}, {"cvv", true, true}, {"card_number", true, true},
		{"client_assertion", true, true}, {"X-Amz-Security-Token", true, true},
		{"key", false, true}, {"sig", false, true}, {"X-Amz-Signature", false, true}, {"signature", false, true},
		{"next_page_token", false, false}, {"pageToken", false, false}, {"NextToken", false, false},
		{"continuation_token", false, false}, {"ClientToken", false, false}, {"max_tokens", false, false},
		{"token_type", false, false}, {"username", false, false}, {"email", false, false}, {"Key", false, true},
		{"expires_in", false, false}, {"author", false, false}, {"page", false, false},
	}
	for _, tt := range fields {
		if got := credentialField(tt.name); got != tt.field {
			t.Errorf("credentialField(%q) = %t, want %t", tt.name, got, tt.field)
		}
		if got := credentialQuery(tt.name); got != tt.query {
			t.Errorf("credentialQuery(%q) = %t, want %t", tt.name, got, tt.query)
		}
	}
}

// TestJSONKeepsType: a named value keeps its JSON type, and the body stays valid JSON.
func TestJSONKeepsType(t *testing.T) {
	r := defaultRedactor(t, true)
	tests := []struct{ name, in, want string }{
		{"string", `{"password":"hunter2"}`, `{"password":"REDACTED-std-auth"}`},
		{"number", `{"pin":1,"cvv":123}`, `{"pin":1,"cvv":0}`},
		{"negative float", `{"secret":-1.5e3}`, `{"secret":0}`},
		{"object", `{"credentials":{"user":"a","pass":"b"}}`, `{"credentials":{}}`},
		{"array", `{"tokens":1,"token":["a","b"]}`, `{"tokens":1,"token":[]}`},
		{"booleans and null kept", `{"password":true,"secret":false,"token":null}`, `{"password":true,"secret":false,"token":null}`},
		{"card number", `[4111111111111111, "4111111111111111"]`, `[0, "REDACTED-std-card"]`},
		{"nested", `{"a":[{"b":{"api_key":"k","keep":"v"}}]}`, `{"a":[{"b":{"api_key":"REDACTED-std-auth","keep":"v"}}]}`},
		{"false positives kept", `{"next_page_token":"abc","max_tokens":100,"Key":{"id":{"S":"1"}}}`, `{"next_page_token":"abc","max_tokens":100,"Key":{"id":{"S":"1"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hs hits
			out := r.redactJSON([]byte(tt.in), &hs)
			if out == nil {
				out = []byte(tt.in)
			}
			if string(out) != tt.want {
				t.Errorf("got  %s\nwant %s", out, tt.want)
			}
			if !json.Valid(out) {
				t.Errorf("not JSON: %s", out)
			}
			if hs.any() != (tt.in != tt.want) {
				t.Errorf("hits %v for a body changed %t", hs, tt.in != tt.want)
			}
		})
	}
}

func TestFormAndMultipart(t *testing.T) {
	r := defaultRedactor(t, true)
	const mp = "multipart/form-data; boundary=XyZ"
	tests := []struct {
		name, ct, in, want string
	}{
		{"form fields", "application/x-www-form-urlencoded", "log=ann&pwd=hunter2&client_secret=s3&next=%2F",
			"log=ann&pwd=REDACTED-std-auth&client_secret=REDACTED-std-auth&next=%2F"},
		{"form card with +", "application/x-www-form-urlencoded", "name=ann&cc=4111+1111+1111+1111&x=1",
			"name=ann&cc=REDACTED-std-card&x=1"},
		{"form card with %20", "application/x-www-form-urlencoded", "note=card%204111%201111%201111%201111",
			"note=card+REDACTED-std-card"},
		{"multipart", mp,
			"--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nann\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter2\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{\"token\":\"t\",\"n\":1}\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\ncard 4111 1111 1111 1111\r\n--XyZ--\r\n",
			"--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nann\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nREDACTED-std-auth\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{\"token\":\"REDACTED-std-auth\",\"n\":1}\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\ncard REDACTED-std-card\r\n--XyZ--\r\n"},
		{"multipart with preamble, cut short", mp,
			"preamble 4111111111111111\r\n--XyZ\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\nAIza-cut",
			"preamble REDACTED-std-card\r\n--XyZ\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\nREDACTED-std-auth"},
		{"multipart cut in part headers", mp,
			"--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\nX: 4111111111111111",
			"--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\nX: REDACTED-std-card"},
		{"multipart without its boundary is text", "multipart/form-data; boundary=Other",
			"--XyZ\r\n\r\ncard 4111111111111111", "--XyZ\r\n\r\ncard REDACTED-std-card"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h1 hits
			out := r.redactBody([]byte(tt.in), h("Content-Type", tt.ct), &h1)
			if string(out) != tt.want {
				t.Errorf("got  %q\nwant %q", out, tt.want)
			}
			var h2 hits
			if again := r.redactBody(out, h("Content-Type", tt.ct), &h2); string(again) != string(out) || h2.any() {
				t.Errorf("a second pass changed %q to %q", out, again)
			}
		})
	}
}

// TestBodiesOff: SPEEDSCALE_REDACT_BODIES=false gives std-auth without body fields and no std-card: headers
// and query parameters are still redacted, bodies are not read.
func TestBodiesOff(t *testing.T) {
	r := defaultRedactor(t, false)
	if r.ReadsBodies() {
		t.Errorf("ReadsBodies() = true, want false")
	}
	if got := r.Rules(); !slices.Equal(got, []string{DefaultRuleID}) {
		t.Errorf("rules %v, want [%s]", got, DefaultRuleID)
	}
	body := `{"password":"hunter2","card":"4111111111111111"}`
	rec := httpRec("http://svc/login?password=p1", h("Content-Type", "application/json", "X-Vault-Token", "v"), body, nil, "")
	if got := r.Redact(rec); !slices.Equal(got, []string{DefaultRuleID}) {
		t.Errorf("rules %v, want [%s]", got, DefaultRuleID)
	}
	if string(rec.HTTP.Req.Body.Data) != body {
		t.Errorf("body %s, want it as it was", rec.HTTP.Req.Body.Data)
	}
	if rec.HTTP.Req.URL != "http://svc/login?password=REDACTED-std-auth" || rec.HTTP.Req.Headers.Get("X-Vault-Token") != "REDACTED-std-auth" {
		t.Errorf("url %s headers %v: want the password and the token redacted", rec.HTTP.Req.URL, rec.HTTP.Req.Headers)
	}
	// A rule the user gives still reads bodies.
	more, err := ParseRules(`{"id":"mine","redactlist":{"entries":{"json":["password"]}}}`)
	if err != nil {
		t.Fatal(err)
	}
	r, err = New(append(DefaultRules(false), more...))
	if err != nil {
		t.Fatal(err)
	}
	rec = httpRec("http://svc/", h("Content-Type", "application/json"), body, nil, "")
	if got := r.Redact(rec); !slices.Equal(got, []string{"mine"}) || strings.Contains(string(rec.HTTP.Req.Body.Data), "hunter2") {
		t.Errorf("rules %v body %s, want [mine] and the password gone", got, rec.HTTP.Req.Body.Data)
	}
}

// TestRulePrecedence: where a user rule lists a name the default rule knows by its shape, the earlier
// rule's token is written.
func TestRulePrecedence(t *testing.T) {
	mine, err := ParseRules(`{"id":"mine","redactlist":{"entries":{"all":["X-Vault-Token","password"]}}}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		rules []Rule
		want  string
	}{
		{"default first", append(DefaultRules(true), mine...), "REDACTED-std-auth"},
		{"user rule first", append(mine, DefaultRules(true)...), "REDACTED-mine"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			rec := httpRec("http://svc/?password=p", h("X-Vault-Token", "v"), "", nil, "")
			r.Redact(rec)
			if got := rec.HTTP.Req.Headers.Get("X-Vault-Token"); got != tt.want {
				t.Errorf("header %q, want %q", got, tt.want)
			}
			if want := "http://svc/?password=" + tt.want; rec.HTTP.Req.URL != want {
				t.Errorf("url %q, want %q", rec.HTTP.Req.URL, want)
			}
		})
	}
}
