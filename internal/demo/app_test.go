package demo

import (
	"net/http"
	"net/url"
	"testing"
)

// TestProxyFromEnv: the orders app sends its calls to the proxy of the environment, localhost included
// (which Go's http.ProxyFromEnvironment leaves out), as speedctl test and mock need it to.
func TestProxyFromEnv(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		url       string
		wantProxy string // "" for none
	}{
		{name: "https to localhost", env: map[string]string{"HTTPS_PROXY": "http://127.0.0.1:4140"}, url: "https://localhost:9443/v1/charges", wantProxy: "http://127.0.0.1:4140"},
		{name: "lower case", env: map[string]string{"https_proxy": "http://127.0.0.1:4141"}, url: "https://localhost:9443/", wantProxy: "http://127.0.0.1:4141"},
		{name: "http uses HTTP_PROXY", env: map[string]string{"HTTPS_PROXY": "http://a:1", "HTTP_PROXY": "http://b:2"}, url: "http://127.0.0.1:8080/", wantProxy: "http://b:2"},
		{name: "none", url: "https://localhost:9443/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
				t.Setenv(k, tc.env[k])
			}
			u, _ := url.Parse(tc.url)
			got, err := proxyFromEnv(&http.Request{URL: u})
			if err != nil {
				t.Fatal(err)
			}
			s := ""
			if got != nil {
				s = got.String()
			}
			if s != tc.wantProxy {
				t.Errorf("got %q, want %q", s, tc.wantProxy)
			}
		})
	}
}
