// Package capture defines the capture record that every part of Tapwire
// produces, ships, stores and shows, and the few interfaces around it.
//
// A Record is one exchange seen by goproxy: an HTTP request with its
// response, or one TCP connection's byte streams when the protocol is not
// understood. Its JSON form is versioned (SchemaVersion) and documented in
// docs/record.md; it is the same on the wire, in the bucket and in the hub's
// API.
package capture

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/google/uuid"
)

// SchemaVersion is the version of the record's JSON form. A reader rejects
// records with a newer major version than it knows.
const SchemaVersion = 1

// Kind says which protocol block of a Record is filled.
type Kind string

const (
	KindHTTP Kind = "http" // HTTP/1.x or HTTP/2 request and response
	KindTCP  Kind = "tcp"  // an opaque byte stream (a tunnel or unknown protocol)
)

// Direction says whether the exchange entered the service or left it.
type Direction string

const (
	DirIn  Direction = "in"  // a client called the service through the reverse proxy
	DirOut Direction = "out" // the service called an upstream through the forward proxy
)

// Record is one captured exchange.
type Record struct {
	Schema    int       `json:"schema"`    // SchemaVersion at the time of writing
	ID        string    `json:"id"`        // UUIDv7: unique and time-sortable
	Kind      Kind      `json:"kind"`      // which protocol block is set
	Direction Direction `json:"direction"` // in or out

	Start      time.Time `json:"start"`                // when the request (or connection) began, UTC
	TTFBMicros int64     `json:"ttfbUs,omitempty"`     // start to first response byte, in µs
	DurMicros  int64     `json:"durationUs"`           // start to end of the response (or connection), in µs
	Labels     Labels    `json:"labels"`               // identity of the captured service
	Net        Net       `json:"net"`                  // addresses and TLS facts
	HTTP       *HTTP     `json:"http,omitempty"`       // set when Kind is http
	TCP        *TCP      `json:"tcp,omitempty"`        // set when Kind is tcp
	Error      string    `json:"error,omitempty"`      // why the exchange failed, if it did
	Tags       Tags      `json:"tags,omitempty"`       // free-form facts (capture mode, proxy id, ...)
	Redactions []string  `json:"redactions,omitempty"` // ids of the rules that changed this record

	// Vendor holds the facts of a record imported from the vendor's RRPair
	// form that have no other home here (tech, signature, fields this
	// reader does not model), so that an export carries them again. Nil
	// for records goproxy captured. See internal/rrpair and docs/record.md.
	Vendor *VendorFacts `json:"vendor,omitempty"`
}

// Labels identify the service whose traffic a record is.
type Labels struct {
	Cluster   string `json:"cluster,omitempty"`   // CLUSTER_NAME
	Namespace string `json:"namespace,omitempty"` // APP_POD_NAMESPACE
	Service   string `json:"service,omitempty"`   // APP_LABEL
	Pod       string `json:"pod,omitempty"`       // APP_POD_NAME
	Tenant    string `json:"tenant,omitempty"`    // set by the forwarder (TENANT_ID)
}

// Net holds the network facts of the connection that carried the exchange.
type Net struct {
	ClientAddr string `json:"clientAddr,omitempty"` // the peer that opened the connection to goproxy
	ServerAddr string `json:"serverAddr,omitempty"` // host:port goproxy dialled (or would have)
	ServerHost string `json:"serverHost,omitempty"` // the upstream's host name, without port
	ConnID     string `json:"connId,omitempty"`     // the client connection, shared by its exchanges
	TLS        *TLS   `json:"tls,omitempty"`        // set when the client side spoke TLS to goproxy
	Proxy      string `json:"proxy,omitempty"`      // which listener: reverse, forward, connect
}

// TLS holds the facts of a TLS session goproxy terminated.
type TLS struct {
	SNI         string `json:"sni,omitempty"`
	Version     string `json:"version,omitempty"` // "TLS 1.3"
	ALPN        string `json:"alpn,omitempty"`
	CipherSuite string `json:"cipherSuite,omitempty"`
	Upstream    *TLS   `json:"upstream,omitempty"` // goproxy's own session to the upstream
}

// HTTP is one request and its response.
type HTTP struct {
	Req Request   `json:"req"`
	Res *Response `json:"res,omitempty"` // nil when no response was received

	// Messages are the messages inside the bodies, one by one, for
	// protocols that frame them: gRPC's length-prefixed messages (and
	// WebSocket frames after an upgrade). Ordered by time.
	Messages []Message `json:"messages,omitempty"`
	// MessagesTruncated says that more messages passed than were kept.
	MessagesTruncated bool `json:"messagesTruncated,omitempty"`
	// GRPC is set for gRPC calls.
	GRPC *GRPC `json:"grpc,omitempty"`
}

// GRPC holds what identifies a gRPC call and how it ended.
type GRPC struct {
	Service       string `json:"service"`                 // package.Service, from the path
	Method        string `json:"method"`                  // the method name
	Status        *int   `json:"status,omitempty"`        // grpc-status (0 is OK); nil when the call ended without one
	StatusMessage string `json:"statusMessage,omitempty"` // grpc-message, percent-decoded
	Encoding      string `json:"encoding,omitempty"`      // grpc-encoding of compressed messages
}

// Message is one framed message of a stream.
type Message struct {
	Up         bool   `json:"up"`                   // true: client to server
	AtMicros   int64  `json:"atUs"`                 // since Record.Start, when its last byte passed
	Size       int64  `json:"size"`                 // bytes of the whole message (without framing)
	Data       []byte `json:"data,omitempty"`       // base64 in JSON; at most the body cap
	Truncated  bool   `json:"truncated,omitempty"`  // Data holds less than Size
	Compressed bool   `json:"compressed,omitempty"` // gRPC's compressed flag
	Opcode     int    `json:"opcode,omitempty"`     // WebSocket opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong)
	// Fields is Data decoded from the protobuf wire format without a
	// schema, as protoc --decode_raw does; set when Data is a whole,
	// uncompressed message that decodes.
	Fields []ProtoField `json:"fields,omitempty"`
}

// ProtoField is one field of a protobuf message decoded without its
// schema. Exactly one of the value fields is set, depending on Wire and on
// what the bytes of a length-delimited field turned out to be.
type ProtoField struct {
	Num     int32        `json:"n"`                 // field number
	Wire    string       `json:"wire"`              // varint, fixed64, bytes, fixed32, group
	Uint    *uint64      `json:"uint,omitempty"`    // varint, fixed64, fixed32
	String  *string      `json:"string,omitempty"`  // bytes that are printable UTF-8
	Bytes   []byte       `json:"bytes,omitempty"`   // other bytes (base64 in JSON)
	Message []ProtoField `json:"message,omitempty"` // bytes or group that parse as a message
}

// Request is the request as the client sent it.
type Request struct {
	Method  string  `json:"method"`
	URL     string  `json:"url"`   // absolute: scheme://host/path?query
	Proto   string  `json:"proto"` // HTTP/1.1, HTTP/2.0
	Host    string  `json:"host"`  // the Host header (or :authority)
	Headers Headers `json:"headers,omitempty"`
	Body    Body    `json:"body"`
}

// Response is the response as the upstream sent it.
type Response struct {
	Status     int     `json:"status"`
	StatusText string  `json:"statusText,omitempty"`
	Proto      string  `json:"proto,omitempty"`
	Headers    Headers `json:"headers,omitempty"`
	Body       Body    `json:"body"`
	Trailers   Headers `json:"trailers,omitempty"`
}

// Body is a captured message body: the first bytes, up to the capture cap,
// and the size of the whole.
type Body struct {
	Data      []byte `json:"data,omitempty"`      // base64 in JSON; at most the cap
	Size      int64  `json:"size"`                // bytes of the whole body as sent on the wire (after transfer decoding)
	Truncated bool   `json:"truncated,omitempty"` // Data holds less than Size
}

// TCP is a byte stream that was not understood as HTTP.
type TCP struct {
	BytesUp   int64   `json:"bytesUp"`   // client to server
	BytesDown int64   `json:"bytesDown"` // server to client
	Chunks    []Chunk `json:"chunks,omitempty"`
	Truncated bool    `json:"truncated,omitempty"` // Chunks hold less than the whole stream
}

// Chunk is one read of a byte stream.
type Chunk struct {
	Up       bool   `json:"up"`   // true: client to server
	AtMicros int64  `json:"atUs"` // since Record.Start
	Data     []byte `json:"data"` // base64 in JSON
}

// Header is one header field. Its JSON form is a two-element array.
type Header struct {
	Name  string
	Value string
}

// Headers keeps header fields in the order they were sent.
type Headers []Header

// Get returns the first value of the named header (case-insensitive).
func (h Headers) Get(name string) string {
	for _, f := range h {
		if equalFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns every value of the named header (case-insensitive).
func (h Headers) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if equalFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// MarshalJSON writes ["Name","Value"], escaped as encoding/json escapes
// strings (HTML characters included). Names and values of plain printable
// ASCII, nearly all of them, are written without reflection.
func (h Header) MarshalJSON() ([]byte, error) {
	if !plainASCII(h.Name) || !plainASCII(h.Value) {
		return json.Marshal([2]string{h.Name, h.Value})
	}
	b := make([]byte, 0, len(h.Name)+len(h.Value)+7)
	b = append(b, `["`...)
	b = append(b, h.Name...)
	b = append(b, `","`...)
	b = append(b, h.Value...)
	return append(b, `"]`...), nil
}

// plainASCII reports whether s is printable ASCII that a JSON string holds
// unescaped: no quote, backslash or control character, and none of <, >
// and & that encoding/json escapes for HTML.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// UnmarshalJSON reads ["Name","Value"]. The common form, two strings of
// printable ASCII without escapes, is read directly; anything else goes
// through the JSON decoder.
func (h *Header) UnmarshalJSON(b []byte) error {
	if name, value, ok := plainPair(b); ok {
		h.Name, h.Value = name, value
		return nil
	}
	var a []string
	if err := gojson.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if len(a) != 2 {
		return fmt.Errorf("header: want [name, value], got %d elements", len(a))
	}
	h.Name, h.Value = a[0], a[1]
	return nil
}

// plainPair reads b as ["name","value"], white space allowed between
// tokens, when both strings are printable ASCII without a backslash. It
// reports false for any other input, which the caller decodes in full.
func plainPair(b []byte) (name, value string, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return "", "", false
	}
	name, i, ok = plainString(b, skipSpace(b, i+1))
	if !ok {
		return "", "", false
	}
	if i = skipSpace(b, i); i >= len(b) || b[i] != ',' {
		return "", "", false
	}
	value, i, ok = plainString(b, skipSpace(b, i+1))
	if !ok {
		return "", "", false
	}
	if i = skipSpace(b, i); i >= len(b) || b[i] != ']' {
		return "", "", false
	}
	if skipSpace(b, i+1) != len(b) {
		return "", "", false
	}
	return name, value, true
}

// plainString reads the string starting at b[i] (a quote) when it holds
// only printable ASCII and no backslash; it returns the index after it.
func plainString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", 0, false
		}
	}
	return "", 0, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// Tags are free-form string facts about a record.
type Tags map[string]string

// newV7 returns a new version-7 UUID (RFC 9562 §5.7) for time t: its Unix
// time in milliseconds, then as rand_a the next 12 bits of the time (1/4096 ms
// steps, as uuid.NewV7 fills them: RFC 9562 §6.2, method 3), raised by one
// when the clock has not moved, so that ids are made in increasing order
// by any number of goroutines; then 62 random bits from the runtime's
// generator (math/rand/v2's global ChaCha8, seeded by the system at start,
// one state per thread). Ids must be unique, not secret. uuid.NewV7 takes
// two locks and reads crypto/rand through a pool: 180 ns an id on the
// proxy's hot path, this 52 with the time given (BenchmarkAppendNewID;
// time.Now takes 50 ns on this project's machines).
func newV7(t time.Time) uuid.UUID {
	nano := t.UnixNano()
	milli := nano / 1e6
	now := uint64(milli<<12 + (nano-milli*1e6)>>8)
	for {
		last := lastV7.Load()
		if now <= last {
			now = last + 1
		}
		if lastV7.CompareAndSwap(last, now) {
			break
		}
	}
	var u uuid.UUID
	ts := now >> 12 // milliseconds
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ts>>40), byte(ts>>32), byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
	u[6], u[7] = 0x70|byte(now>>8)&0x0f, byte(now)
	binary.BigEndian.PutUint64(u[8:], rand.Uint64()&^(3<<62)|2<<62) // variant 10
	return u
}

// lastV7 is the time and sequence (milliseconds<<12 | rand_a) of the last
// id newV7 made.
var lastV7 atomic.Uint64

// NewID returns a new record id (UUIDv7, time-sortable).
func NewID() string {
	return newV7(time.Now()).String()
}

// IDLen is the length of the ids NewID and AppendNewID make.
const IDLen = 36

// AppendNewID appends a new record id, as NewID makes, to b, for a record
// that started at t (the time the id holds; a later id may hold the same):
// for a caller that has the time already and builds the id into a string
// with others (one allocation for all).
func AppendNewID(b []byte, t time.Time) []byte {
	return appendUUID(b, newV7(t))
}

// appendUUID appends u in its canonical form (uuid.UUID.String's).
func appendUUID(b []byte, u uuid.UUID) []byte {
	var s [IDLen]byte
	hex.Encode(s[0:8], u[0:4])
	hex.Encode(s[9:13], u[4:6])
	hex.Encode(s[14:18], u[6:8])
	hex.Encode(s[19:23], u[8:10])
	hex.Encode(s[24:], u[10:])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return append(b, s[:]...)
}

// WireTime returns t as a record's line writes it (RFC 3339): in its own
// zone when RFC 3339 can write that zone's offset (whole minutes, less
// than a day), else in UTC, the same instant either way; ok is false when
// the year is then outside 0-9999, which RFC 3339 cannot write.
func WireTime(t time.Time) (time.Time, bool) {
	if t.Location() == time.UTC { // every start goproxy makes: no calendar to compute
		s := t.Unix()
		return t, s >= minWireUnix && s <= maxWireUnix
	}
	if _, off := t.Zone(); off%60 != 0 || off <= -86400 || off >= 86400 {
		t = t.UTC()
	}
	y := t.Year()
	return t, y >= 0 && y <= 9999
}

// The Unix seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const minWireUnix, maxWireUnix = -62167219200, 253402300799

// Errors returned by Validate.
var (
	ErrNoID         = errors.New("record has no id")
	ErrSchemaTooNew = errors.New("record schema is newer than this reader")
	ErrBadKind      = errors.New("record kind is not http or tcp")
	ErrBadDirection = errors.New("record direction is not in or out")
	ErrMissingHTTP  = errors.New("http record has no http block")
	ErrMissingTCP   = errors.New("tcp record has no tcp block")
	ErrBadStart     = errors.New("record start is outside the years 0-9999 (RFC 3339 writes four digits)")
)

// Validate checks what every consumer relies on.
func (r *Record) Validate() error {
	switch {
	case r.ID == "":
		return ErrNoID
	case r.Schema > SchemaVersion:
		return fmt.Errorf("%w: %d > %d", ErrSchemaTooNew, r.Schema, SchemaVersion)
	case r.Direction != DirIn && r.Direction != DirOut:
		return fmt.Errorf("%w: %q", ErrBadDirection, r.Direction)
	}
	if _, ok := WireTime(r.Start); !ok {
		// A line with another year would not decode
		// (time.Time.UnmarshalJSON), and a batch holding it would be
		// refused whole.
		return fmt.Errorf("%w: %d", ErrBadStart, r.Start.Year())
	}
	switch r.Kind {
	case KindHTTP:
		if r.HTTP == nil {
			return ErrMissingHTTP
		}
	case KindTCP:
		if r.TCP == nil {
			return ErrMissingTCP
		}
	default:
		return fmt.Errorf("%w: %q", ErrBadKind, r.Kind)
	}
	return nil
}
