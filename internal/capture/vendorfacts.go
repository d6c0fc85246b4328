package capture

// The vendor's facts that a Record keeps (Record.Vendor): what an imported
// RRPair held that no other field of the record holds. The mapping itself
// is in internal/rrpair.

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// VendorNetInfo is the vendor's connection block.
type VendorNetInfo struct {
	ID         string          `json:"id,omitempty"`        // connection id
	StartTime  string          `json:"startTime,omitempty"` // RFC 3339
	Downstream *VendorEndpoint `json:"downstream,omitempty"`
	Upstream   *VendorEndpoint `json:"upstream,omitempty"`
}

// VendorEndpoint is one side of the vendor's connection block.
type VendorEndpoint struct {
	Established string    `json:"established,omitempty"` // RFC 3339
	IPAddress   string    `json:"ipAddress,omitempty"`
	Port        int       `json:"port,omitempty"`
	Hostname    string    `json:"hostname,omitempty"`
	BytesSent   Int64Text `json:"bytesSent,omitempty"`
}

// Int64Text is an int64 that the vendor writes as a JSON string, as
// protobuf's JSON mapping does ("386"). A bare JSON number is accepted too.
type Int64Text int64

// MarshalJSON writes n as a JSON string.
func (n Int64Text) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatInt(int64(n), 10))
}

// UnmarshalJSON reads "386" or 386.
func (n *Int64Text) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("int64 text: %w", err)
	}
	*n = Int64Text(v)
	return nil
}

// VendorFacts are the facts of an imported vendor record that no other
// Record field holds. A field is set only when rrpair.FromRecord would not derive
// the same value from the rest of the record; all are empty for records
// goproxy captured.
type VendorFacts struct {
	UUID          string            `json:"uuid,omitempty"`          // uuid, when it is not ID's 16 bytes in base64
	Resource      string            `json:"resource,omitempty"`      // resource, when not Labels.Service
	Tech          string            `json:"tech,omitempty"`          // tech: the vendor's detected technology
	L7Protocol    string            `json:"l7protocol,omitempty"`    // l7protocol, when not the URL scheme (or tcp)
	Command       string            `json:"command,omitempty"`       // command, when not the request method
	Location      string            `json:"location,omitempty"`      // location, when not the URL path
	Status        string            `json:"status,omitempty"`        // status, when not the response status code
	URL           string            `json:"url,omitempty"`           // http.req.url, when not http.req.uri
	URI           string            `json:"uri,omitempty"`           // http.req.uri, when not the path and query of Request.URL
	Version       string            `json:"version,omitempty"`       // http.req.version, when not Request.Proto without "HTTP/"
	StatusMessage string            `json:"statusMessage,omitempty"` // http.res.statusMessage, when not "<status> <statusText>"
	ContentType   string            `json:"contentType,omitempty"`   // http.res.contentType, when not the Content-Type header
	Signature     map[string]string `json:"signature,omitempty"`     // signature: mock-matching keys, values base64
	NetInfo       *VendorNetInfo    `json:"netinfo,omitempty"`       // netinfo facts that Net does not hold

	// Absent names the vendor fields (as "command", "http.req.uri") that
	// were empty or missing though export would derive a value for them;
	// export leaves them out again.
	Absent []string `json:"absent,omitempty"`

	Extra    map[string]json.RawMessage `json:"extra,omitempty"`    // top-level fields RRPair does not model
	ReqExtra map[string]json.RawMessage `json:"reqExtra,omitempty"` // http.req fields RRRequest does not model
	ResExtra map[string]json.RawMessage `json:"resExtra,omitempty"` // http.res fields RRResponse does not model
}

// Trim drops empty endpoints and returns nil if nothing is left.
func (n *VendorNetInfo) Trim() *VendorNetInfo {
	if n.Downstream != nil && *n.Downstream == (VendorEndpoint{}) {
		n.Downstream = nil
	}
	if n.Upstream != nil && *n.Upstream == (VendorEndpoint{}) {
		n.Upstream = nil
	}
	if *n == (VendorNetInfo{}) {
		return nil
	}
	return n
}
