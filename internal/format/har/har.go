// Package har converts capture records to and from HAR 1.2, the HTTP
// Archive format of browsers and HTTP tools
// (http://www.softwareishard.com/blog/har-12-spec/): a streaming Writer that
// the hub's export and speedctl share, and a streaming Reader that turns a
// HAR log back into records. What a record holds that HAR has no member
// for is written in custom members, which start with an underscore as the
// format asks, so that a record written and read again is the same record.
// It also tells the three export formats apart (HAR, our JSONL, the
// vendor's raw.jsonl), for the commands that import any of them.
package har

import (
	"encoding/json"

	"github.com/tapwire/tapwire/internal/capture"
)

// Version is the HAR version written and the one Read expects.
const Version = "1.2"

// HAR is a whole HAR document.
type HAR struct {
	Log Log `json:"log"`
}

// Log is the document's log.
type Log struct {
	Version string            `json:"version"`
	Creator Creator           `json:"creator"`
	Browser *Creator          `json:"browser,omitempty"`
	Pages   []json.RawMessage `json:"pages,omitempty"`
	Entries []Entry           `json:"entries"`
	Comment string            `json:"comment,omitempty"`
}

// Creator names the tool that wrote the log.
type Creator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Entry is one request and its response. The members that start with an
// underscore are Tapwire's: they carry what a record holds that HAR has no
// member for.
type Entry struct {
	Pageref         string   `json:"pageref,omitempty"`
	StartedDateTime string   `json:"startedDateTime"`
	Time            float64  `json:"time"` // ms: the record's duration
	Request         Request  `json:"request"`
	Response        Response `json:"response"`
	Cache           struct{} `json:"cache"`
	Timings         Timings  `json:"timings"`
	ServerIPAddress string   `json:"serverIPAddress,omitempty"`
	Connection      string   `json:"connection,omitempty"`
	Comment         string   `json:"comment,omitempty"`

	ID                string               `json:"_id,omitempty"`        // the record's id; its presence marks an entry Tapwire wrote
	Direction         string               `json:"_direction,omitempty"` // in or out
	Labels            *capture.Labels      `json:"_labels,omitempty"`
	Error             string               `json:"_error,omitempty"`
	Net               *capture.Net         `json:"_net,omitempty"` // all of Net, when not empty
	Tags              capture.Tags         `json:"_tags,omitempty"`
	Redactions        []string             `json:"_redactions,omitempty"`
	Messages          []capture.Message    `json:"_messages,omitempty"` // gRPC messages, WebSocket frames
	MessagesTruncated bool                 `json:"_messagesTruncated,omitempty"`
	GRPC              *capture.GRPC        `json:"_grpc,omitempty"`
	Vendor            *capture.VendorFacts `json:"_vendor,omitempty"` // facts of a record imported from raw.jsonl
}

// NV is a name and a value: a header field, a query parameter.
type NV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Cookie is a cookie of a request or a response.
type Cookie struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Path     string `json:"path,omitempty"`
	Domain   string `json:"domain,omitempty"`
	Expires  string `json:"expires,omitempty"`
	HTTPOnly bool   `json:"httpOnly,omitempty"`
	Secure   bool   `json:"secure,omitempty"`
}

// Request is an entry's request.
type Request struct {
	Method      string    `json:"method"`
	URL         string    `json:"url"`
	HTTPVersion string    `json:"httpVersion"`
	Cookies     []Cookie  `json:"cookies"`
	Headers     []NV      `json:"headers"`
	QueryString []NV      `json:"queryString"`
	PostData    *PostData `json:"postData,omitempty"`
	HeadersSize int64     `json:"headersSize"`
	BodySize    int64     `json:"bodySize"`

	Host string `json:"_host,omitempty"` // the Host header (or :authority), when not the URL's host
}

// PostData is a request's body.
type PostData struct {
	MimeType  string  `json:"mimeType"`
	Text      string  `json:"text"`
	Params    []Param `json:"params,omitempty"`
	Encoding  string  `json:"_encoding,omitempty"` // base64 when the body is not UTF-8 text
	Truncated bool    `json:"_truncated,omitempty"`

	// StdEncoding is read, never written: some tools write "encoding"
	// here as in Content.
	StdEncoding string `json:"encoding,omitempty"`
}

// Param is a posted form parameter.
type Param struct {
	Name        string `json:"name"`
	Value       string `json:"value,omitempty"`
	FileName    string `json:"fileName,omitempty"`
	ContentType string `json:"contentType,omitempty"`
}

// Response is an entry's response. Status 0 means there was none.
type Response struct {
	Status      int      `json:"status"`
	StatusText  string   `json:"statusText"`
	HTTPVersion string   `json:"httpVersion"`
	Cookies     []Cookie `json:"cookies"`
	Headers     []NV     `json:"headers"`
	Content     Content  `json:"content"`
	RedirectURL string   `json:"redirectURL"`
	HeadersSize int64    `json:"headersSize"`
	BodySize    int64    `json:"bodySize"`

	Trailers []NV `json:"_trailers,omitempty"`
}

// Content is a response's body.
type Content struct {
	Size        int64  `json:"size"`
	Compression *int64 `json:"compression,omitempty"`
	MimeType    string `json:"mimeType"`
	Text        string `json:"text,omitempty"`
	Encoding    string `json:"encoding,omitempty"` // base64 when the body is not UTF-8 text
	Truncated   bool   `json:"_truncated,omitempty"`
}

// Timings are the phases of an entry, in ms; -1 when not known. Tapwire
// writes send 0, wait the time to the first response byte, receive the
// rest.
type Timings struct {
	Blocked float64 `json:"blocked,omitempty"`
	DNS     float64 `json:"dns,omitempty"`
	Connect float64 `json:"connect,omitempty"`
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
	SSL     float64 `json:"ssl,omitempty"`
}
