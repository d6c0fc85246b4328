package store

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"
)

// Snapshot is a named, immutable set of a tenant's records: copied from
// its traffic by a filter (Store.CreateSnapshot), or stored from files
// (Store.BeginSnapshot, AddSnapshotRecords, FinishSnapshot). A snapshot
// holds copies of its records, so that retention, which deletes records
// from the traffic, leaves it whole. A Filter with Snapshot set reads its
// records with List, Scan and Count.
type Snapshot struct {
	ID      string    // NewSnapshotID: snap_ and 16 characters
	Tenant  string    // whose it is
	Name    string    // for people; not unique
	Created time.Time // when it was made
	Source  string    // SourceFilter or SourceUpload
	// Spec is what it was made from, as the hub wrote it (the API's
	// filter in JSON); empty for an upload. The store keeps it as it is.
	Spec     []byte
	From, To time.Time // the time window it was cut from; zero: unbounded
	Records  int64     // how many records it holds
}

// Sources of a snapshot.
const (
	SourceFilter = "filter" // cut from the tenant's traffic
	SourceUpload = "upload" // stored from files (speedctl snapshot push)
)

// MaxSnapshotRecords bounds the records of one snapshot: a filter that
// selects more is refused with ErrTooMany before anything is stored, an
// upload with more is refused.
const MaxSnapshotRecords = 1_000_000

// NewSnapshotID returns a new random snapshot id: snap_ and 16 base32
// characters (80 random bits), URL-safe.
func NewSnapshotID() string { return newID("snap_") }

// ValidSnapshotID reports whether id is of the form NewSnapshotID makes.
func ValidSnapshotID(id string) error { return validID("snapshot", "snap_", id) }

// newID returns prefix and 16 random base32 characters (80 bits),
// lower case: URL-safe.
func newID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return prefix + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// validID reports whether id is of the form newID(prefix) makes; if not,
// the error names what (a snapshot, a report) and wraps ErrNotFound.
func validID(what, prefix, id string) error {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) != 16 || strings.ContainsFunc(rest, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '2' && r <= '7') }) {
		return fmt.Errorf("%s id %q: want %s and 16 of a-z 2-7: %w", what, id, prefix, ErrNotFound)
	}
	return nil
}
