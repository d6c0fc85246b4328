// Package rrpair is the vendor's record form, an "RRPair" (one JSON object
// per line in a snapshot's raw.jsonl, and the INTERNAL block of a Markdown
// recording), and its mapping to and from capture.Record: ToRecord and
// FromRecord. The mapping, and what each direction loses, is in
// docs/record.md; the file formats built on it are internal/format/raw and
// internal/format/markdown.
//
// Import keeps every fact of the vendor form: what maps onto a Record field
// goes there, and the rest goes to Record.Vendor (capture.VendorFacts), which
// keeps a vendor field only when export would not derive the same value
// from the record. So FromRecord(ToRecord(p)) carries the facts of p.
package rrpair

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tapwire/tapwire/internal/capture"
)

// MsgType is the msgType of every vendor record of an exchange.
const MsgType = "rrpair"

// Errors returned by ToRecord.
var (
	ErrNotPair = errors.New("vendor record is not an rrpair")
	ErrBad     = errors.New("bad vendor record")
)

// Pair is one record in the vendor's JSON form. Field names and types
// follow the vendor's raw.jsonl; top-level fields that this type does not
// model are kept verbatim in Extra.
type Pair struct {
	MsgType        string                 `json:"msgType"`                   // "rrpair"
	Resource       string                 `json:"resource,omitempty"`        // the capturing app (or "responder")
	TS             string                 `json:"ts"`                        // start, RFC 3339 with nanoseconds
	L7Protocol     string                 `json:"l7protocol,omitempty"`      // http, https, or another protocol
	Duration       int64                  `json:"duration"`                  // milliseconds
	Tags           map[string]string      `json:"tags,omitempty"`            // captureMode, proxyType, proxyId, k8sApp...
	UUID           string                 `json:"uuid,omitempty"`            // base64 of the 16 bytes of a UUID
	Direction      string                 `json:"direction"`                 // IN or OUT
	Cluster        string                 `json:"cluster,omitempty"`         // "undefined" when unknown
	Namespace      string                 `json:"namespace,omitempty"`       // "undefined" when unknown
	Service        string                 `json:"service,omitempty"`         // "undefined" when unknown
	Tech           string                 `json:"tech,omitempty"`            // detected technology: DynamoDB, JSON...
	NetworkAddress string                 `json:"network_address,omitempty"` // host:port of the upstream
	Command        string                 `json:"command,omitempty"`         // the HTTP method
	Location       string                 `json:"location,omitempty"`        // the URL path
	Status         string                 `json:"status,omitempty"`          // the response status code, as text
	HTTP           *HTTP                  `json:"http,omitempty"`
	Signature      map[string]string      `json:"signature,omitempty"` // mock-matching keys; values base64
	NetInfo        *capture.VendorNetInfo `json:"netinfo,omitempty"`

	// Extra holds the top-level fields not modelled above (responderMatch,
	// tokenList, other protocols' blocks...), verbatim, by name.
	Extra map[string]json.RawMessage `json:"-"`
}

// HTTP is the vendor's HTTP block.
type HTTP struct {
	Req *Request  `json:"req,omitempty"`
	Res *Response `json:"res,omitempty"`
}

// Request is the vendor's HTTP request.
type Request struct {
	URL        string              `json:"url,omitempty"`     // path and query, as uri
	URI        string              `json:"uri,omitempty"`     // path and query
	Version    string              `json:"version,omitempty"` // "1.1", "2.0"
	Method     string              `json:"method,omitempty"`
	Host       string              `json:"host,omitempty"`
	Headers    map[string][]string `json:"headers,omitempty"`
	BodyBase64 string              `json:"bodyBase64,omitempty"`

	Extra map[string]json.RawMessage `json:"-"` // fields not modelled above, verbatim
}

// Response is the vendor's HTTP response.
type Response struct {
	ContentType   string              `json:"contentType,omitempty"`
	StatusCode    int                 `json:"statusCode"`
	StatusMessage string              `json:"statusMessage,omitempty"` // "200 OK"
	Headers       map[string][]string `json:"headers,omitempty"`
	BodyBase64    string              `json:"bodyBase64,omitempty"`

	Extra map[string]json.RawMessage `json:"-"` // fields not modelled above, verbatim
}

func factsZero(v *capture.VendorFacts) bool {
	return v == nil || reflect.ValueOf(*v).IsZero()
}

// Tags that carry, in the vendor form, facts of a Record that the vendor form
// has no field for. FromRecord writes them; ToRecord reads them back into
// their fields and removes them from Tags.
const (
	TagPod         = "k8sAppPodName"        // Labels.Pod (the vendor's own tag)
	TagError       = "tapwire.error"        // Error
	TagTTFB        = "tapwire.ttfbUs"       // TTFBMicros, decimal
	TagDuration    = "tapwire.durationUs"   // DurMicros when it is not whole milliseconds, decimal
	TagTenant      = "tapwire.tenant"       // Labels.Tenant
	TagProxy       = "tapwire.proxy"        // Net.Proxy
	TagTLS         = "tapwire.tls"          // Net.TLS, as JSON
	TagReqBodySize = "tapwire.reqBodySize"  // Req.Body.Size when it is not len(Data), decimal
	TagResBodySize = "tapwire.resBodySize"  // Res.Body.Size when it is not len(Data), decimal
	TagResProto    = "tapwire.resProto"     // Res.Proto
	TagTrailers    = "tapwire.trailers"     // Res.Trailers, as JSON [[name, value], ...]
	TagRedactions  = "tapwire.redactions"   // Redactions, as a JSON array
	TagBytesUp     = "tapwire.bytesUp"      // TCP.BytesUp, decimal
	TagBytesDown   = "tapwire.bytesDown"    // TCP.BytesDown, decimal
	TagTCPTrunc    = "tapwire.tcpTruncated" // TCP.Truncated: "true"
	TagGRPC        = "tapwire.grpc"         // HTTP.GRPC, as JSON
)

const (
	tcpProtocol    = "tcp"                // l7protocol of a TCP record
	protoPrefix    = "HTTP/"              // Request.Proto = protoPrefix + version
	contentTypeKey = "Content-Type"       // the header behind http.res.contentType
	maxDurationMs  = math.MaxInt64 / 1000 // a longer duration overflows DurMicros
)

// vendorNS is the name space of ids made from vendor uuids that are not
// base64 UUIDs.
var vendorNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/tapwire/tapwire/vendor-uuid"))

// ToRecord converts a vendor record to a Record. Every fact of p is kept:
// see VendorFacts. The result passes Validate.
func ToRecord(p *Pair) (*capture.Record, error) {
	if p.MsgType != "" && p.MsgType != MsgType {
		return nil, fmt.Errorf("%w: msgType %q", ErrNotPair, p.MsgType)
	}
	r := &capture.Record{
		Schema: capture.SchemaVersion,
		Labels: capture.Labels{Cluster: p.Cluster, Namespace: p.Namespace, Service: p.Service},
		Net:    capture.Net{ServerAddr: p.NetworkAddress},
	}
	v := &capture.VendorFacts{Tech: p.Tech, Extra: cloneRaw(p.Extra)}
	if len(p.Signature) > 0 {
		v.Signature = cloneTags(p.Signature)
	}

	// Identity and time.
	r.ID = idFromVendor(p.UUID)
	switch strings.ToUpper(p.Direction) {
	case "IN":
		r.Direction = capture.DirIn
	case "OUT":
		r.Direction = capture.DirOut
	default:
		return nil, fmt.Errorf("%w: direction %q is not IN or OUT", ErrBad, p.Direction)
	}
	if p.TS != "" {
		t, err := time.Parse(time.RFC3339Nano, p.TS)
		if err != nil {
			return nil, fmt.Errorf("%w: ts: %w", ErrBad, err)
		}
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			return nil, fmt.Errorf("%w: ts %q out of range", ErrBad, p.TS)
		}
		r.Start = t.UTC()
	}
	if p.Duration < 0 || p.Duration > maxDurationMs {
		return nil, fmt.Errorf("%w: duration %d ms out of range", ErrBad, p.Duration)
	}
	r.DurMicros = p.Duration * 1000

	// Connection.
	if ni := p.NetInfo; ni != nil {
		res := cloneNetInfo(ni)
		r.Net.ConnID, res.ID = ni.ID, ""
		if d := ni.Downstream; d != nil && d.IPAddress != "" {
			r.Net.ClientAddr = joinAddr(d.IPAddress, d.Port)
			res.Downstream.IPAddress, res.Downstream.Port = "", 0
		}
		if u := ni.Upstream; u != nil {
			r.Net.ServerHost, res.Upstream.Hostname = u.Hostname, ""
		}
		v.NetInfo = res.Trim()
	}

	// Protocol block.
	if p.HTTP != nil {
		r.Kind = capture.KindHTTP
		h, err := httpFromVendor(p, v)
		if err != nil {
			return nil, err
		}
		r.HTTP = h
	} else {
		r.Kind = capture.KindTCP
		r.TCP = &capture.TCP{}
	}

	// Tags, less those that carry our own facts.
	if err := tagsFromVendor(p.Tags, r); err != nil {
		return nil, err
	}

	// Vendor fields that export would not derive from the record as it is.
	d := fromRecord(r)
	keep := func(name string, dst *string, orig, derived string) {
		switch {
		case orig == derived:
		case orig == "":
			v.Absent = append(v.Absent, name)
		default:
			*dst = orig
		}
	}
	if p.UUID != d.UUID && p.UUID != "" {
		v.UUID = p.UUID // a missing uuid gets a new id, which export writes
	}
	keep("resource", &v.Resource, p.Resource, d.Resource)
	keep("l7protocol", &v.L7Protocol, p.L7Protocol, d.L7Protocol)
	keep("command", &v.Command, p.Command, d.Command)
	keep("location", &v.Location, p.Location, d.Location)
	keep("status", &v.Status, p.Status, d.Status)
	if p.HTTP != nil {
		q := p.HTTP.Req
		if q == nil {
			q = &Request{}
		}
		keep("http.req.uri", &v.URI, q.URI, d.HTTP.Req.URI)
		keep("http.req.url", &v.URL, q.URL, q.URI) // export writes url = uri
		keep("http.req.version", &v.Version, q.Version, d.HTTP.Req.Version)
	}
	if p.HTTP != nil && p.HTTP.Res != nil {
		keep("http.res.statusMessage", &v.StatusMessage, p.HTTP.Res.StatusMessage, d.HTTP.Res.StatusMessage)
		keep("http.res.contentType", &v.ContentType, p.HTTP.Res.ContentType, d.HTTP.Res.ContentType)
	}
	if !factsZero(v) {
		r.Vendor = v
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBad, err)
	}
	return r, nil
}

func httpFromVendor(p *Pair, v *capture.VendorFacts) (*capture.HTTP, error) {
	h := &capture.HTTP{}
	q := p.HTTP.Req
	if q == nil {
		q = &Request{}
	}
	reqBody, err := bodyFromVendor(q.BodyBase64)
	if err != nil {
		return nil, fmt.Errorf("%w: http.req.bodyBase64: %w", ErrBad, err)
	}
	uri := q.URI
	if uri == "" {
		uri = q.URL
	}
	if uri == "" {
		uri = p.Location
	}
	h.Req = capture.Request{
		Method:  q.Method,
		URL:     absURL(p, q.Host, uri),
		Proto:   protoFromVersion(q.Version),
		Host:    q.Host,
		Headers: headersFromVendor(q.Headers),
		Body:    reqBody,
	}
	v.ReqExtra = cloneRaw(q.Extra)
	if s := p.HTTP.Res; s != nil {
		body, err := bodyFromVendor(s.BodyBase64)
		if err != nil {
			return nil, fmt.Errorf("%w: http.res.bodyBase64: %w", ErrBad, err)
		}
		code := strconv.Itoa(s.StatusCode)
		text, ok := strings.CutPrefix(s.StatusMessage, code+" ")
		if !ok {
			text = s.StatusMessage
		}
		h.Res = &capture.Response{
			Status:     s.StatusCode,
			StatusText: text,
			Headers:    headersFromVendor(s.Headers),
			Body:       body,
		}
		v.ResExtra = cloneRaw(s.Extra)
	}
	return h, nil
}

// absURL builds Request.URL: the scheme from l7protocol, the host from the
// request (or the connection), and the vendor's uri. An absolute uri is
// taken as it is.
func absURL(p *Pair, host, uri string) string {
	if strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://") {
		return uri
	}
	scheme := "http"
	if strings.EqualFold(p.L7Protocol, "https") {
		scheme = "https"
	}
	if host == "" && p.NetInfo != nil && p.NetInfo.Upstream != nil {
		host = p.NetInfo.Upstream.Hostname
	}
	if host == "" {
		host = p.NetworkAddress
	}
	return scheme + "://" + host + uri
}

func tagsFromVendor(tags map[string]string, r *capture.Record) error {
	for k, val := range tags {
		var err error
		switch k {
		case TagPod:
			r.Labels.Pod = val
		case TagError:
			r.Error = val
		case TagTTFB:
			r.TTFBMicros, err = strconv.ParseInt(val, 10, 64)
		case TagDuration:
			r.DurMicros, err = strconv.ParseInt(val, 10, 64)
		case TagTenant:
			r.Labels.Tenant = val
		case TagProxy:
			r.Net.Proxy = val
		case TagTLS:
			err = json.Unmarshal([]byte(val), &r.Net.TLS)
		case TagRedactions:
			err = json.Unmarshal([]byte(val), &r.Redactions)
			if len(r.Redactions) == 0 {
				r.Redactions = nil
			}
		case TagGRPC:
			if r.HTTP == nil {
				err = errors.New("not an http record")
				break
			}
			err = json.Unmarshal([]byte(val), &r.HTTP.GRPC)
		case TagReqBodySize:
			if r.HTTP == nil {
				err = errors.New("not an http record")
				break
			}
			err = setSize(&r.HTTP.Req.Body, val)
		case TagResBodySize, TagResProto, TagTrailers:
			if r.HTTP == nil || r.HTTP.Res == nil {
				err = errors.New("no http response")
				break
			}
			switch k {
			case TagResBodySize:
				err = setSize(&r.HTTP.Res.Body, val)
			case TagResProto:
				r.HTTP.Res.Proto = val
			case TagTrailers:
				err = json.Unmarshal([]byte(val), &r.HTTP.Res.Trailers)
				if len(r.HTTP.Res.Trailers) == 0 {
					r.HTTP.Res.Trailers = nil
				}
			}
		case TagBytesUp, TagBytesDown, TagTCPTrunc:
			if r.TCP == nil {
				err = errors.New("not a tcp record")
				break
			}
			switch k {
			case TagBytesUp:
				r.TCP.BytesUp, err = strconv.ParseInt(val, 10, 64)
			case TagBytesDown:
				r.TCP.BytesDown, err = strconv.ParseInt(val, 10, 64)
			case TagTCPTrunc:
				r.TCP.Truncated, err = strconv.ParseBool(val)
			}
		default:
			if r.Tags == nil {
				r.Tags = make(capture.Tags, len(tags))
			}
			r.Tags[k] = val
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: tag %s=%q: %w", ErrBad, k, val, err)
		}
	}
	return nil
}

func setSize(b *capture.Body, val string) error {
	n, err := strconv.ParseInt(val, 10, 64)
	if err != nil {
		return err
	}
	if n < int64(len(b.Data)) {
		return fmt.Errorf("size %d is less than the %d bytes captured", n, len(b.Data))
	}
	b.Size, b.Truncated = n, n > int64(len(b.Data))
	return nil
}

// FromRecord converts r to the vendor's form. Facts the vendor form has no
// field for are written as tapwire.* tags (see TagError and the others),
// except TCP chunks, the messages of HTTP (HTTP.Messages and
// MessagesTruncated) and the schema number; docs/record.md lists them.
func FromRecord(r *capture.Record) *Pair {
	p := fromRecord(r)
	v := r.Vendor
	if v == nil {
		return p
	}
	set := func(dst *string, s string) {
		if s != "" {
			*dst = s
		}
	}
	set(&p.UUID, v.UUID)
	set(&p.Resource, v.Resource)
	set(&p.Tech, v.Tech)
	set(&p.L7Protocol, v.L7Protocol)
	set(&p.Command, v.Command)
	set(&p.Location, v.Location)
	set(&p.Status, v.Status)
	if len(v.Signature) > 0 {
		p.Signature = cloneTags(v.Signature)
	}
	p.Extra = cloneRaw(v.Extra)
	if v.NetInfo != nil {
		p.NetInfo = mergeNetInfo(v.NetInfo, p.NetInfo)
	}
	if p.HTTP != nil && p.HTTP.Req != nil {
		q := p.HTTP.Req
		set(&q.URI, v.URI)
		if slices.Contains(v.Absent, "http.req.uri") {
			q.URI = ""
		}
		q.URL = q.URI
		set(&q.URL, v.URL)
		set(&q.Version, v.Version)
		q.Extra = cloneRaw(v.ReqExtra)
	}
	if p.HTTP != nil && p.HTTP.Res != nil {
		s := p.HTTP.Res
		set(&s.StatusMessage, v.StatusMessage)
		set(&s.ContentType, v.ContentType)
		s.Extra = cloneRaw(v.ResExtra)
	}
	for _, name := range v.Absent {
		if f := vendorField(p, name); f != nil {
			*f = ""
		}
	}
	return p
}

// vendorField returns the string field of p that Absent names, or nil.
func vendorField(p *Pair, name string) *string {
	switch name {
	case "resource":
		return &p.Resource
	case "l7protocol":
		return &p.L7Protocol
	case "command":
		return &p.Command
	case "location":
		return &p.Location
	case "status":
		return &p.Status
	}
	if p.HTTP == nil {
		return nil
	}
	if q := p.HTTP.Req; q != nil {
		switch name {
		case "http.req.uri":
			return &q.URI
		case "http.req.url":
			return &q.URL
		case "http.req.version":
			return &q.Version
		}
	}
	if s := p.HTTP.Res; s != nil {
		switch name {
		case "http.res.statusMessage":
			return &s.StatusMessage
		case "http.res.contentType":
			return &s.ContentType
		}
	}
	return nil
}

// fromRecord derives the vendor form from r, ignoring r.Vendor.
func fromRecord(r *capture.Record) *Pair {
	p := &Pair{
		MsgType:        MsgType,
		Resource:       r.Labels.Service,
		TS:             formatTS(r.Start),
		Duration:       r.DurMicros / 1000,
		UUID:           idToVendor(r.ID),
		Direction:      strings.ToUpper(string(r.Direction)),
		Cluster:        r.Labels.Cluster,
		Namespace:      r.Labels.Namespace,
		Service:        r.Labels.Service,
		NetworkAddress: r.Net.ServerAddr,
	}
	p.Tags = tagsToVendor(r)
	if ni := netInfoToVendor(&r.Net); ni != nil {
		p.NetInfo = ni
	}
	switch {
	case r.HTTP != nil:
		q := &r.HTTP.Req
		scheme, uri := splitURL(q.URL)
		p.L7Protocol = scheme
		p.Command = q.Method
		p.Location, _, _ = strings.Cut(uri, "?")
		p.HTTP = &HTTP{Req: &Request{
			URL:        uri,
			URI:        uri,
			Version:    strings.TrimPrefix(q.Proto, protoPrefix),
			Method:     q.Method,
			Host:       q.Host,
			Headers:    headersToVendor(q.Headers),
			BodyBase64: base64.StdEncoding.EncodeToString(q.Body.Data),
		}}
		if s := r.HTTP.Res; s != nil {
			p.Status = strconv.Itoa(s.Status)
			p.HTTP.Res = &Response{
				ContentType:   s.Headers.Get(contentTypeKey),
				StatusCode:    s.Status,
				StatusMessage: strconv.Itoa(s.Status) + " " + s.StatusText,
				Headers:       headersToVendor(s.Headers),
				BodyBase64:    base64.StdEncoding.EncodeToString(s.Body.Data),
			}
		}
	default:
		p.L7Protocol = tcpProtocol
	}
	return p
}

func tagsToVendor(r *capture.Record) map[string]string {
	t := make(map[string]string, len(r.Tags)+4)
	for k, v := range r.Tags {
		t[k] = v
	}
	put := func(k, v string) {
		if v != "" {
			t[k] = v
		}
	}
	putJSON := func(k string, v any) {
		if b, err := json.Marshal(v); err == nil {
			t[k] = string(b)
		}
	}
	put(TagPod, r.Labels.Pod)
	put(TagError, r.Error)
	put(TagTenant, r.Labels.Tenant)
	put(TagProxy, r.Net.Proxy)
	if r.TTFBMicros != 0 {
		t[TagTTFB] = strconv.FormatInt(r.TTFBMicros, 10)
	}
	if r.DurMicros%1000 != 0 {
		t[TagDuration] = strconv.FormatInt(r.DurMicros, 10)
	}
	if r.Net.TLS != nil {
		putJSON(TagTLS, r.Net.TLS)
	}
	if len(r.Redactions) > 0 {
		putJSON(TagRedactions, r.Redactions)
	}
	if h := r.HTTP; h != nil {
		if h.GRPC != nil {
			putJSON(TagGRPC, h.GRPC)
		}
		if b := h.Req.Body; b.Size != int64(len(b.Data)) {
			t[TagReqBodySize] = strconv.FormatInt(b.Size, 10)
		}
		if s := h.Res; s != nil {
			if b := s.Body; b.Size != int64(len(b.Data)) {
				t[TagResBodySize] = strconv.FormatInt(b.Size, 10)
			}
			put(TagResProto, s.Proto)
			if len(s.Trailers) > 0 {
				putJSON(TagTrailers, s.Trailers)
			}
		}
	}
	if c := r.TCP; c != nil && r.HTTP == nil {
		t[TagBytesUp] = strconv.FormatInt(c.BytesUp, 10)
		t[TagBytesDown] = strconv.FormatInt(c.BytesDown, 10)
		if c.Truncated {
			t[TagTCPTrunc] = "true"
		}
	}
	if len(t) == 0 {
		return nil
	}
	return t
}

func netInfoToVendor(n *capture.Net) *capture.VendorNetInfo {
	ni := &capture.VendorNetInfo{ID: n.ConnID}
	if n.ClientAddr != "" {
		host, port := splitAddr(n.ClientAddr)
		ni.Downstream = &capture.VendorEndpoint{IPAddress: host, Port: port}
	}
	if n.ServerHost != "" {
		ni.Upstream = &capture.VendorEndpoint{Hostname: n.ServerHost}
	}
	return ni.Trim()
}

// mergeNetInfo lays the derived facts d over the kept facts v.
func mergeNetInfo(v, d *capture.VendorNetInfo) *capture.VendorNetInfo {
	m := cloneNetInfo(v)
	if d == nil {
		return m.Trim()
	}
	if d.ID != "" {
		m.ID = d.ID
	}
	if d.Downstream != nil {
		m.Downstream.IPAddress, m.Downstream.Port = d.Downstream.IPAddress, d.Downstream.Port
	}
	if d.Upstream != nil {
		m.Upstream.Hostname = d.Upstream.Hostname
	}
	return m.Trim()
}

// cloneNetInfo copies n, with both endpoints non-nil.
func cloneNetInfo(n *capture.VendorNetInfo) *capture.VendorNetInfo {
	c := *n
	c.Downstream, c.Upstream = &capture.VendorEndpoint{}, &capture.VendorEndpoint{}
	if n.Downstream != nil {
		*c.Downstream = *n.Downstream
	}
	if n.Upstream != nil {
		*c.Upstream = *n.Upstream
	}
	return &c
}

// splitURL returns the scheme of an absolute URL and the rest after the
// authority (path and query). A URL that is not absolute is all path.
func splitURL(s string) (scheme, uri string) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || strings.ContainsAny(scheme, "/?#") {
		return "http", s
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		return strings.ToLower(scheme), rest[i:]
	}
	return strings.ToLower(scheme), ""
}

// formatTS writes t as the vendor does (protobuf's JSON timestamps): UTC,
// with 0, 3, 6 or 9 fractional digits, as few as keep every nanosecond.
func formatTS(t time.Time) string {
	t = t.UTC()
	ns := t.Nanosecond()
	switch {
	case ns == 0:
		return t.Format("2006-01-02T15:04:05Z")
	case ns%1e6 == 0:
		return t.Format("2006-01-02T15:04:05.000Z")
	case ns%1e3 == 0:
		return t.Format("2006-01-02T15:04:05.000000Z")
	}
	return t.Format("2006-01-02T15:04:05.000000000Z")
}

func protoFromVersion(v string) string {
	if v == "" || strings.HasPrefix(v, protoPrefix) {
		return v
	}
	return protoPrefix + v
}

func joinAddr(host string, port int) string {
	if port == 0 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// splitAddr splits host:port for the vendor's ipAddress and port. An
// address it cannot split back into the same text, or without a host
// (":1", whose ipAddress would be empty and lost on the way back), stays
// whole in ipAddress with no port.
func splitAddr(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return addr, 0
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || joinAddr(host, n) != addr {
		return addr, 0
	}
	return host, n
}

// idFromVendor returns the record id for a vendor uuid: the UUID whose 16
// bytes it encodes, or a name-based UUID of the text when it encodes none,
// or a new id when there is none.
func idFromVendor(s string) string {
	if s == "" {
		return capture.NewID()
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 16 {
		return uuid.UUID(b).String()
	}
	return uuid.NewSHA1(vendorNS, []byte(s)).String()
}

// idToVendor returns the vendor uuid of a record id: its 16 bytes in
// base64, or the id itself when it is not a UUID.
func idToVendor(id string) string {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return id
	}
	return base64.StdEncoding.EncodeToString(u[:])
}

func bodyFromVendor(s string) (capture.Body, error) {
	if s == "" {
		return capture.Body{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return capture.Body{}, err
	}
	return capture.Body{Data: b, Size: int64(len(b))}, nil
}

// headersFromVendor orders the vendor's header map by name (it has no
// order), keeping the order of each name's values.
func headersFromVendor(m map[string][]string) capture.Headers {
	if len(m) == 0 {
		return nil
	}
	names := make([]string, 0, len(m))
	n := 0
	for k, vs := range m {
		names = append(names, k)
		n += len(vs)
	}
	if n == 0 {
		return nil
	}
	sort.Strings(names)
	h := make(capture.Headers, 0, n)
	for _, k := range names {
		for _, v := range m[k] {
			h = append(h, capture.Header{Name: k, Value: v})
		}
	}
	return h
}

func headersToVendor(h capture.Headers) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	m := make(map[string][]string)
	for _, f := range h {
		m[f.Name] = append(m[f.Name], f.Value)
	}
	return m
}

func cloneTags(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func cloneRaw(m map[string]json.RawMessage) map[string]json.RawMessage {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		c[k] = slices.Clone(v)
	}
	return c
}

// JSON of the vendor types with unknown fields kept in Extra.

// UnmarshalJSON reads p, keeping unknown fields in p.Extra.
func (p *Pair) UnmarshalJSON(b []byte) error {
	type plain Pair
	var v plain
	extra, err := unmarshalExtra(b, &v)
	if err != nil {
		return err
	}
	*p = Pair(v)
	p.Extra = extra
	return nil
}

// MarshalJSON writes p with the fields of p.Extra after the known ones.
func (p Pair) MarshalJSON() ([]byte, error) {
	type plain Pair
	return marshalExtra(plain(p), p.Extra)
}

// UnmarshalJSON reads q, keeping unknown fields in q.Extra.
func (q *Request) UnmarshalJSON(b []byte) error {
	type plain Request
	var v plain
	extra, err := unmarshalExtra(b, &v)
	if err != nil {
		return err
	}
	*q = Request(v)
	q.Extra = extra
	return nil
}

// MarshalJSON writes q with the fields of q.Extra after the known ones.
func (q Request) MarshalJSON() ([]byte, error) {
	type plain Request
	return marshalExtra(plain(q), q.Extra)
}

// UnmarshalJSON reads s, keeping unknown fields in s.Extra.
func (s *Response) UnmarshalJSON(b []byte) error {
	type plain Response
	var v plain
	extra, err := unmarshalExtra(b, &v)
	if err != nil {
		return err
	}
	*s = Response(v)
	s.Extra = extra
	return nil
}

// MarshalJSON writes s with the fields of s.Extra after the known ones.
func (s Response) MarshalJSON() ([]byte, error) {
	type plain Response
	return marshalExtra(plain(s), s.Extra)
}

// unmarshalExtra decodes b into v, a type without JSON methods (so that
// decoding does not recurse), and returns the members of b that are not
// v's fields.
func unmarshalExtra[P any](b []byte, v *P) (map[string]json.RawMessage, error) {
	if err := json.Unmarshal(b, v); err != nil {
		return nil, err
	}
	return unknownFields(b, reflect.TypeFor[P]())
}

// marshalExtra encodes v, a type without JSON methods, with the members of
// extra after its fields.
func marshalExtra[P any](v P, extra map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return appendFields(b, extra, reflect.TypeFor[P]())
}

var jsonNamesCache sync.Map // reflect.Type -> []string

// jsonNames returns the JSON names of t's fields.
func jsonNames(t reflect.Type) []string {
	if v, ok := jsonNamesCache.Load(t); ok {
		return v.([]string)
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	jsonNamesCache.Store(t, names)
	return names
}

// known reports whether key names a field of t, ignoring case as
// encoding/json does.
func known(t reflect.Type, key string) bool {
	for _, n := range jsonNames(t) {
		if strings.EqualFold(n, key) {
			return true
		}
	}
	return false
}

// unknownFields returns the members of the JSON object b that are not
// fields of t.
func unknownFields(b []byte, t reflect.Type) (map[string]json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	var extra map[string]json.RawMessage
	for k, v := range all {
		if known(t, k) {
			continue
		}
		if extra == nil {
			extra = make(map[string]json.RawMessage)
		}
		extra[k] = canonicalRaw(v)
	}
	return extra, nil
}

// canonicalRaw returns raw compacted, with <, > and & in strings escaped as
// json.Marshal writes them, so that it reads back the same after an export.
func canonicalRaw(raw json.RawMessage) json.RawMessage {
	var c, e bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return raw
	}
	json.HTMLEscape(&e, c.Bytes())
	return e.Bytes()
}

// appendFields adds the members of extra that are not fields of t to the
// JSON object b, in name order.
func appendFields(b []byte, extra map[string]json.RawMessage, t reflect.Type) ([]byte, error) {
	if len(extra) == 0 {
		return b, nil
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if !known(t, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := bytes.TrimSuffix(b, []byte("}"))
	for _, k := range keys {
		raw := extra[k]
		if !json.Valid(raw) {
			return nil, fmt.Errorf("extra field %q is not valid JSON", k)
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		kb, _ := json.Marshal(k)
		out = append(out, kb...)
		out = append(out, ':')
		out = append(out, raw...)
	}
	return append(out, '}'), nil
}
