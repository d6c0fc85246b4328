package store

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"regexp"
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

var snapshotID = regexp.MustCompile(`^snap_[a-z2-7]{16}$`)

// NewSnapshotID returns a new random snapshot id: snap_ and 16 base32
// characters (80 random bits), URL-safe.
func NewSnapshotID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "snap_" + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// ValidSnapshotID reports whether id is of the form NewSnapshotID makes.
func ValidSnapshotID(id string) error {
	if !snapshotID.MatchString(id) {
		return fmt.Errorf("snapshot id %q: want snap_ and 16 of a-z 2-7: %w", id, ErrNotFound)
	}
	return nil
}
