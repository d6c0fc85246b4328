// Package store is the hub's storage of capture records, tenants and API
// keys. It defines the Store interface that store/sqlite and
// store/postgres implement, the query types both understand, and what the
// two share: the columns a record is indexed by (Row), the encoding of a
// stored record, cursors, and the summaries computed from a Scan
// (endpoints, service map, histogram); store/sqlq has the SQL of record
// queries they share. docs/hub.md describes the schema.
package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

// Errors of a Store.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrBadCursor = errors.New("bad cursor")
	ErrClosed    = errors.New("store is closed")
)

// Store keeps records, tenants and API keys. Every record method takes the
// tenant whose records it reads or writes and never sees another's.
// Implementations are safe for concurrent use.
type Store interface {
	// Insert stores recs for tenant in one transaction and returns how
	// many were new. A record whose id the tenant already has (stored
	// earlier or earlier in recs) is skipped: delivery is at least once.
	// Insert stores the records as they are; the hub stamps
	// Labels.Tenant before.
	Insert(ctx context.Context, tenant string, recs []*capture.Record) (int, error)

	// BeginInsert starts an Insert of many records in one transaction:
	// the caller Adds them in chunks, so that it never holds them all,
	// and then Commits or Rolls back. Until then the Inserter holds a
	// database connection (in SQLite, the one writer).
	BeginInsert(ctx context.Context, tenant string) (Inserter, error)

	// List returns one page of the tenant's records that match q.Filter,
	// newest first (by start, then id), and the cursor of the next page.
	List(ctx context.Context, tenant string, q Query) (Page, error)

	// Since returns the tenant's records that match f (a filter of the
	// traffic, f.Snapshot empty) and arrived after the arrival sequence
	// number after, in the order they arrived (not by start time), at
	// most limit of them (see SinceLimit), each with Item.Seq set, and
	// the cursor to ask from next: the Seq of the last, or after if
	// there is none. Every stored record gets a Seq when its insert
	// commits, larger than those of every record of the tenant whose
	// insert committed before (also of records since deleted), so that
	// asking again from next never misses a record nor returns one
	// twice. after 0 starts from the first record; after -1 (any
	// negative) returns no record and, as next, the tenant's latest seq:
	// the cursor of what arrives from now on.
	Since(ctx context.Context, tenant string, f Filter, after int64, limit int) ([]Item, int64, error)

	// Get returns one record in full, or ErrNotFound.
	Get(ctx context.Context, tenant, id string) (*capture.Record, error)

	// Scan calls fn with the columns summaries need of every record of
	// the tenant that matches f, in no particular order: it fills
	// StartUs, DurUs, Direction, Service, Method, Host, Route, Status and
	// Failed. fn must not keep the Row. An error from fn stops the scan.
	Scan(ctx context.Context, tenant string, f Filter, fn func(*Row) error) error

	// Count returns, for each step of the given length (a multiple of
	// step since the Unix epoch) in which a record of the tenant that
	// matches f started, how many did and how many failed; by time, empty
	// steps left out.
	Count(ctx context.Context, tenant string, f Filter, step time.Duration) ([]Bucket, error)

	// DeleteBefore deletes the records of every tenant that started
	// before t and returns how many it deleted. It deletes in small
	// transactions so that ingest goes on meanwhile.
	DeleteBefore(ctx context.Context, t time.Time) (int64, error)

	// CreateSnapshot copies the records of sn.Tenant that match f (a
	// filter of the traffic, f.Snapshot empty) into the new snapshot sn,
	// in one transaction, and returns it with Records set. A selection of
	// more than MaxSnapshotRecords is ErrTooMany and stores nothing; an
	// id taken is ErrExists.
	CreateSnapshot(ctx context.Context, sn Snapshot, f Filter) (Snapshot, error)
	// BeginSnapshot adds the empty snapshot sn, hidden (neither listed
	// nor found) until FinishSnapshot: an upload fills it with
	// AddSnapshotRecords, in as many transactions as it takes.
	BeginSnapshot(ctx context.Context, sn Snapshot) error
	// AddSnapshotRecords stores recs in the hidden snapshot id of tenant
	// and returns how many were new: a record whose id it holds already
	// is skipped. ErrNotFound if there is no such hidden snapshot.
	AddSnapshotRecords(ctx context.Context, tenant, id string, recs []*capture.Record) (int, error)
	// FinishSnapshot counts the records of the hidden snapshot id, sets
	// its time window to theirs if it has none, and shows it.
	FinishSnapshot(ctx context.Context, tenant, id string) (Snapshot, error)
	// Snapshots lists the tenant's snapshots, newest first.
	Snapshots(ctx context.Context, tenant string) ([]Snapshot, error)
	// Snapshot returns one snapshot of the tenant, or ErrNotFound.
	Snapshot(ctx context.Context, tenant, id string) (Snapshot, error)
	// SnapshotRecord returns one record of a snapshot, or ErrNotFound.
	SnapshotRecord(ctx context.Context, tenant, snapshot, id string) (*capture.Record, error)
	// DeleteSnapshot deletes a snapshot of the tenant, hidden or not, and
	// its records, in small transactions (it is hidden by the first);
	// ErrNotFound if there is none.
	DeleteSnapshot(ctx context.Context, tenant, id string) error

	// CreateReport stores a replay's report; ErrExists if its id is
	// taken. Retention (DeleteBefore) leaves reports alone.
	CreateReport(ctx context.Context, rep Report) error
	// Reports lists the tenant's reports, newest first, at most limit
	// (at most MaxReports) of them, without their Data.
	Reports(ctx context.Context, tenant string, limit int) ([]Report, error)
	// Report returns one report of the tenant with its Data, or
	// ErrNotFound.
	Report(ctx context.Context, tenant, id string) (Report, error)
	// DeleteReport deletes a report of the tenant; ErrNotFound if there
	// is none.
	DeleteReport(ctx context.Context, tenant, id string) error

	// CreateTenant adds a tenant; ErrExists if its id is taken.
	CreateTenant(ctx context.Context, t Tenant) error
	// Tenants lists every tenant, by id.
	Tenants(ctx context.Context) ([]Tenant, error)

	// CreateKey stores an API key (its hash, never the key); ErrExists if
	// its id is taken, ErrNotFound if its tenant does not exist.
	CreateKey(ctx context.Context, k Key) error
	// Key returns the key with this id, revoked or not, or ErrNotFound.
	Key(ctx context.Context, id string) (Key, error)
	// Keys lists the keys of a tenant (every tenant's if tenant is ""),
	// by tenant and creation time.
	Keys(ctx context.Context, tenant string) ([]Key, error)
	// RevokeKey marks a key revoked at time at; ErrNotFound if none.
	RevokeKey(ctx context.Context, id string, at time.Time) error

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database. Calls in flight may fail.
	Close() error
}

// Inserter is an Insert in progress (Store.BeginInsert). It is not safe
// for concurrent use.
type Inserter interface {
	// Add stores rows (NewRow, NewRowJSON) within the transaction,
	// skipping ids the tenant has (stored earlier, or added earlier in
	// this transaction). The Inserter does not keep rows.
	Add(rows []*Row) error
	// Commit commits the transaction and returns how many records were
	// new. After an error of Add, Commit fails.
	Commit() (int, error)
	// Rollback abandons the transaction; after Commit it does nothing.
	Rollback()
}

// Tenant is one isolated set of records and keys.
type Tenant struct {
	ID      string    `json:"id"`   // as in Labels.Tenant: 1 to 64 of a-z 0-9 . _ -
	Name    string    `json:"name"` // for people; may be empty
	Created time.Time `json:"created"`
}

var tenantID = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidTenantID reports whether id can name a tenant.
func ValidTenantID(id string) error {
	if !tenantID.MatchString(id) {
		return fmt.Errorf("tenant id %q: want 1 to 64 of a-z 0-9 . _ -, starting with a letter or digit", id)
	}
	return nil
}

// Role says what a key may do.
type Role string

const (
	RoleIngest Role = "ingest" // post batches (a forwarder's key)
	RoleRead   Role = "read"   // query and export (a user's key)
	// RoleAdmin creates tenants and keys through the API, for every
	// tenant whichever tenant holds the key. It reads no records and
	// posts no batches.
	RoleAdmin Role = "admin"
)

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(s)); r {
	case RoleIngest, RoleRead, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want ingest, read or admin", s)
}

// Key is a stored API key: its public id and the SHA-256 of the whole key.
// internal/hub makes and checks keys.
type Key struct {
	ID      string    `json:"id"` // the public part of the key, unique
	Tenant  string    `json:"tenant"`
	Role    Role      `json:"role"`
	Name    string    `json:"name,omitempty"` // a note for people, as "forwarder prod"
	Hash    []byte    `json:"-"`              // SHA-256 of the whole key, 32 bytes
	Created time.Time `json:"created"`
	Revoked time.Time `json:"revoked,omitzero"` // zero while the key is valid
}

// Filter selects records. Zero fields select everything.
type Filter struct {
	From, To  time.Time         // start in [From, To); zero: unbounded
	Service   string            // labels.service, exactly
	Direction capture.Direction // in or out
	Method    string            // request method, exactly (upper case)
	StatusLo  int               // response status in [StatusLo, StatusHi]; both 0: any.
	StatusHi  int               // Records without a response have status 0.
	Host      string            // Row.Host, exactly (lower case, no port)
	Path      string            // a substring of the URL path, case-sensitive
	Text      string            // a substring of the URL or the start of a body, case-insensitive (see Row.Search)
	Failed    bool              // only failed exchanges (Row.Failed)
	// Snapshot, if set, selects among the records of this snapshot of
	// the tenant's instead of its traffic.
	Snapshot string
}

// Query is a Filter with paging.
type Query struct {
	Filter
	Limit  int    // records per page; if zero, DefaultLimit; at most MaxLimit
	Cursor string // from the previous Page.Next; empty for the first page
	Full   bool   // fill Item.Record with the whole record
}

// Paging limits of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// PageLimit returns q.Limit with its default and bound applied.
func (q *Query) PageLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultLimit
	case q.Limit > MaxLimit:
		return MaxLimit
	}
	return q.Limit
}

// SinceLimit returns the limit of Store.Since with its default
// (DefaultLimit) and bound (MaxLimit) applied.
func SinceLimit(limit int) int {
	q := Query{Limit: limit}
	return q.PageLimit()
}

// Page is one page of List.
type Page struct {
	Items []Item `json:"records"`
	Next  string `json:"next,omitempty"` // cursor of the next page; empty on the last page
}

// Item is one record in a list: its summary and, when asked, the whole
// record.
type Item struct {
	Summary
	// Seq is the record's arrival sequence number, set by Store.Since
	// only (zero, and left out, in List).
	Seq    int64           `json:"seq,omitempty"`
	Record *capture.Record `json:"record,omitempty"`
}

// Summary is what a list shows of a record.
type Summary struct {
	ID        string            `json:"id"`
	Start     time.Time         `json:"start"`
	DurMicros int64             `json:"durationUs"`
	Kind      capture.Kind      `json:"kind"`
	Direction capture.Direction `json:"direction"`
	Labels    capture.Labels    `json:"labels"`
	Method    string            `json:"method,omitempty"`
	URL       string            `json:"url"`
	Host      string            `json:"host,omitempty"`
	Status    int               `json:"status,omitempty"`
	Error     string            `json:"error,omitempty"`
	Failed    bool              `json:"failed,omitempty"`
	ReqSize   int64             `json:"reqSize"` // request body bytes (tcp: bytes up)
	ResSize   int64             `json:"resSize"` // response body bytes (tcp: bytes down)
}

// ParseStatus reads a status filter: a class as "5xx", or one code as
// "404".
func ParseStatus(s string) (lo, hi int, err error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) == 3 && s[1:] == "xx" && s[0] >= '1' && s[0] <= '5' {
		c := int(s[0]-'0') * 100
		return c, c + 99, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 999 {
		return 0, 0, fmt.Errorf("status %q: want a class (1xx to 5xx) or a code (100 to 999)", s)
	}
	return n, n, nil
}
