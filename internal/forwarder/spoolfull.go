package forwarder

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tapwire/tapwire/internal/spool"
	"github.com/tapwire/tapwire/internal/wire"
)

// spoolError is the error a batch gets when the spool refused it: errStore, and when the disk is full an
// answer that says so and how full the spool is.
func spoolError(err error, sp spool.Stats) error {
	if errors.Is(err, spool.ErrNoSpace) {
		full := &wire.ServerError{Status: http.StatusServiceUnavailable, Message: "spool full: " + noSpaceText(sp), Wait: 5 * time.Second}
		return fmt.Errorf("%w: %w: %w", full, errStore, err)
	}
	return fmt.Errorf("%w: %w", errStore, err)
}

// noSpaceText says that the disk is full and how much of it the spool holds.
func noSpaceText(sp spool.Stats) string {
	return fmt.Sprintf("no space left on device (ENOSPC) with the spool at %s", spoolUsage(sp))
}

// spoolUsage is "B of MAX bytes (P%)".
func spoolUsage(sp spool.Stats) string {
	pct := 0.0
	if sp.MaxBytes > 0 {
		pct = 100 * float64(sp.Bytes) / float64(sp.MaxBytes)
	}
	return fmt.Sprintf("%d of %d bytes (%.0f%%)", sp.Bytes, sp.MaxBytes, pct)
}

// spoolHealth returns what the health check says of the spool: bad when the disk is full (batches are
// refused), note when the spool is at its byte bound (batches are taken, the oldest records deleted).
func spoolHealth(sp spool.Stats) (bad, note string) {
	switch {
	case sp.NoSpace != nil:
		return "spool full: " + noSpaceText(sp) + ", batches are refused", ""
	case sp.Full:
		return "", "spool full: " + spoolUsage(sp) + ", the oldest records are deleted to make room"
	}
	return "", ""
}

// spoolFullness is the forwarder_spool_full gauge: 1 when the disk is full, else the share of
// FORWARDER_SPOOL_BYTES used.
func spoolFullness(sp spool.Stats) float64 {
	if sp.NoSpace != nil {
		return 1
	}
	if sp.MaxBytes <= 0 {
		return 0
	}
	return min(1, float64(sp.Bytes)/float64(sp.MaxBytes))
}
