package replay

import (
	"crypto"
	"crypto/hmac"
	_ "crypto/sha256" // HS256
	_ "crypto/sha512" // HS384, HS512
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// signer re-signs JWTs with an HMAC key.
type signer struct {
	key     []byte
	alg     string // "", "keep" or HS256, HS384, HS512
	headers []string
}

var hmacHash = map[string]crypto.Hash{"HS256": crypto.SHA256, "HS384": crypto.SHA384, "HS512": crypto.SHA512}

// resignAll re-signs each JWT in a header value that was in the recorded values (a token that chaining
// replaced is live already). It reports whether it changed anything.
func (s *signer) resignAll(v string, recorded []string, now time.Time) (string, bool) {
	changed := false
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == ';' || r == '=' })
	for _, f := range fields {
		if !strings.HasPrefix(f, "eyJ") || strings.Count(f, ".") != 2 {
			continue
		}
		if !slices.ContainsFunc(recorded, func(r string) bool { return strings.Contains(r, f) }) {
			continue
		}
		if nt, ok := s.resign(f, now); ok {
			v = strings.Replace(v, f, nt, 1)
			changed = true
		}
	}
	return v, changed
}

// resign gives token new iat and nbf (now) and exp (now plus its lifetime), signed with the key.
func (s *signer) resign(token string, now time.Time) (string, bool) {
	parts := strings.Split(token, ".")
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil {
		return "", false
	}
	var hdr map[string]any
	var claims map[string]any
	dec := json.NewDecoder(strings.NewReader(string(cb)))
	dec.UseNumber() // ids beyond 2^53 stay as they are
	if json.Unmarshal(hb, &hdr) != nil || dec.Decode(&claims) != nil {
		return "", false
	}
	alg, _ := hdr["alg"].(string)
	if s.alg != "" && s.alg != "keep" {
		alg = s.alg
	}
	h, ok := hmacHash[alg]
	if !ok {
		return "", false // an algorithm this key cannot sign: the token is sent as recorded
	}
	hdr["alg"] = alg
	life := time.Hour
	iat, hasIat := num(claims["iat"])
	if exp, ok := num(claims["exp"]); ok && hasIat && exp > iat {
		life = time.Duration(exp-iat) * time.Second
	}
	t := now.Unix()
	if hasIat || claims["exp"] == nil {
		claims["iat"] = t
	}
	if _, ok := claims["nbf"]; ok {
		claims["nbf"] = t
	}
	claims["exp"] = t + int64(life/time.Second)
	hj, _ := json.Marshal(hdr)
	cj, _ := json.Marshal(claims)
	signing := base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(cj)
	m := hmac.New(h.New, s.key)
	m.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)), true
}

func num(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return int64(f), err == nil
}
