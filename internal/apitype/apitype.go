// Package apitype holds the request and response types of the hub's HTTP
// API (docs/api.md): the hub's handlers (internal/hub) encode and decode
// them, and its client (internal/hubclient) does the reverse, so that the
// two cannot drift. Records, summaries, tenants and keys are the domain's
// types (capture.Record, store.Summary, store.Tenant, store.Key), as the
// API writes them.
//
// The endpoints and their types:
//
//	GET    /api/v1/whoami                      Whoami
//	GET    /api/v1/records                     ListQuery → RecordList
//	GET    /api/v1/records/arrivals            ArrivalsQuery → Arrivals
//	GET    /api/v1/stream                      ArrivalsQuery (Last-Event-ID) → server-sent events of store.Item
//	GET    /api/v1/records/{id}                capture.Record
//	GET    /api/v1/records/{id}/body/{side}    BodyView
//	GET    /api/v1/services                    Filter → Services
//	GET    /api/v1/map                         Filter → store.ServiceMap
//	GET    /api/v1/histogram                   Filter, step → Histogram
//	GET    /api/v1/export/{format}             ExportQuery → the file, trailer ExportNextCursor
//	POST   /api/v1/snapshots                   CreateSnapshotRequest → Snapshot (201)
//	GET    /api/v1/snapshots                   Snapshots
//	GET    /api/v1/snapshots/{id}              Snapshot, with Counts
//	GET    /api/v1/snapshots/{id}/records/{format}  ExportQuery → the file, trailer ExportNextCursor
//	DELETE /api/v1/snapshots/{id}              Snapshot
//	POST   /api/v1/snapshots/upload?name=N     our JSONL → Snapshot (201)
//	POST   /api/v1/reports                     a replay's report (PushedReport and more) → ReportSummary (201)
//	GET    /api/v1/reports                     ReportListQuery → Reports
//	GET    /api/v1/reports/{id}                Report
//	DELETE /api/v1/reports/{id}                Report (without the report)
//	POST   /api/v1/tenants                     CreateTenantRequest → CreatedTenant
//	GET    /api/v1/tenants                     Tenants
//	GET    /api/v1/tenants/{tenant}            store.Tenant
//	POST   /api/v1/tenants/{tenant}/keys       CreateKeyRequest → CreatedKey
//	GET    /api/v1/tenants/{tenant}/keys       Keys
//	DELETE /api/v1/keys/{id}                   store.Key
//	GET    /healthz                            Health
//
// Every answer other than 2xx of the query and administration APIs is an
// Error.
package apitype

import (
	"encoding/json"
	"net/url"
	"strconv"
	"time"

	"github.com/tapwire/tapwire/internal/store"
)

// Error is the body of every refusal of the query and administration
// APIs: {"error": "a short message for people"}.
type Error struct {
	Error string `json:"error"`
}

// Health is GET /healthz: "ok", or "store unavailable" with 503.
type Health struct {
	Status string `json:"status"`
}

// Whoami is GET /api/v1/whoami: the key the request carried.
type Whoami struct {
	Tenant string     `json:"tenant"`
	Role   store.Role `json:"role"`
	Key    string     `json:"key"`  // the key's public id, tw_xxxxxxxxxxxx
	Name   string     `json:"name"` // the key's note for people; may be empty
}

// Filter is the filter parameters of the list, the summaries and the
// exports (docs/api.md, "Filters"). Empty fields select everything; the
// hub checks the values.
//
// In JSON (the filter of CreateSnapshotRequest) its members are named as
// the query parameters.
type Filter struct {
	From      string `json:"from,omitempty"` // RFC 3339, Unix milliseconds, now, or a duration ago: -15m, -2h, -7d
	To        string `json:"to,omitempty"`
	Service   string `json:"service,omitempty"`   // labels.service, exactly
	Direction string `json:"direction,omitempty"` // in or out
	Method    string `json:"method,omitempty"`    // any case
	Status    string `json:"status,omitempty"`    // a class or a code: 5xx, 404
	Host      string `json:"host,omitempty"`      // without port, any case
	Path      string `json:"path,omitempty"`      // a substring of the URL path, case-sensitive
	Q         string `json:"q,omitempty"`         // a substring of the URL or the start of a body, any case
	Failed    bool   `json:"failed,omitempty"`    // only failed exchanges
}

// filterParams are the query parameters of Filter's string fields.
func (f *Filter) params() []struct {
	name string
	v    *string
} {
	return []struct {
		name string
		v    *string
	}{
		{"from", &f.From}, {"to", &f.To}, {"service", &f.Service}, {"direction", &f.Direction},
		{"method", &f.Method}, {"status", &f.Status}, {"host", &f.Host}, {"path", &f.Path}, {"q", &f.Q},
	}
}

// Encode sets the filter's parameters in q: those not empty, and
// failed=true.
func (f Filter) Encode(q url.Values) {
	for _, p := range f.params() {
		if *p.v != "" {
			q.Set(p.name, *p.v)
		}
	}
	if f.Failed {
		q.Set("failed", "true")
	}
}

// DecodeFilter reads the filter parameters of q. The only error is a
// failed that is not a boolean; the hub checks the other values.
func DecodeFilter(q url.Values) (Filter, error) {
	var f Filter
	for _, p := range f.params() {
		*p.v = q.Get(p.name)
	}
	if s := q.Get("failed"); s != "" {
		var err error
		if f.Failed, err = strconv.ParseBool(s); err != nil {
			return f, &ParamError{"failed", s, "want true or false"}
		}
	}
	return f, nil
}

// ParamError is a query parameter with a bad value.
type ParamError struct {
	Name, Value, Want string
}

func (e *ParamError) Error() string { return e.Name + "=" + strconv.Quote(e.Value) + ": " + e.Want }

// ListQuery is the parameters of GET /api/v1/records.
type ListQuery struct {
	Filter
	Limit  int    // records in the page, 1 to 1000; if zero, the hub's default (100)
	Cursor string // RecordList.Next of the previous page; empty for the first
	Full   bool   // fill each Item's Record with the whole record
}

// Values returns q as query parameters.
func (q ListQuery) Values() url.Values {
	v := url.Values{}
	q.Filter.Encode(v)
	setPage(v, q.Limit, q.Cursor)
	if q.Full {
		v.Set("full", "true")
	}
	return v
}

func setPage(v url.Values, limit int, cursor string) {
	if limit != 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
}

// RecordList is GET /api/v1/records: a page of records, newest first.
type RecordList struct {
	Records []store.Item `json:"records"`
	Next    string       `json:"next,omitempty"` // the cursor of the next page; empty on the last
}

// ArrivalsQuery is the parameters of GET /api/v1/records/arrivals and
// GET /api/v1/stream: the records that arrived after a cursor, in arrival
// order.
type ArrivalsQuery struct {
	Filter
	Limit int // records in the answer, 1 to 1000; if zero, 100 (arrivals only)
	// After is the cursor: a record's seq (Arrivals.Next, an event's id),
	// 0 for the first record there is, or AfterEnd for what arrives from
	// now on. If zero, the arrivals start from the first record and the
	// stream from now (AfterEnd).
	After int64
}

// AfterEnd is ArrivalsQuery.After of what arrives from now on.
const AfterEnd = -1

// Values returns q as query parameters.
func (q ArrivalsQuery) Values() url.Values {
	v := url.Values{}
	q.Filter.Encode(v)
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	switch {
	case q.After < 0:
		v.Set("after", "end")
	case q.After > 0:
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	return v
}

// Arrivals is GET /api/v1/records/arrivals: records in the order they
// arrived, each with its seq.
type Arrivals struct {
	Records []store.Item `json:"records"`
	// Next is the cursor to ask from next: the seq of the last record,
	// or the cursor asked from if there is none (with after=end, the
	// tenant's latest seq).
	Next int64 `json:"next"`
}

// BodyView is GET /api/v1/records/{id}/body/{side}: a captured body made
// readable: content encodings undone, JSON indented, binary left as bytes.
// Byte counts are int64, as every byte count of the API.
type BodyView struct {
	ContentType string `json:"contentType,omitempty"`
	Encoding    string `json:"encoding,omitempty"` // the Content-Encoding undone, as "gzip" or "br, gzip"
	Size        int64  `json:"size"`               // the whole body's size on the wire
	Captured    int64  `json:"captured"`           // bytes captured (before decoding)
	Truncated   bool   `json:"truncated,omitempty"`
	// Kind is empty (no bytes), json (Text is indented JSON), text (Text
	// is the body), or binary (Data holds the first bytes).
	Kind  string `json:"kind"`
	Text  string `json:"text,omitempty"`
	Data  []byte `json:"data,omitempty"` // base64 in JSON; at most 64 KiB
	Bytes int64  `json:"bytes"`          // bytes after decoding
	Note  string `json:"note,omitempty"` // why decoding stopped early, or what was not decoded
}

// Services is GET /api/v1/services: each service's traffic and endpoints.
type Services struct {
	Services []store.ServiceSummary `json:"services"`
}

// Histogram is GET /api/v1/histogram: records and failed records per step.
type Histogram struct {
	From    time.Time      `json:"from"`
	To      time.Time      `json:"to"`
	Step    string         `json:"step"` // as time.Duration writes it: 1m0s
	StepMs  int64          `json:"stepMs"`
	Buckets []store.Bucket `json:"buckets"`
}

// ExportQuery is the parameters of GET /api/v1/export/{format}.
type ExportQuery struct {
	Filter
	Limit  int    // records at most, up to 100,000; if zero, the hub's default (10,000)
	Cursor string // the ExportNextCursor of a cut export: where the rest begins
}

// Values returns q as query parameters.
func (q ExportQuery) Values() url.Values {
	v := url.Values{}
	q.Filter.Encode(v)
	setPage(v, q.Limit, q.Cursor)
	return v
}

// ExportNextCursor is the trailer of an export cut at its limit: the
// cursor of the rest.
const ExportNextCursor = "Tapwire-Next-Cursor"

// CreateTenantRequest is the body of POST /api/v1/tenants.
type CreateTenantRequest struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	KeyName string `json:"keyName"` // the name of both keys; if empty, "created with the tenant"
}

// CreatedTenant answers POST /api/v1/tenants: the tenant, an ingest key
// and a read key.
type CreatedTenant struct {
	Tenant store.Tenant `json:"tenant"`
	Keys   []CreatedKey `json:"keys"`
}

// CreateKeyRequest is the body of POST /api/v1/tenants/{tenant}/keys.
type CreateKeyRequest struct {
	Role store.Role `json:"role"` // ingest, read or admin, any case
	Name string     `json:"name"`
}

// CreatedKey is a key as the administration API answers its creation: the
// stored key and, shown this once, the key itself.
type CreatedKey struct {
	store.Key
	Secret string `json:"key"` // the whole key, tw_...; the hub keeps only its hash
}

// Tenants is GET /api/v1/tenants.
type Tenants struct {
	Tenants []store.Tenant `json:"tenants"`
}

// Keys is GET /api/v1/tenants/{tenant}/keys.
type Keys struct {
	Keys []store.Key `json:"keys"`
}

// CreateSnapshotRequest is the body of POST /api/v1/snapshots: a snapshot
// of the records that Filter selects in the window [From, To). From and
// To take what the filter's from and to take and stand for them (giving
// both a top-level and a filter's from, or to, is an error); the hub
// keeps the window as absolute times.
type CreateSnapshotRequest struct {
	Name   string `json:"name"`
	Filter Filter `json:"filter"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
}

// Snapshot is a named, immutable set of records (docs/api.md,
// "Snapshots"): GET /api/v1/snapshots/{id}, an item of Snapshots, and the
// answer of its creation.
type Snapshot struct {
	ID      string    `json:"id"` // snap_ and 16 of a-z 2-7
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// Source is filter (cut from the traffic) or upload (pushed from
	// files).
	Source string `json:"source"`
	// Filter is the filter it was cut with, its window in From and To;
	// absent for an upload.
	Filter *Filter `json:"filter,omitempty"`
	// From and To are the window: the one it was cut from (absent if
	// unbounded), or for an upload the span of its records' starts.
	From    time.Time     `json:"from,omitzero"`
	To      time.Time     `json:"to,omitzero"`
	Records int64         `json:"records"`
	Counts  *store.Counts `json:"counts,omitempty"` // GET /api/v1/snapshots/{id} only
}

// Snapshots is GET /api/v1/snapshots: the tenant's snapshots, newest
// first.
type Snapshots struct {
	Snapshots []Snapshot `json:"snapshots"`
}

// SnapshotUploadQuery is the parameters of POST /api/v1/snapshots/upload.
type SnapshotUploadQuery struct {
	Name string
}

// Values returns q as query parameters.
func (q SnapshotUploadQuery) Values() url.Values {
	return url.Values{"name": {q.Name}}
}

// PushedReport is the members of a replay's report (speedctl replay's
// --report JSON, docs/replay.md) that POST /api/v1/reports reads; the hub
// keeps the whole body as it was posted, other members included.
type PushedReport struct {
	Target        string `json:"target"`
	Snapshot      string `json:"snapshot,omitempty"`
	Sent          int64  `json:"sent"`
	StatusMatched int64  `json:"status_matched"`
	BodyCompared  int64  `json:"body_compared"`
	BodyMatched   int64  `json:"body_matched"`
	Passed        bool   `json:"passed"`
}

// ReportSummary is a stored replay report as GET /api/v1/reports lists
// it, and the answer of POST /api/v1/reports (201).
type ReportSummary struct {
	ID            string    `json:"id"` // rep_ and 16 of a-z 2-7
	Created       time.Time `json:"created"`
	Target        string    `json:"target"`
	Snapshot      string    `json:"snapshot,omitempty"` // the snapshot replayed; absent for files
	Sent          int64     `json:"sent"`
	StatusMatched int64     `json:"statusMatched"`
	BodyCompared  int64     `json:"bodyCompared"`
	BodyMatched   int64     `json:"bodyMatched"`
	// StatusMatchRate is StatusMatched/Sent and BodyMatchRate
	// BodyMatched/BodyCompared, from 0 to 1; 1 when nothing was counted.
	StatusMatchRate float64 `json:"statusMatchRate"`
	BodyMatchRate   float64 `json:"bodyMatchRate"`
	Passed          bool    `json:"passed"`
}

// Reports is GET /api/v1/reports: the tenant's reports, newest first.
type Reports struct {
	Reports []ReportSummary `json:"reports"`
}

// Report is GET /api/v1/reports/{id} and DELETE's answer: the summary
// and the report as it was pushed (docs/replay.md, "Report").
type Report struct {
	ReportSummary
	Report json.RawMessage `json:"report,omitempty"` // absent in DELETE's answer
}

// ReportListQuery is the parameters of GET /api/v1/reports.
type ReportListQuery struct {
	Limit int // at most this many, the newest; if zero, 100; at most 1000
}

// Values returns q as query parameters.
func (q ReportListQuery) Values() url.Values {
	v := url.Values{}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}
