package mock

import (
	"encoding/binary"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/protoraw"
	"github.com/tapwire/tapwire/internal/volatile"
)

// Request is what the index matches: a live request, or a recorded one, reduced to its endpoint and fields.
type Request struct {
	Method   string
	Scheme   string // http or https
	Host     string // host[:port] as the client named it
	Path     string
	RawQuery string
	Headers  capture.Headers
	Body     []byte
	ClientIP string // the address of the client that sent it, without the port ("" if unknown)
}

// URL is the request's absolute URL.
func (r *Request) URL() string {
	u := r.Scheme + "://" + r.Host + r.Path
	if r.RawQuery != "" {
		u += "?" + r.RawQuery
	}
	return u
}

// opHeaders are headers that name the operation of an RPC sent to one path (AWS JSON APIs, SOAP): they are
// part of the endpoint, as the path is.
var opHeaders = []string{"X-Amz-Target", "SOAPAction"}

// noiseHeaders are headers that say how a request travels, not what it asks: they never count.
var noiseHeaders = map[string]bool{
	"accept-encoding": true, "connection": true, "content-length": true, "date": true, "host": true,
	"keep-alive": true, "proxy-authorization": true, "proxy-connection": true, "te": true, "trailer": true,
	"transfer-encoding": true, "upgrade": true, "user-agent": true, "via": true, "x-amz-date": true,
	"x-amz-security-token": true, "x-amz-content-sha256": true, "amz-sdk-invocation-id": true,
	"amz-sdk-request": true, "traceparent": true, "tracestate": true, "x-amzn-trace-id": true,
	"x-request-id": true, "x-b3-traceid": true, "x-b3-spanid": true, "x-b3-parentspanid": true, "x-b3-sampled": true,
	"grpc-timeout": true, "grpc-accept-encoding": true, "x-forwarded-for": true, "x-forwarded-proto": true,
	"x-forwarded-host": true, "forwarded": true, "expect": true,
}

// parsed is a Request reduced for matching.
type parsed struct {
	key      string // the endpoint: "METHOD host/path/{}" and the operation header
	host     string // normalized host[:port]
	fields   []volatile.Field
	session  string // the client session the request belongs to ("" if none)
	grpc     bool
	template string
}

// parse reduces r. sessionHeaders name the headers whose value tells one client session from another.
func parse(r *Request, sessionHeaders []string) parsed {
	p := parsed{host: normalizeHost(r.Scheme, r.Host)}
	var t strings.Builder
	segs := strings.Split(r.Path, "/")
	for i, s := range segs {
		if i > 0 {
			t.WriteByte('/')
		}
		if templated(s) {
			t.WriteString("{}")
			p.fields = append(p.fields, volatile.Field{Name: "path." + strconv.Itoa(i), Value: s})
		} else {
			t.WriteString(s)
		}
	}
	if r.Path == "" {
		t.WriteByte('/')
	}
	p.template = t.String()
	var b strings.Builder
	b.WriteString(strings.ToUpper(r.Method))
	b.WriteByte(' ')
	b.WriteString(p.host)
	b.WriteString(p.template)
	for _, h := range opHeaders {
		if v := r.Headers.Get(h); v != "" {
			b.WriteString(" [")
			b.WriteString(v)
			b.WriteByte(']')
		}
	}
	p.key = b.String()
	p.fields = volatile.AddQuery(p.fields, r.RawQuery)
	ctype := r.Headers.Get("Content-Type")
	if strings.HasPrefix(ctype, "application/grpc") {
		p.grpc = true
		p.fields = addGRPC(p.fields, r.Body)
	} else {
		p.fields = volatile.AddBody(p.fields, ctype, r.Body)
	}
	for _, h := range r.Headers {
		name := strings.ToLower(h.Name)
		if noiseHeaders[name] || isOpHeader(h.Name) || strings.HasPrefix(name, ":") {
			continue
		}
		p.fields = append(p.fields, volatile.Field{Name: "header." + name, Value: h.Value})
	}
	for _, h := range sessionHeaders {
		if v := r.Headers.Get(h); v != "" {
			p.session = strings.ToLower(h) + ":" + v
			break
		}
	}
	if p.session == "" && r.ClientIP != "" {
		p.session = "ip:" + r.ClientIP
	}
	return p
}

func isOpHeader(name string) bool {
	for _, h := range opHeaders {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// templated reports whether a path segment is an identifier that stands for many (a number, a UUID, a
// token...): such segments are one endpoint, and the value is a field (path.N).
func templated(s string) bool {
	if s == "" {
		return false
	}
	if digits(s) {
		if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			return true
		}
	}
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	return volatile.Classify(s) != volatile.None
}

// digits reports whether s is only decimal digits (checked before strconv, whose errors allocate).
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// normalizeHost lower-cases host and drops the scheme's default port.
func normalizeHost(scheme, host string) string {
	host = strings.ToLower(host)
	if h, port, err := net.SplitHostPort(host); err == nil {
		if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") || port == "" {
			host = h
			if strings.Contains(h, ":") {
				host = "[" + h + "]"
			}
		}
	}
	return strings.TrimSuffix(host, ".")
}

// maxGRPCMessages bounds the messages of one gRPC request that are matched on.
const maxGRPCMessages = 64

// addGRPC appends the fields of the gRPC messages framed in body: grpc.N.FIELD... for each message that
// parses as protobuf, grpc.N for any other.
func addGRPC(dst []volatile.Field, body []byte) []volatile.Field {
	for i := 0; len(body) >= 5 && i < maxGRPCMessages; i++ {
		compressed := body[0] == 1
		n := binary.BigEndian.Uint32(body[1:5])
		if uint64(n) > uint64(len(body)-5) {
			return append(dst, volatile.Field{Name: "grpc.rest", Value: string(body)})
		}
		dst = addMessage(dst, "grpc."+strconv.Itoa(i), body[5:5+n], compressed)
		body = body[5+n:]
	}
	if len(body) > 0 {
		dst = append(dst, volatile.Field{Name: "grpc.rest", Value: string(body)})
	}
	return dst
}

func addMessage(dst []volatile.Field, prefix string, data []byte, compressed bool) []volatile.Field {
	if !compressed {
		if fs, ok := protoraw.Decode(data); ok && len(fs) > 0 {
			return addProto(dst, prefix, fs)
		}
	}
	return append(dst, volatile.Field{Name: prefix, Value: string(data)})
}

func addProto(dst []volatile.Field, prefix string, fs []capture.ProtoField) []volatile.Field {
	seen := map[int32]int{}
	for _, f := range fs {
		name := prefix + "." + strconv.Itoa(int(f.Num))
		if k := seen[f.Num]; k > 0 {
			name += "#" + strconv.Itoa(k) // a repeated field
		}
		seen[f.Num]++
		switch {
		case f.Message != nil:
			dst = addProto(dst, name, f.Message)
		case f.String != nil:
			dst = append(dst, volatile.Field{Name: name, Value: *f.String})
		case f.Uint != nil:
			dst = append(dst, volatile.Field{Name: name, Value: strconv.FormatUint(*f.Uint, 10)})
		default:
			dst = append(dst, volatile.Field{Name: name, Value: string(f.Bytes)})
		}
	}
	return dst
}

// recordRequest is the Request of a recorded exchange. Recorded gRPC messages are framed again, so that a
// recording and a live call are read the same way.
func recordRequest(rec *capture.Record) *Request {
	q := &rec.HTTP.Req
	r := &Request{Method: q.Method, Headers: q.Headers, Body: q.Body.Data, Host: q.Host, Scheme: "http"}
	if u, err := url.Parse(q.URL); err == nil {
		if u.Host != "" {
			r.Host = u.Host
		}
		if u.Scheme != "" {
			r.Scheme = u.Scheme
		}
		r.Path, r.RawQuery = u.EscapedPath(), u.RawQuery
	}
	if r.Path == "" {
		r.Path = "/"
	}
	if ip, _, err := net.SplitHostPort(rec.Net.ClientAddr); err == nil {
		r.ClientIP = ip
	}
	if len(rec.HTTP.Messages) > 0 {
		var body []byte
		for _, m := range rec.HTTP.Messages {
			if !m.Up {
				continue
			}
			data := m.Data
			if len(data) == 0 && len(m.Fields) > 0 {
				data = protoraw.Encode(m.Fields)
			}
			body = appendFrame(body, data, m.Compressed)
		}
		r.Body = body
	}
	return r
}

// appendFrame appends one gRPC length-prefixed message.
func appendFrame(b, data []byte, compressed bool) []byte {
	var h [5]byte
	if compressed {
		h[0] = 1
	}
	binary.BigEndian.PutUint32(h[1:], uint32(len(data)))
	return append(append(b, h[:]...), data...)
}
