package wire

import (
	"net/http"
	"net/url"
)

// TransportProxy is the proxy function of c's own transport, for tests.
func TransportProxy(c *Client) func(*http.Request) (*url.URL, error) {
	if c.own == nil {
		return nil
	}
	return c.own.Proxy
}
