package wire

import (
	"net/http"
	"net/url"
)

// ExpireS2Cooldown ends c's refusal of S2 as if s2Cooldown had passed,
// for tests.
func ExpireS2Cooldown(c *Client) { c.s2Until.Store(0) }

// TransportProxy is the proxy function of c's own transport, for tests.
func TransportProxy(c *Client) func(*http.Request) (*url.URL, error) {
	if c.own == nil {
		return nil
	}
	return c.own.Proxy
}
