package mock

import (
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
)

// FuzzMatch sends arbitrary requests to an index of a few recordings: parsing and scoring never panic, and
// a miss always says why.
func FuzzMatch(f *testing.F) {
	ix := NewIndex([]*capture.Record{
		rec(0, "POST", "https://api.local/v1/orders?x=1", `{"a":[1,{"b":"c"}],"n":"9f86d081884c7d65"}`, "one"),
		rec(1, "POST", "https://api.local/v1/orders?x=2", `{"a":[2]}`, "two"),
		rec(2, "GET", "https://api.local/v1/orders/42", "", "three", "Authorization", "Bearer a"),
		rec(3, "GET", "https://api.local/v1/orders/43", "", "four", "Authorization", "Bearer a"),
	}, nil)
	f.Add("POST", "api.local", "/v1/orders", "x=1", "application/json", []byte(`{"a":[1,{"b":"c"}]}`), "")
	f.Add("GET", "API.local:443", "/v1/orders/42", "", "", []byte(nil), "Bearer a")
	f.Add("POST", "api.local", "/v1/orders", "", "application/grpc", []byte("\x00\x00\x00\x00\x03\x08\x96\x01"), "")
	f.Add("PUT", "[::1]:80", "//%zz/", "%zz=&&", "application/x-www-form-urlencoded", []byte("a=%zz"), "x")
	f.Fuzz(func(t *testing.T, method, host, path, query, ctype string, body []byte, auth string) {
		r := &Request{Method: method, Scheme: "https", Host: host, Path: path, RawQuery: query, Body: body,
			Headers: capture.Headers{{Name: "Content-Type", Value: ctype}, {Name: "Authorization", Value: auth}}}
		res := ix.Match(r)
		if !res.Matched() && len(res.Why) == 0 {
			t.Errorf("miss without a reason: %+v", res)
		}
	})
}
