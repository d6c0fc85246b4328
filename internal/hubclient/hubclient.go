// Package hubclient is the Go client of the hub's HTTP API (docs/api.md):
// one Client with the hub's URL, an API key and an *http.Client, a method
// per endpoint over the types of internal/apitype, and one decoding of the
// hub's refusals into *Error.
package hubclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
)

// maxAnswer bounds the JSON answer of an endpoint other than the export,
// and maxErrorBody the body of a refusal that is read for its message.
const (
	maxAnswer    = 256 << 20
	maxErrorBody = 64 << 10
)

// Client asks one hub with one API key. Its methods are safe for
// concurrent use.
type Client struct {
	base *url.URL
	key  string
	http *http.Client
	ua   string
}

// Options are a Client's optional settings.
type Options struct {
	// HTTP sends the requests. If nil, a client of http.DefaultTransport
	// without a timeout (exports stream for as long as they take): bound a
	// call with its context.
	HTTP *http.Client
	// UserAgent is the User-Agent of every request. If empty,
	// "tapwire-hubclient".
	UserAgent string
}

// New returns a client of the hub at hubURL (see ParseURL) with key, an
// API key tw_...; which endpoints it may call depends on the key's role.
func New(hubURL, key string, opts Options) (*Client, error) {
	base, err := ParseURL(hubURL)
	if err != nil {
		return nil, err
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Transport: http.DefaultTransport}
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "tapwire-hubclient"
	}
	return &Client{base: base, key: key, http: opts.HTTP, ua: opts.UserAgent}, nil
}

// ParseURL reads a hub's address: an http:// or https:// URL, or a bare
// host[:port], which means https (as SPEEDSCALE_APP_URL does). A path is
// kept (a hub behind a prefix); a trailing slash is dropped. What the
// client cannot honour is refused with the reason: a query or a fragment
// (the API's paths and parameters are added to the URL), user:password@
// (the API key authenticates), another scheme, no host.
func ParseURL(s string) (*url.URL, error) {
	v := strings.TrimSpace(s)
	if !strings.Contains(v, "://") {
		v = "https://" + v
	}
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "":
		return nil, fmt.Errorf("hub URL %q: want http://host[:port] or https://host[:port] (a bare host[:port] means https)", s)
	case u.Port() == "" && strings.HasSuffix(u.Host, ":"):
		return nil, fmt.Errorf("hub URL %q: the port is empty", s)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("hub URL %q: a query (?%s) cannot be kept: the API adds its own path and parameters to the hub's URL; remove it", s, u.RawQuery)
	case u.Fragment != "" || strings.Contains(v, "#"):
		return nil, fmt.Errorf("hub URL %q: a fragment (#...) means nothing to the hub; remove it", s)
	case u.User != nil:
		return nil, fmt.Errorf("hub URL %q: user:password@ is not used: the API key authenticates; remove it", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	return u, nil
}

// URL returns the hub's base URL, as ParseURL made it.
func (c *Client) URL() *url.URL {
	u := *c.base
	return &u
}

// String returns the hub's base URL.
func (c *Client) String() string { return c.base.String() }

// Key returns the API key the client sends.
func (c *Client) Key() string { return c.key }

// Do sends req, a request to the hub that the caller made (the batch
// protocol's, say), with the client's User-Agent if req has none and its
// key if req has no Authorization. A failure to reach the hub is a
// *TransportError; the answer, whatever its status, is the caller's.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", c.ua)
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	return resp, nil
}

// send sends method path?q with body (JSON, if not nil) and returns the
// answer when it is 2xx, else its *Error.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	if body == nil {
		return c.sendBody(ctx, method, path, q, nil, nil)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return c.sendBody(ctx, method, path, q, bytes.NewReader(b), http.Header{"Content-Type": {"application/json"}})
}

// sendBody is send with a body of any kind and its headers.
func (c *Client) sendBody(ctx context.Context, method, path string, q url.Values, body io.Reader, h http.Header) (*http.Response, error) {
	u := c.base.String() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, c.refusal(resp, method, path)
}

// call sends a request and decodes the 2xx answer into a T.
func call[T any](ctx context.Context, c *Client, method, path string, q url.Values, body any) (*T, error) {
	var v T
	if err := c.call(ctx, method, path, q, body, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

func (c *Client) call(ctx context.Context, method, path string, q url.Values, body, v any) error {
	resp, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	return c.decode(resp, method, path, v)
}

// decode reads a 2xx answer's JSON into v and closes it.
func (c *Client) decode(resp *http.Response, method, path string, v any) error {
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err == nil {
		err = json.Unmarshal(data, v)
		if err != nil {
			err = fmt.Errorf("the answer to %s %s is not the API's JSON (is %s a Tapwire hub?): %w", method, path, c.base, err)
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("hub %s: %w", c.base, err)
	}
	return nil
}

// Error is the hub's answer other than 2xx: its status and the message
// of its JSON body, {"error": "..."}.
type Error struct {
	Hub          string // the hub's base URL
	Method, Path string // the request, without its query
	Status       int
	// Message is the hub's message; if the body was not the API's JSON
	// error (API is false: a proxy's or another server's answer, not a
	// hub's), the start of the body.
	Message string
	API     bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("hub %s answered %d %s to %s %s: %s", e.Hub, e.Status, http.StatusText(e.Status), e.Method, e.Path, e.Message)
}

// Retryable reports whether asking again may be answered otherwise: a
// 429 or a 5xx.
func (e *Error) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// refusal reads the answer of a refused request into an *Error.
func (c *Client) refusal(resp *http.Response, method, path string) *Error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Hub: c.base.String(), Method: method, Path: path, Status: resp.StatusCode}
	var body apitype.Error
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		e.Message, e.API = body.Error, true
		return e
	}
	e.Message = strings.ToValidUTF8(strings.TrimSpace(string(data)), "?")
	if len(e.Message) > 300 {
		e.Message = e.Message[:300] + "..."
	}
	if e.Message == "" {
		e.Message = resp.Status
	}
	return e
}

// StatusOf returns the status of the hub's *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// TransportError is a request that got no answer from the hub.
type TransportError struct {
	Hub string
	Err error
	// Unreachable: the hub did not answer (refused, unknown host, a
	// timeout), as opposed to an answer that was not HTTP.
	Unreachable bool
	// PlainHTTP: the hub's URL is https (as a bare host is) but it speaks
	// plain HTTP.
	PlainHTTP bool
}

func (e *TransportError) Error() string {
	switch {
	case e.PlainHTTP:
		u, _ := url.Parse(e.Hub)
		return fmt.Sprintf("hub %s speaks plain HTTP: give its URL as http://%s (a bare host means https)", e.Hub, u.Host)
	case e.Unreachable:
		return fmt.Sprintf("hub %s unreachable: %v", e.Hub, e.Err)
	}
	return fmt.Sprintf("hub %s: %v", e.Hub, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Retryable reports whether asking again may pass: anything but a hub
// that speaks plain HTTP.
func (e *TransportError) Retryable() bool { return !e.PlainHTTP }

// Retryable reports whether err may pass if asked again: an *Error or a
// *TransportError that says so.
func Retryable(err error) bool {
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}

// transportError makes a failure of http.Client.Do a *TransportError; the
// caller's cancellation is returned as it is.
func (c *Client) transportError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	te := &TransportError{Hub: c.base.String(), Err: inner}
	var op *net.OpError
	var ne net.Error
	switch {
	case strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		te.PlainHTTP = true
	case errors.As(err, &op), errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		te.Unreachable = true
	}
	return te
}

// Whoami is GET /api/v1/whoami: the key's tenant, role, id and name. It
// needs a read key.
func (c *Client) Whoami(ctx context.Context) (*apitype.Whoami, error) {
	return call[apitype.Whoami](ctx, c, http.MethodGet, "/api/v1/whoami", nil, nil)
}

// List is GET /api/v1/records: one page of records, newest first.
func (c *Client) List(ctx context.Context, q apitype.ListQuery) (*apitype.RecordList, error) {
	return call[apitype.RecordList](ctx, c, http.MethodGet, "/api/v1/records", q.Values(), nil)
}

// Arrivals is GET /api/v1/records/arrivals: the records that arrived
// after q.After, in arrival order, and the cursor to ask from next.
func (c *Client) Arrivals(ctx context.Context, q apitype.ArrivalsQuery) (*apitype.Arrivals, error) {
	return call[apitype.Arrivals](ctx, c, http.MethodGet, "/api/v1/records/arrivals", q.Values(), nil)
}

// Get is GET /api/v1/records/{id}: the whole record. A record the tenant
// does not hold is a 404 *Error.
func (c *Client) Get(ctx context.Context, id string) (*capture.Record, error) {
	return call[capture.Record](ctx, c, http.MethodGet, "/api/v1/records/"+url.PathEscape(id), nil, nil)
}

// Body is GET /api/v1/records/{id}/body/{side}: the request's (side
// "req") or the response's ("res") body, made readable by the hub.
func (c *Client) Body(ctx context.Context, id, side string) (*apitype.BodyView, error) {
	return call[apitype.BodyView](ctx, c, http.MethodGet, "/api/v1/records/"+url.PathEscape(id)+"/body/"+url.PathEscape(side), nil, nil)
}

// Services is GET /api/v1/services: each service's traffic and endpoints.
func (c *Client) Services(ctx context.Context, f apitype.Filter) (*apitype.Services, error) {
	return call[apitype.Services](ctx, c, http.MethodGet, "/api/v1/services", filterValues(f), nil)
}

// Map is GET /api/v1/map: the services and who calls whom.
func (c *Client) Map(ctx context.Context, f apitype.Filter) (*store.ServiceMap, error) {
	return call[store.ServiceMap](ctx, c, http.MethodGet, "/api/v1/map", filterValues(f), nil)
}

// Histogram is GET /api/v1/histogram: records and failures per step; step
// 0 lets the hub choose.
func (c *Client) Histogram(ctx context.Context, f apitype.Filter, step time.Duration) (*apitype.Histogram, error) {
	q := filterValues(f)
	if step != 0 {
		q.Set("step", step.String())
	}
	return call[apitype.Histogram](ctx, c, http.MethodGet, "/api/v1/histogram", q, nil)
}

func filterValues(f apitype.Filter) url.Values {
	q := url.Values{}
	f.Encode(q)
	return q
}

// Export is the body of GET /api/v1/export/{format} as it streams. Read it
// to io.EOF, then NextCursor says where the rest begins if the hub cut
// the export at its limit; Close it in any case.
type Export struct {
	// ContentType and Filename are the answer's Content-Type and the
	// filename of its Content-Disposition.
	ContentType, Filename string

	resp *http.Response
	eof  bool
}

// Export asks for the records q selects in format (har, jsonl, raw, or
// the file names records.jsonl, raw.jsonl) and returns the stream. A
// transfer the hub breaks off is an error of Read, never an early io.EOF.
func (c *Client) Export(ctx context.Context, format string, q apitype.ExportQuery) (*Export, error) {
	return c.export(ctx, "/api/v1/export/"+url.PathEscape(format), q)
}

func (c *Client) export(ctx context.Context, path string, q apitype.ExportQuery) (*Export, error) {
	resp, err := c.send(ctx, http.MethodGet, path, q.Values(), nil)
	if err != nil {
		return nil, err
	}
	e := &Export{ContentType: resp.Header.Get("Content-Type"), resp: resp}
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil {
		e.Filename = params["filename"]
	}
	return e, nil
}

func (e *Export) Read(p []byte) (int, error) {
	n, err := e.resp.Body.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

// Close closes the stream.
func (e *Export) Close() error { return e.resp.Body.Close() }

// NextCursor returns the Tapwire-Next-Cursor trailer once the stream was
// read to io.EOF: the ExportQuery.Cursor of the rest, or "" if the export
// holds every record the filter selects.
func (e *Export) NextCursor() string {
	if !e.eof {
		return ""
	}
	return e.resp.Trailer.Get(apitype.ExportNextCursor)
}

// CreateTenant is POST /api/v1/tenants: a tenant with an ingest key and a
// read key. It needs an admin key; a tenant that exists is a 409 *Error.
func (c *Client) CreateTenant(ctx context.Context, req apitype.CreateTenantRequest) (*apitype.CreatedTenant, error) {
	return call[apitype.CreatedTenant](ctx, c, http.MethodPost, "/api/v1/tenants", nil, req)
}

// Tenants is GET /api/v1/tenants.
func (c *Client) Tenants(ctx context.Context) ([]store.Tenant, error) {
	v, err := call[apitype.Tenants](ctx, c, http.MethodGet, "/api/v1/tenants", nil, nil)
	if err != nil {
		return nil, err
	}
	return v.Tenants, nil
}

// Tenant is GET /api/v1/tenants/{tenant}.
func (c *Client) Tenant(ctx context.Context, id string) (*store.Tenant, error) {
	return call[store.Tenant](ctx, c, http.MethodGet, "/api/v1/tenants/"+url.PathEscape(id), nil, nil)
}

// CreateKey is POST /api/v1/tenants/{tenant}/keys: a new key of tenant,
// with its secret shown this once.
func (c *Client) CreateKey(ctx context.Context, tenant string, req apitype.CreateKeyRequest) (*apitype.CreatedKey, error) {
	return call[apitype.CreatedKey](ctx, c, http.MethodPost, "/api/v1/tenants/"+url.PathEscape(tenant)+"/keys", nil, req)
}

// Keys is GET /api/v1/tenants/{tenant}/keys.
func (c *Client) Keys(ctx context.Context, tenant string) ([]store.Key, error) {
	v, err := call[apitype.Keys](ctx, c, http.MethodGet, "/api/v1/tenants/"+url.PathEscape(tenant)+"/keys", nil, nil)
	if err != nil {
		return nil, err
	}
	return v.Keys, nil
}

// RevokeKey is DELETE /api/v1/keys/{id}: id is the key's public id,
// tw_xxxxxxxxxxxx, never the whole key.
func (c *Client) RevokeKey(ctx context.Context, id string) (*store.Key, error) {
	return call[store.Key](ctx, c, http.MethodDelete, "/api/v1/keys/"+url.PathEscape(id), nil, nil)
}

// CreateSnapshot is POST /api/v1/snapshots: a snapshot of the records the
// request's filter selects in its window. It needs an ingest key.
func (c *Client) CreateSnapshot(ctx context.Context, req apitype.CreateSnapshotRequest) (*apitype.Snapshot, error) {
	return call[apitype.Snapshot](ctx, c, http.MethodPost, "/api/v1/snapshots", nil, req)
}

// Snapshots is GET /api/v1/snapshots: the tenant's snapshots, newest
// first. It needs a read key.
func (c *Client) Snapshots(ctx context.Context) ([]apitype.Snapshot, error) {
	v, err := call[apitype.Snapshots](ctx, c, http.MethodGet, "/api/v1/snapshots", nil, nil)
	if err != nil {
		return nil, err
	}
	return v.Snapshots, nil
}

// Snapshot is GET /api/v1/snapshots/{id}: one snapshot with its counts. It
// needs a read key; a snapshot the tenant does not hold is a 404 *Error.
func (c *Client) Snapshot(ctx context.Context, id string) (*apitype.Snapshot, error) {
	return call[apitype.Snapshot](ctx, c, http.MethodGet, "/api/v1/snapshots/"+url.PathEscape(id), nil, nil)
}

// SnapshotRecords is GET /api/v1/snapshots/{id}/records/{format}: all the
// snapshot's records in format (har, jsonl, raw), newest first, as a
// stream to read to io.EOF and Close. It needs a read key.
func (c *Client) SnapshotRecords(ctx context.Context, id, format string) (*Export, error) {
	return c.export(ctx, "/api/v1/snapshots/"+url.PathEscape(id)+"/records/"+url.PathEscape(format), apitype.ExportQuery{})
}

// DeleteSnapshot is DELETE /api/v1/snapshots/{id}; it returns the snapshot
// as it was. It needs an ingest key.
func (c *Client) DeleteSnapshot(ctx context.Context, id string) (*apitype.Snapshot, error) {
	return call[apitype.Snapshot](ctx, c, http.MethodDelete, "/api/v1/snapshots/"+url.PathEscape(id), nil, nil)
}

// UploadSnapshot is POST /api/v1/snapshots/upload: a snapshot named name
// of the records in r, our JSONL, which the client compresses with zstd as
// it sends it. It needs an ingest key.
func (c *Client) UploadSnapshot(ctx context.Context, name string, r io.Reader) (*apitype.Snapshot, error) {
	pr, pw := io.Pipe()
	defer pr.Close() // ends the compressing goroutine if the request stops reading
	go func() {
		zw, err := zstd.NewWriter(pw, zstd.WithEncoderConcurrency(1))
		if err == nil {
			if _, err = io.Copy(zw, r); err == nil {
				err = zw.Close()
			} else {
				zw.Close()
			}
		}
		pw.CloseWithError(err)
	}()
	path := "/api/v1/snapshots/upload"
	resp, err := c.sendBody(ctx, http.MethodPost, path, apitype.SnapshotUploadQuery{Name: name}.Values(), pr,
		http.Header{"Content-Type": {"application/jsonl"}, "Content-Encoding": {"zstd"}})
	if err != nil {
		return nil, err
	}
	var v apitype.Snapshot
	if err := c.decode(resp, http.MethodPost, path, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// PushReport is POST /api/v1/reports: it stores report, a replay's
// report as JSON (replay.Report.WriteJSON), as it is. It needs an ingest
// key.
func (c *Client) PushReport(ctx context.Context, report []byte) (*apitype.ReportSummary, error) {
	path := "/api/v1/reports"
	resp, err := c.sendBody(ctx, http.MethodPost, path, nil, bytes.NewReader(report), http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return nil, err
	}
	var v apitype.ReportSummary
	if err := c.decode(resp, http.MethodPost, path, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Reports is GET /api/v1/reports: the tenant's replay reports, newest
// first. It needs a read key.
func (c *Client) Reports(ctx context.Context, q apitype.ReportListQuery) ([]apitype.ReportSummary, error) {
	v, err := call[apitype.Reports](ctx, c, http.MethodGet, "/api/v1/reports", q.Values(), nil)
	if err != nil {
		return nil, err
	}
	return v.Reports, nil
}

// Report is GET /api/v1/reports/{id}: one report, whole. It needs a read
// key; a report the tenant does not hold is a 404 *Error.
func (c *Client) Report(ctx context.Context, id string) (*apitype.Report, error) {
	return call[apitype.Report](ctx, c, http.MethodGet, "/api/v1/reports/"+url.PathEscape(id), nil, nil)
}

// DeleteReport is DELETE /api/v1/reports/{id}; it returns the report's
// summary. It needs an ingest key.
func (c *Client) DeleteReport(ctx context.Context, id string) (*apitype.Report, error) {
	return call[apitype.Report](ctx, c, http.MethodDelete, "/api/v1/reports/"+url.PathEscape(id), nil, nil)
}
