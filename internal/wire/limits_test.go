package wire

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
)

// tinyLines returns n of the smallest records, one per line.
func tinyLines(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"schema":1,"id":"r%d","kind":"tcp","direction":"in","tcp":{}}`+"\n", i)
	}
	return b.Bytes()
}

// longLine returns one record of about n bytes (a base64 body).
func longLine(id string, n int) []byte {
	return []byte(`{"schema":1,"id":"` + id + `","kind":"http","direction":"in","http":{"req":{"method":"GET","url":"http://a/","body":{"size":1,"data":"` +
		strings.Repeat("QUFB", n/4) + `"}}}}` + "\n")
}

// TestReadBatchLimits: the record cap refuses a batch by its
// Tapwire-Records before reading it, or by counting; the status is 413.
func TestReadBatchLimits(t *testing.T) {
	tests := []struct {
		name       string
		lines      int
		header     string // Tapwire-Records; "" for none
		maxRecords int
		wantErr    error // nil: accepted
		wantRead   int   // records reaching fn
	}{
		{"at the cap", 10, "10", 10, nil, 10},
		{"at the cap, no count", 10, "", 10, nil, 10},
		{"count above the cap", 11, "11", 10, ErrTooManyRecords, 0},
		{"a million said", 20, "1000000", 10, ErrTooManyRecords, 0},
		{"more than said", 11, "5", 10, ErrTooManyRecords, 10},
		{"more than the cap, no count", 11, "", 10, ErrTooManyRecords, 10},
		{"default cap", 3, strconv.Itoa(MaxBatchRecords + 1), 0, ErrTooManyRecords, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(tinyLines(tt.lines)))
			req.Header.Set(HeaderProtocol, "1")
			if tt.header != "" {
				req.Header.Set(HeaderRecords, tt.header)
			}
			read := 0
			_, err := ReadBatch(req, Limits{Records: tt.maxRecords}, func(*capture.Record) error { read++; return nil })
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ReadBatch: got %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if got := StatusOf(err).Status; got != http.StatusRequestEntityTooLarge {
					t.Errorf("status: got %d, want 413", got)
				}
			}
			if read != tt.wantRead {
				t.Errorf("records decoded: got %d, want %d", read, tt.wantRead)
			}
		})
	}
}

// TestBudget: a batch holds LineCost bytes per byte of a line past
// jsonl.HoldFree, gives them back when the line is done or the batch ends,
// and is refused (429) when the budget is spent.
func TestBudget(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name    string
		held    int64 // taken by another batch first
		body    []byte
		wantErr error
	}{
		{"short lines hold nothing", MinBudget, tinyLines(100), nil},
		{"a long line within the budget", 0, longLine("a", 2*mib), nil},
		{"long lines one after the other", 0, append(longLine("a", 8*mib-1000), longLine("b", 8*mib-1000)...), nil},
		{"a long line past what is free", MinBudget - 4*mib, longLine("a", 2*mib), ErrMemoryBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBudget(0)
			if got := b.Size(); got != MinBudget {
				t.Fatalf("NewBudget(0).Size() = %d, want %d", got, int64(MinBudget))
			}
			other := b.Hold()
			if err := other.Add(tt.held); err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(tt.body))
			req.Header.Set(HeaderProtocol, "1")
			peak := int64(0)
			_, err := ReadBatch(req, Limits{Budget: b}, func(*capture.Record) error {
				peak = max(peak, b.Used()-tt.held)
				return nil
			})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ReadBatch: got %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if se := StatusOf(err); se.Status != http.StatusTooManyRequests || se.Wait <= 0 {
					t.Errorf("answer: got %d (wait %v), want 429 with Retry-After", se.Status, se.Wait)
				}
			}
			if err == nil && len(tt.body) > 2*mib && peak < LineCost*2*mib {
				t.Errorf("held at most %d bytes for a line of %d, want at least %d", peak, len(tt.body), LineCost*2*mib)
			}
			if got := b.Used(); got != tt.held {
				t.Errorf("after the batch the budget holds %d, want %d (the other batch's)", got, tt.held)
			}
			other.Release()
			if got := b.Used(); got != 0 {
				t.Errorf("after Release: %d held, want 0", got)
			}
		})
	}
}

// TestDecodeHold: jsonl.Decode tells Hold before a line grows past
// HoldFree, in steps, and 0 once the line is done.
func TestDecodeHold(t *testing.T) {
	body := append(append(tinyLines(1), longLine("a", 3*jsonl.HoldStep)...), tinyLines(1)...)
	var got []int64
	err := jsonl.Decode(bytes.NewReader(body), jsonl.Limits{Bytes: -1, Hold: func(n int64) error { got = append(got, n); return nil }},
		nil, jsonl.Want{}, func(*capture.Record, bool) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{1 << 20, 2 << 20, 3 << 20, 4 << 20, 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Hold calls: got %v, want %v", got, want)
	}
}
