package redact

import (
	"strings"
	"sync"
	"sync/atomic"
)

// The default rules find credentials by the shape of a name, not only by a list: a name is compared after
// normalizing, that is lower case with '-', '_', '.' and spaces removed, so that X-Api-Key, x_api_key and
// xApiKey are one name. docs/forwarder.md lists these tables; keep it in step.

// headerWords: a header whose normalized name contains one of these carries a credential.
var headerWords = []string{
	"auth", // Authorization, Proxy-Authorization, X-Forwarded-Authorization, Authentication, X-Auth-*
	"token", "secret", "password", "passwd", "passphrase", "credential",
	"apikey", "accesskey", "secretkey", "privatekey", "subscriptionkey", "functionskey",
	"session", "cookie", "jwt",
}

// headerNotCredentials are headers whose names contain a word above but whose values are not credentials:
// a server's authentication challenge names a scheme and a realm; HTTP/2's :authority (kept by some HAR
// files) is the host.
var headerNotCredentials = []string{"wwwauthenticate", "proxyauthenticate", ":authority"}

// fieldNames are body fields (JSON, form, multipart) and query parameters that hold credentials.
var fieldNames = []string{
	"password", "passwd", "pwd", "passphrase", "secret", "token", "auth", "authorization", "credential", "credentials",
	"accesstoken", "refreshtoken", "idtoken", "authtoken", "sessiontoken", "bearertoken", "apitoken",
	"apikey", "apisecret", "clientsecret", "clientassertion", "assertion", "privatekey", "secretkey",
	"secretaccesskey", "sessionid", "sessionkey", "jsessionid", "phpsessid", "cookie", "jwt",
	"cvv", "cvv2", "cvc", "cvc2", "cardnumber", "creditcardnumber", "ccnumber",
}

// fieldSuffixes: a field or query parameter whose normalized name ends with one of these holds a
// credential (newPassword, db_password, app_secret, github_token, google_api_key).
var fieldSuffixes = []string{"password", "passwd", "passphrase", "secret", "token", "apikey", "privatekey", "secretkey"}

// fieldNotCredentials end with "token" but hold a position or an idempotency key, not a credential;
// redacting them would break the replay of paginated calls.
var fieldNotCredentials = []string{"pagetoken", "nexttoken", "continuationtoken", "synctoken", "resumetoken", "clienttoken", "idempotencytoken"}

// queryOnlyNames are query parameters that hold credentials but are too common as body field names to
// redact there: an API key (Google's ?key=) and the signatures of pre-signed URLs.
var queryOnlyNames = []string{"key", "sig", "signature", "xamzsignature", "xamzcredential", "xgoogsignature", "xgoogcredential"}

// normalizeName writes name, normalized, into buf when it fits, and returns it.
func normalizeName[S string | []byte](buf []byte, name S) []byte {
	b := buf[:0]
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-' || c == '_' || c == '.' || c == ' ':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

func containsName(list []string, n string) bool {
	for _, s := range list {
		if n == s {
			return true
		}
	}
	return false
}

// headerVerdicts caches credentialHeader by name (a service's records use a few dozen header names over and
// over), up to maxHeaderVerdicts names; names beyond that are decided each time.
var (
	headerVerdicts     sync.Map // string -> bool
	headerVerdictCount atomic.Int32
)

const maxHeaderVerdicts = 4096

// credentialHeader reports whether a header named name carries a credential by the default rule.
func credentialHeader[S string | []byte](name S) bool {
	s, ok := any(name).(string)
	if !ok {
		return credentialHeaderOf(name)
	}
	if v, ok := headerVerdicts.Load(s); ok {
		return v.(bool)
	}
	v := credentialHeaderOf(s)
	if headerVerdictCount.Add(1) <= maxHeaderVerdicts {
		headerVerdicts.Store(strings.Clone(s), v)
	}
	return v
}

func credentialHeaderOf[S string | []byte](name S) bool {
	var buf [64]byte
	n := string(normalizeName(buf[:], name))
	if containsName(headerNotCredentials, n) {
		return false
	}
	for _, w := range headerWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// credentialField reports whether a body field named name holds a credential by the default rule.
func credentialField[S string | []byte](name S) bool {
	var buf [64]byte
	return credentialFieldNorm(string(normalizeName(buf[:], name)))
}

// fieldSet is fieldNames as a set.
var fieldSet = func() map[string]bool {
	m := make(map[string]bool, len(fieldNames))
	for _, n := range fieldNames {
		m[n] = true
	}
	return m
}()

func credentialFieldNorm(n string) bool {
	if fieldSet[n] {
		return true
	}
	for _, s := range fieldNotCredentials {
		if strings.HasSuffix(n, s) {
			return false
		}
	}
	for _, s := range fieldSuffixes {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return false
}

// credentialQuery reports whether a query parameter named name holds a credential by the default rule.
func credentialQuery[S string | []byte](name S) bool {
	var buf [64]byte
	n := string(normalizeName(buf[:], name))
	return credentialFieldNorm(n) || containsName(queryOnlyNames, n)
}
