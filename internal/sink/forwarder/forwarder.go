// Package forwarder is the capture.Sink that posts batches of records with
// the wire protocol (version 1): goproxy's sink when FORWARDER_ADDR is a
// host:port, and, through NewURL, the forwarder's sink to the hub
// (internal/sink/hub), which speaks the same protocol.
package forwarder

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/wire"
)

// Options tune a Sink. The zero value is ready to use.
type Options struct {
	// Token, if not empty, is sent as "Authorization: Bearer <token>".
	Token string
	// Timeout bounds one POST, from dial to the end of the answer. If
	// zero, 30s.
	Timeout time.Duration
	// Transport, if not nil, replaces the Sink's own transport (tests).
	Transport http.RoundTripper
	// ProxyFromEnvironment makes the Sink's own transport use
	// HTTP_PROXY/HTTPS_PROXY/NO_PROXY. Off for goproxy, whose HTTP_PROXY
	// may point at goproxy itself; on for the forwarder's hub sink.
	ProxyFromEnvironment bool
	// TLSConfig, if not nil, is the TLS configuration of https:// URLs
	// (tests with their own CA). If nil, the system's roots.
	TLSConfig *tls.Config
}

// Sink posts batches to one forwarder.
type Sink struct {
	url    string
	token  string
	client *http.Client
	own    *http.Transport // nil when Options.Transport was given

	mu   sync.Mutex // guards last
	last encoded    // the most recent batch's body, reused on retry
}

type encoded struct {
	id   string
	body []byte
}

var _ capture.Sink = (*Sink)(nil)

// New returns a Sink that posts to http://addr/v1/batches. addr is a
// host:port, or an http:// URL (for tests and for a forwarder behind a
// path prefix). The Sink never uses a proxy from the environment
// (HTTP_PROXY is the application's, and may point at goproxy itself).
func New(addr string, opts Options) (*Sink, error) {
	url, err := batchURL(addr)
	if err != nil {
		return nil, err
	}
	return build(url, opts), nil
}

// NewURL returns a Sink that posts to base + /v1/batches, where base is an
// http:// or https:// URL (a path prefix is kept).
func NewURL(base string, opts Options) (*Sink, error) {
	base = strings.TrimSpace(base)
	u, err := neturl.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("batch endpoint %q: want an http:// or https:// URL", base)
	}
	return build(strings.TrimSuffix(base, "/")+wire.Path, opts), nil
}

func build(url string, opts Options) *Sink {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	s := &Sink{url: url, token: opts.Token}
	rt := opts.Transport
	if rt == nil {
		s.own = &http.Transport{
			Proxy:           nil, // never HTTP_PROXY by default: see New
			TLSClientConfig: opts.TLSConfig,
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:          2,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: opts.Timeout,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true, // bodies are compressed already
			ForceAttemptHTTP2:     false,
		}
		if opts.ProxyFromEnvironment {
			s.own.Proxy = http.ProxyFromEnvironment
		}
		rt = s.own
	}
	s.client = &http.Client{
		Transport: rt,
		Timeout:   opts.Timeout,
		// A redirect means a misconfigured address; do not follow it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

// batchURL turns FORWARDER_ADDR into the batch endpoint.
func batchURL(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	switch {
	case addr == "":
		return "", errors.New("forwarder address is empty")
	case strings.HasPrefix(addr, "http://"):
		return strings.TrimSuffix(addr, "/") + wire.Path, nil
	case strings.Contains(addr, "://"):
		return "", fmt.Errorf("forwarder address %q: only http:// or host:port", addr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("forwarder address %q: want host:port: %w", addr, err)
	}
	return "http://" + addr + wire.Path, nil
}

// URL returns the endpoint the Sink posts to.
func (s *Sink) URL() string { return s.url }

// Write posts recs as one batch. A 413 splits the batch in halves, each
// posted on its own, down to single records. Errors are *wire.ServerError
// (wrapped in a *capture.PermanentError when retrying cannot help) or
// transport errors, which are worth retrying.
func (s *Sink) Write(ctx context.Context, recs []*capture.Record) error {
	if len(recs) == 0 {
		return nil
	}
	err := s.post(ctx, recs)
	var se *wire.ServerError
	if !errors.As(err, &se) {
		return err
	}
	if se.TooLarge() && len(recs) > 1 {
		half := len(recs) / 2
		if err := s.Write(ctx, recs[:half]); err != nil {
			return err
		}
		// The first half is delivered; if the second fails and the caller
		// retries the whole batch, the first arrives twice. Record ids make
		// that harmless downstream (at least once).
		return s.Write(ctx, recs[half:])
	}
	if se.Permanent() {
		return &capture.PermanentError{Err: fmt.Errorf("post %d records: %w", len(recs), err)}
	}
	return fmt.Errorf("post %d records: %w", len(recs), err)
}

// post sends one batch. A retry of the batch last sent reuses its body.
func (s *Sink) post(ctx context.Context, recs []*capture.Record) error {
	id := wire.BatchID(recs)
	s.mu.Lock()
	body := s.last.body
	if s.last.id != id {
		var buf bytes.Buffer
		if err := wire.EncodeBatch(&buf, recs); err != nil {
			s.mu.Unlock()
			return &capture.PermanentError{Err: err}
		}
		body = buf.Bytes()
		s.last = encoded{id: id, body: body}
	}
	s.mu.Unlock()

	req, err := wire.NewRequest(ctx, s.url, body, id, len(recs), s.token)
	if err != nil {
		return &capture.PermanentError{Err: err}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("post batch to %s: %w", s.url, err)
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if _, err := wire.ParseResponse(resp); err != nil {
		return err
	}
	s.mu.Lock()
	if s.last.id == id {
		s.last = encoded{} // delivered: no retry will need it
	}
	s.mu.Unlock()
	return nil
}

// Probe posts an empty batch (no records): the server answers 200 when it
// is up and takes the token, 401 when it does not. It delivers nothing.
func (s *Sink) Probe(ctx context.Context) error {
	req, err := wire.NewRequest(ctx, s.url, emptyBatch, wire.BatchID(nil), 0, s.token)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	if _, err := wire.ParseResponse(resp); err != nil {
		return fmt.Errorf("probe %s: %w", s.url, err)
	}
	return nil
}

// emptyBatch is the zstd stream of no lines.
var emptyBatch = func() []byte {
	var b bytes.Buffer
	if err := wire.EncodeBatch(&b, nil); err != nil {
		panic(err)
	}
	return b.Bytes()
}()

// Close closes idle connections.
func (s *Sink) Close() error {
	if s.own != nil {
		s.own.CloseIdleConnections()
	}
	return nil
}
