// Package retry is the one retry policy of Tapwire's batch loops (goproxy's
// shipper, the forwarder's delivery to each sink, speedctl's import): a
// capped exponential backoff with jitter in which a server's Retry-After
// wins up to a cap, one rule for which errors are permanent, and a log that
// says when a run of failures starts and when it ends, not at every attempt
// (Tailscale's logtail uploader does the same).
package retry

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

// MaxRetryAfter caps how long a Retry-After is honoured.
const MaxRetryAfter = 5 * time.Minute

// Backoff is the wait between failed attempts: Min doubled after each
// consecutive failure up to Max, half of it random. Zero fields are 250ms
// and 30s.
type Backoff struct {
	Min, Max time.Duration
}

// Wait returns how long to wait after the n-th consecutive failure (n >=
// 1), err being the last: the backoff, or the Retry-After that err carries
// (an error with a RetryAfter() time.Duration method, as *wire.ServerError
// has) when it is longer, at most MaxRetryAfter.
func (b Backoff) Wait(n int, err error) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 250 * time.Millisecond
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	hi = max(hi, lo)
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	wait := d/2 + rand.N(d/2+1)
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		wait = max(wait, min(ra.RetryAfter(), MaxRetryAfter))
	}
	return wait
}

// Permanent reports whether trying the same request again cannot succeed:
// err is, or wraps, a *capture.PermanentError, or an error whose
// Permanent() method says so (*wire.ServerError: a 4xx other than 408 and
// 429).
func Permanent(err error) bool {
	var pe *capture.PermanentError
	if errors.As(err, &pe) {
		return true
	}
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// Auth reports whether err is the server refusing the credentials (401 or
// 403, from an error with a StatusCode() int method). Such a refusal is
// permanent for the request but says nothing of the data: a loop with a
// durable queue (the forwarder's spool) keeps the data and retries until
// the configuration is fixed.
func Auth(err error) bool {
	var sc interface{ StatusCode() int }
	if !errors.As(err, &sc) {
		return false
	}
	return sc.StatusCode() == http.StatusUnauthorized || sc.StatusCode() == http.StatusForbidden
}

// Log logs a run of failures once, at its first failure (warn), the rest
// at debug, and its end (info, with how many failures and for how long).
// The zero value logs to slog.Default(). A Log is not safe for concurrent
// use: it belongs to one loop.
type Log struct {
	Logger *slog.Logger

	failures int
	since    time.Time
}

func (l *Log) logger() *slog.Logger {
	if l.Logger == nil {
		return slog.Default()
	}
	return l.Logger
}

// Failed records a failed attempt and returns the number of consecutive
// failures, this one included. msg says what is failing ("capture shipping
// failing"); args are added to the first line.
func (l *Log) Failed(msg string, err error, args ...any) int {
	l.failures++
	if l.failures == 1 {
		l.since = time.Now()
		l.logger().Warn(msg+"; retrying with backoff (repeats are logged at debug)", append(args, "err", err.Error())...)
	} else {
		l.logger().Debug(msg+" again", "failures", l.failures, "err", err.Error())
	}
	return l.failures
}

// Succeeded ends a run of failures, logging msg ("capture shipping
// recovered") when there was one.
func (l *Log) Succeeded(msg string) {
	if l.failures > 0 {
		l.logger().Info(msg, "failures", l.failures, "down", time.Since(l.since).Round(time.Millisecond))
	}
	l.failures = 0
}

// Failures is the number of consecutive failures so far.
func (l *Log) Failures() int { return l.failures }

// Since is when the current run of failures began (zero when none).
func (l *Log) Since() time.Time {
	if l.failures == 0 {
		return time.Time{}
	}
	return l.since
}
