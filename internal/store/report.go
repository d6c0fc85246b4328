package store

import "time"

// Report is a replay's report kept by the hub (speedctl replay --push):
// the report's JSON as it was posted, and the few facts a list shows, read
// from it once when it is stored.
type Report struct {
	ID       string    // NewReportID: rep_ and 16 characters
	Tenant   string    // whose it is
	Created  time.Time // when the hub stored it
	Target   string    // the URL the replay sent to
	Snapshot string    // the snapshot it replayed; empty if it read files
	Sent     int64     // requests sent
	// StatusMatched and BodyMatched count the answers whose status and
	// body matched the recording; BodyCompared the answers whose body was
	// compared.
	StatusMatched, BodyCompared, BodyMatched int64
	Passed                                   bool   // every assertion held
	Data                                     []byte // the report's JSON; empty in a list
}

// MaxReports bounds the reports a list returns: the newest.
const MaxReports = 1000

// NewReportID returns a new random report id: rep_ and 16 base32
// characters (80 random bits), URL-safe.
func NewReportID() string { return newID("rep_") }

// ValidReportID reports whether id is of the form NewReportID makes.
func ValidReportID(id string) error { return validID("report", "rep_", id) }
