// Package hub is the capture.Sink that delivers records to the hub: the
// forwarder's sink when SPEEDSCALE_APP_URL is set. The hub's ingest is the
// batch protocol of docs/shipping.md with the API key as bearer token
// (docs/forwarder.md, "The hub sink"), so this is a thin layer over
// internal/wire's Client: it turns SPEEDSCALE_APP_URL into the endpoint and
// uses the proxy settings of the environment. The forwarder hands it its
// spool's lines as they are (wire.Client.WriteLines).
package hub

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/hubclient"
	"github.com/tapwire/tapwire/internal/wire"
)

// Options tune a Sink. The zero value is ready to use.
type Options struct {
	// Timeout bounds one POST. If zero, 30s.
	Timeout time.Duration
	// TLSConfig, if not nil, replaces the system's roots (tests).
	TLSConfig *tls.Config
}

// Sink posts batches to the hub. Write, WriteLines, Probe and Close are
// the wire client's: a 413 splits the batch, 400/413 of one record/415 are
// permanent, 401 (a wrong API key) is a *wire.ServerError the caller
// decides about.
type Sink struct {
	*wire.Client
	base string
}

var _ capture.Sink = (*Sink)(nil)

// New returns a Sink for SPEEDSCALE_APP_URL appURL and the API key. An
// empty key is an error: the hub derives the tenant from it.
func New(appURL, apiKey string, opts Options) (*Sink, error) {
	base, err := BaseURL(appURL)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(apiKey) == "" {
		return nil, errors.New("hub sink: the API key is empty")
	}
	s, err := wire.NewClientURL(base, wire.ClientOptions{
		Token:                strings.TrimSpace(apiKey),
		Timeout:              opts.Timeout,
		TLSConfig:            opts.TLSConfig,
		ProxyFromEnvironment: true,
	})
	if err != nil {
		return nil, fmt.Errorf("hub sink: %w", err)
	}
	return &Sink{Client: s, base: base}, nil
}

// Base returns the hub's base URL, as BaseURL made it.
func (s *Sink) Base() string { return s.base }

// BaseURL turns SPEEDSCALE_APP_URL into the hub's base URL: a host or
// host:port means https://host[:port]; an http:// or https:// URL is
// taken as it is (a path prefix is kept, a trailing slash dropped). It is
// hubclient.ParseURL, the one parser of a hub's address, so the forwarder
// and speedctl read the same address the same way.
func BaseURL(appURL string) (string, error) {
	if strings.TrimSpace(appURL) == "" {
		return "", errors.New("hub address is empty")
	}
	u, err := hubclient.ParseURL(appURL)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}
