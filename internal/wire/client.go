package wire

// The client side of the batch protocol: goproxy's sink when FORWARDER_ADDR
// is a host:port, the forwarder's sink to the hub (internal/sink/hub, the
// same protocol with the API key as token), and speedctl's import.

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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/tapwire/tapwire/internal/capture"
)

// ClientOptions tune a Client. The zero value is ready to use.
type ClientOptions struct {
	// Token, if not empty, is sent as "Authorization: Bearer <token>".
	Token string
	// Timeout bounds one POST, from dial to the end of the answer. If
	// zero, 30s.
	Timeout time.Duration
	// Transport, if not nil, replaces the Client's own transport (tests).
	Transport http.RoundTripper
	// ProxyFromEnvironment makes the Client's own transport use
	// HTTP_PROXY/HTTPS_PROXY/NO_PROXY. Off for goproxy, whose HTTP_PROXY
	// may point at goproxy itself; on for the forwarder's hub sink.
	ProxyFromEnvironment bool
	// TLSConfig, if not nil, is the TLS configuration of https:// URLs:
	// goproxy's trusts TLS_CERT_DIR's CA besides the system roots; tests
	// use their own CA. If nil, the system's roots.
	TLSConfig *tls.Config
	// UserAgent, if not empty, is sent as User-Agent.
	UserAgent string
	// FastCompression compresses batches at zstd's fastest level instead
	// of its default, and in S2 (EncodingS2, about three times cheaper
	// again) once the server's Accept-Encoding lists it: goproxy's, whose
	// CPU is taken from the application beside it (the default level's
	// encoder was a tenth of goproxy's user time under load, the fastest
	// level's still 9%; batches to the forwarder stay inside the cluster).
	// A server that then refuses S2 (415: an older one behind the same
	// address) gets the batch again in zstd, and no S2 until it lists it.
	// The forwarder's hub sink keeps zstd's default level: its batches
	// leave the cluster, where bytes cost more than its CPU.
	FastCompression bool
	// OnEncoding, if not nil, is called when a FastCompression client
	// changes the coding of its batches: to EncodingS2 when an answer lists
	// it, to EncodingZstd when one stops listing it or the server refused an
	// S2 batch (refused set). goproxy logs it. It must not block.
	OnEncoding func(enc string, refused bool)
	// ZstdOnly keeps FastCompression at zstd's fastest level even when the
	// server lists S2: 40-60% fewer bytes on the wire for more CPU
	// (goproxy's SHIP_COMPRESSION=zstd).
	ZstdOnly bool
	// Yield, if not nil, is called about every YieldEvery while a batch of
	// records is encoded and compressed (FastCompression only), between
	// records: goproxy makes way there for the requests the network has
	// woken meanwhile (internal/netyield), since a batch of 512 takes a
	// millisecond or more of the one core it shares with them.
	Yield func()
	// Redacted, if not empty, is sent as HeaderRedacted with each batch of
	// records (not with lines): the fingerprint of the redaction the
	// caller applies to every record before it is written (goproxy's
	// shipper, ship.Config.Prepare).
	Redacted string
}

// YieldEvery is how much encoding ClientOptions.Yield is called after.
const YieldEvery = 150 * time.Microsecond

// Client posts batches to one server: a capture.Sink, and a writer of
// records already encoded as JSON lines (WriteLines).
type Client struct {
	url      string
	token    string
	agent    string
	fast     bool         // FastCompression
	s2       atomic.Bool  // with fast: the server's last Accept-Encoding listed s2
	s2Until  atomic.Int64 // Unix ns: a server refused S2; no S2 before then
	zstdOnly bool         // ClientOptions.ZstdOnly
	// onEncoding is ClientOptions.OnEncoding.
	onEncoding func(enc string, refused bool)
	yield      func()
	redacted   string // ClientOptions.Redacted
	client     *http.Client
	own        *http.Transport // nil when Options.Transport was given

	mu   sync.Mutex // guards last
	last encoded    // the most recent batch's body, reused on retry
}

type encoded struct {
	id   string
	enc  string // its Content-Encoding
	body []byte
}

var _ capture.Sink = (*Client)(nil)

// NewClient returns a Client that posts to http://addr/v1/batches. addr is
// a host:port, or an http:// or https:// URL (a forwarder serving TLS,
// verified with opts.TLSConfig; a forwarder behind a path prefix). Unless opts say so, the Client uses no proxy from the
// environment (HTTP_PROXY is the application's, and may point at goproxy
// itself).
func NewClient(addr string, opts ClientOptions) (*Client, error) {
	url, err := batchURL(addr)
	if err != nil {
		return nil, err
	}
	return build(url, opts), nil
}

// NewClientURL returns a Client that posts to base + /v1/batches, where
// base is an http:// or https:// URL (a path prefix is kept).
func NewClientURL(base string, opts ClientOptions) (*Client, error) {
	base = strings.TrimSpace(base)
	u, err := neturl.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("batch endpoint %q: want an http:// or https:// URL", base)
	}
	return build(strings.TrimSuffix(base, "/")+Path, opts), nil
}

func build(url string, opts ClientOptions) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	s := &Client{url: url, token: opts.Token, agent: opts.UserAgent, fast: opts.FastCompression, yield: opts.Yield,
		redacted: opts.Redacted, zstdOnly: opts.ZstdOnly, onEncoding: opts.OnEncoding}
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
	case strings.HasPrefix(addr, "http://"), strings.HasPrefix(addr, "https://"):
		return strings.TrimSuffix(addr, "/") + Path, nil
	case strings.Contains(addr, "://"):
		return "", fmt.Errorf("forwarder address %q: only host:port, http:// or https://", addr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("forwarder address %q: want host:port: %w", addr, err)
	}
	return "http://" + addr + Path, nil
}

// URL returns the endpoint the Client posts to.
func (s *Client) URL() string { return s.url }

// Write posts recs as one batch (see Post).
func (s *Client) Write(ctx context.Context, recs []*capture.Record) error {
	_, err := s.Post(ctx, recs)
	return err
}

// Post posts recs as one batch and returns the server's answer, summed over
// the parts when a 413 split the batch in halves, each posted on its own,
// down to single records. Errors are *ServerError (wrapped in a
// *capture.PermanentError when retrying cannot help) or transport errors,
// which are worth retrying. Post does not retry: the caller's loop does,
// with internal/retry.
func (s *Client) Post(ctx context.Context, recs []*capture.Record) (Accepted, error) {
	if len(recs) == 0 {
		return Accepted{}, nil
	}
	return s.split(ctx, len(recs), func(ctx context.Context) (Accepted, error) {
		return s.postRecords(ctx, recs)
	}, func(ctx context.Context) (Accepted, error) {
		half := len(recs) / 2
		a, err := s.Post(ctx, recs[:half])
		if err != nil {
			return a, err
		}
		b, err := s.Post(ctx, recs[half:])
		return a.add(b), err
	})
}

// WriteLines posts n records already encoded as JSON lines (each ending in
// a newline, as the spool and jsonl.Append hold them) as one batch, as they
// are: nothing is decoded or encoded again. A 413 splits the lines at the
// line boundary nearest their middle, as Post splits records.
func (s *Client) WriteLines(ctx context.Context, lines []byte, n int) error {
	_, err := s.PostLines(ctx, lines, n)
	return err
}

// PostLines is WriteLines that returns the server's answer.
func (s *Client) PostLines(ctx context.Context, lines []byte, n int) (Accepted, error) {
	if n == 0 || len(lines) == 0 {
		return Accepted{}, nil
	}
	return s.split(ctx, n, func(ctx context.Context) (Accepted, error) {
		return s.send(func(enc string) (Accepted, error) {
			var buf bytes.Buffer
			if err := compress(&buf, lines, enc, s.fast); err != nil {
				return Accepted{}, &capture.PermanentError{Err: err}
			}
			return s.post(ctx, buf.Bytes(), enc, linesID(lines), n, "")
		})
	}, func(ctx context.Context) (Accepted, error) {
		first, rest, k := splitLines(lines)
		a, err := s.PostLines(ctx, first, k)
		if err != nil {
			return a, err
		}
		b, err := s.PostLines(ctx, rest, n-k)
		return a.add(b), err
	})
}

// split runs send; on a 413 of a batch of more than one record it runs
// halves instead. The first half may be delivered when the second fails;
// if the caller retries the whole batch, the first arrives twice. Record
// ids make that harmless downstream (at least once).
func (s *Client) split(ctx context.Context, n int, send, halves func(context.Context) (Accepted, error)) (Accepted, error) {
	a, err := send(ctx)
	var se *ServerError
	if !errors.As(err, &se) {
		return a, err
	}
	if se.TooLarge() && n > 1 {
		return halves(ctx)
	}
	if se.Permanent() {
		return a, &capture.PermanentError{Err: fmt.Errorf("post %d records: %w", n, err)}
	}
	return a, fmt.Errorf("post %d records: %w", n, err)
}

// add sums two answers; New is known only when both know it.
func (a Accepted) add(b Accepted) Accepted {
	sum := Accepted{Accepted: a.Accepted + b.Accepted}
	if a.New != nil && b.New != nil {
		n := *a.New + *b.New
		sum.New = &n
	}
	return sum
}

// splitLines cuts lines at the line boundary nearest the middle and
// returns the halves and the count of lines in the first.
func splitLines(lines []byte) (first, rest []byte, k int) {
	mid := len(lines) / 2
	i := bytes.IndexByte(lines[mid:], '\n')
	if i < 0 || mid+i+1 == len(lines) {
		i = bytes.LastIndexByte(lines[:mid], '\n')
		if i < 0 {
			return lines, nil, bytes.Count(lines, []byte{'\n'})
		}
		i -= mid
	}
	cut := mid + i + 1
	return lines[:cut], lines[cut:], bytes.Count(lines[:cut], []byte{'\n'})
}

// linesID is the idempotency key of a batch of lines: a UUID of its bytes.
func linesID(lines []byte) string { return uuid.NewSHA1(batchNamespace, lines).String() }

// encoding returns the Content-Encoding of the next batch: s2 when the
// Client compresses fast and the server said it takes it, else zstd.
func (s *Client) encoding() string {
	if s.fast && s.s2.Load() {
		return EncodingS2
	}
	return EncodingZstd
}

// s2Cooldown is how long a Client sends zstd after a server refused S2,
// whatever answers list meanwhile: behind one address, an older forwarder
// beside newer ones (a rolling upgrade), or a proxy that refuses the
// coding itself, would otherwise have every S2 batch sent twice.
var s2Cooldown = 5 * time.Minute

// S2Cooldown is how long a Client sends zstd after a server refused S2.
func S2Cooldown() time.Duration { return s2Cooldown }

// send runs post with the encoding of the next batch. When the server
// refuses S2 (415: an older server behind the same address, which does
// not list it), the Client sends zstd for s2Cooldown and post runs again
// with zstd: the batch is not lost to a coding the server never offered.
func (s *Client) send(post func(enc string) (Accepted, error)) (Accepted, error) {
	enc := s.encoding()
	a, err := post(enc)
	var se *ServerError
	if enc == EncodingS2 && errors.As(err, &se) && se.Status == http.StatusUnsupportedMediaType {
		s.s2Until.Store(time.Now().Add(s2Cooldown).UnixNano())
		if s.s2.Swap(false) && s.onEncoding != nil {
			s.onEncoding(EncodingZstd, true)
		}
		a, err = post(EncodingZstd)
	}
	return a, err
}

// learn notes whether the server takes S2 from its answer's
// Accept-Encoding (RFC 7694). An answer without one says nothing (an
// older server, a load balancer's own error) and changes nothing; one
// that lists s2 within s2Cooldown of a refusal is not believed yet.
func (s *Client) learn(h http.Header) {
	if !s.fast || s.zstdOnly {
		return
	}
	vals := h.Values("Accept-Encoding")
	if len(vals) == 0 {
		return
	}
	on := listsCoding(vals, EncodingS2)
	if on && time.Now().UnixNano() < s.s2Until.Load() {
		return
	}
	if s.s2.Swap(on) != on && s.onEncoding != nil {
		enc := EncodingZstd
		if on {
			enc = EncodingS2
		}
		s.onEncoding(enc, false)
	}
}

// listsCoding reports whether an Accept-Encoding field (its lines, each a
// comma-separated list of codings with optional parameters) accepts
// coding: listed by name, case-insensitively, and never with a weight of
// 0 or one that is not a number from 0 to 1 (RFC 9110 12.4.2, 12.5.3).
func listsCoding(vals []string, coding string) bool {
	listed := false
	for _, v := range vals {
		for item := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(item, ";")
			if !strings.EqualFold(strings.TrimSpace(name), coding) {
				continue
			}
			if q, ok := weight(params); !ok || q == 0 {
				return false
			}
			listed = true
		}
	}
	return listed
}

// weight returns the q parameter among params ("q=0.5;x=y"), 1 when there
// is none, and false when it is not a number from 0 to 1.
func weight(params string) (float64, bool) {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return q, err == nil && q >= 0 && q <= 1
		}
	}
	return 1, true
}

// postRecords encodes and sends one batch. A retry of the batch last sent
// reuses its body when its encoding is still the one to send.
func (s *Client) postRecords(ctx context.Context, recs []*capture.Record) (Accepted, error) {
	id := BatchID(recs)
	return s.send(func(enc string) (Accepted, error) {
		s.mu.Lock()
		body := s.last.body
		if s.last.id != id || s.last.enc != enc {
			var buf bytes.Buffer
			if err := encodeBatch(&buf, recs, enc, s.fast, s.yield); err != nil {
				s.mu.Unlock()
				return Accepted{}, &capture.PermanentError{Err: err}
			}
			body = buf.Bytes()
			s.last = encoded{id: id, enc: enc, body: body}
		}
		s.mu.Unlock()
		a, err := s.post(ctx, body, enc, id, len(recs), s.redacted)
		if err == nil {
			s.mu.Lock()
			if s.last.id == id {
				s.last = encoded{} // delivered: no retry will need it
			}
			s.mu.Unlock()
		}
		return a, err
	})
}

// post sends one batch of n records encoded in enc, with HeaderRedacted if
// redacted is not empty. A 200 whose body does not say how many it
// accepted accepted all n.
func (s *Client) post(ctx context.Context, body []byte, enc, id string, n int, redacted string) (Accepted, error) {
	req, err := NewRequest(ctx, s.url, body, id, n, s.token)
	if err != nil {
		return Accepted{}, &capture.PermanentError{Err: err}
	}
	if enc != EncodingZstd {
		req.Header.Set("Content-Encoding", enc)
	}
	if s.agent != "" {
		req.Header.Set("User-Agent", s.agent)
	}
	if redacted != "" {
		req.Header.Set(HeaderRedacted, redacted)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return Accepted{}, fmt.Errorf("post batch to %s: %w", s.url, transportError(err))
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	s.learn(resp.Header)
	a, err := ParseResponse(resp)
	if err != nil {
		return Accepted{}, err
	}
	if a.Accepted < 0 {
		a.Accepted = n // 200 means all of them
	}
	return a, nil
}

// transportError says in plain words when the server's certificate was
// not trusted: the usual mistake of a TLS hop (a CA the client does not
// trust, a certificate for another name). It stays a transport error,
// retried: the server's certificate may be replaced.
func transportError(err error) error {
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) {
		return fmt.Errorf("the server's TLS certificate is not trusted (check the CA the client trusts and the certificate's host names): %w", err)
	}
	return err
}

// Probe posts an empty batch (no records): the server answers 200 when it
// is up and takes the token, 401 when it does not. It delivers nothing.
func (s *Client) Probe(ctx context.Context) error {
	req, err := NewRequest(ctx, s.url, emptyBatch, BatchID(nil), 0, s.token)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", s.url, transportError(err))
	}
	defer resp.Body.Close()
	s.learn(resp.Header)
	if _, err := ParseResponse(resp); err != nil {
		return fmt.Errorf("probe %s: %w", s.url, err)
	}
	return nil
}

// emptyBatch is the zstd stream of no lines.
var emptyBatch = func() []byte {
	var b bytes.Buffer
	if err := EncodeBatch(&b, nil); err != nil {
		panic(err)
	}
	return b.Bytes()
}()

// Close closes idle connections.
func (s *Client) Close() error {
	if s.own != nil {
		s.own.CloseIdleConnections()
	}
	return nil
}
