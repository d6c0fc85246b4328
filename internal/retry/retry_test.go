package retry

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

type waitErr struct{ d time.Duration }

func (e waitErr) Error() string             { return "wait" }
func (e waitErr) RetryAfter() time.Duration { return e.d }

type statusErr struct {
	code int
	perm bool
}

func (e statusErr) Error() string   { return fmt.Sprint(e.code) }
func (e statusErr) StatusCode() int { return e.code }
func (e statusErr) Permanent() bool { return e.perm }

func TestBackoffWait(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		name   string
		n      int
		err    error
		lo, hi time.Duration
	}{
		{"first failure", 1, errors.New("x"), 50 * time.Millisecond, 100 * time.Millisecond},
		{"third doubles twice", 3, errors.New("x"), 200 * time.Millisecond, 400 * time.Millisecond},
		{"capped", 50, errors.New("x"), 500 * time.Millisecond, time.Second},
		{"longer Retry-After wins", 1, fmt.Errorf("post: %w", waitErr{7 * time.Second}), 7 * time.Second, 7 * time.Second},
		{"shorter Retry-After loses", 3, waitErr{time.Millisecond}, 200 * time.Millisecond, 400 * time.Millisecond},
		{"Retry-After capped", 1, waitErr{time.Hour}, MaxRetryAfter, MaxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 200 { // the jitter is random: every draw stays in bounds
				if got := b.Wait(tt.n, tt.err); got < tt.lo || got > tt.hi {
					t.Fatalf("Wait(%d) = %v, want in [%v, %v]", tt.n, got, tt.lo, tt.hi)
				}
			}
		})
	}
	if got := (Backoff{}).Wait(1, nil); got < 125*time.Millisecond || got > 250*time.Millisecond {
		t.Errorf("zero Backoff Wait(1) = %v, want in [125ms, 250ms]", got)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		perm, auth bool
	}{
		{"transport", errors.New("connection refused"), false, false},
		{"permanent error", fmt.Errorf("x: %w", &capture.PermanentError{Err: errors.New("bad")}), true, false},
		{"400", statusErr{400, true}, true, false},
		{"401", fmt.Errorf("post: %w", statusErr{401, true}), true, true},
		{"403", statusErr{403, true}, true, true},
		{"429", statusErr{429, false}, false, false},
		{"503", statusErr{503, false}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Permanent(tt.err); got != tt.perm {
				t.Errorf("Permanent = %v, want %v", got, tt.perm)
			}
			if got := Auth(tt.err); got != tt.auth {
				t.Errorf("Auth = %v, want %v", got, tt.auth)
			}
		})
	}
}

// TestLog: a run of failures is logged once at warn, then at debug, and its
// end once at info.
func TestLog(t *testing.T) {
	var buf bytes.Buffer
	l := Log{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.Succeeded("recovered") // no run: nothing
	for i := 1; i <= 3; i++ {
		if n := l.Failed("shipping failing", errors.New("down")); n != i {
			t.Fatalf("Failed = %d, want %d", n, i)
		}
	}
	if l.Since().IsZero() {
		t.Error("Since is zero during a run of failures")
	}
	l.Succeeded("recovered")
	l.Succeeded("recovered")
	out := buf.String()
	if got := strings.Count(out, "level=WARN"); got != 1 {
		t.Errorf("%d warn lines, want 1:\n%s", got, out)
	}
	if got := strings.Count(out, "recovered"); got != 1 || !strings.Contains(out, "failures=3") {
		t.Errorf("want one recovery line with failures=3:\n%s", out)
	}
	if l.Failures() != 0 || !l.Since().IsZero() {
		t.Errorf("after success: Failures %d, Since %v; want 0 and zero", l.Failures(), l.Since())
	}
}
