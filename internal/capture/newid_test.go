package capture

import (
	"testing"

	"github.com/google/uuid"
)

func BenchmarkNewID(b *testing.B) {
	for b.Loop() {
		_ = NewID()
	}
}

// TestAppendNewID: AppendNewID writes what NewID returns, a version-7 id
// in uuid's canonical form, time-ordered, and allocates nothing into room.
func TestAppendNewID(t *testing.T) {
	for range 1000 {
		u := uuid.New()
		if got := string(appendUUID([]byte("x"), u)); got != "x"+u.String() {
			t.Fatalf("appendUUID %s, want x%s", got, u)
		}
	}
	prev := NewID()
	for range 1000 {
		b := AppendNewID(nil)
		u, err := uuid.Parse(string(b))
		if err != nil || len(b) != IDLen || u.Version() != 7 || u.String() != string(b) {
			t.Fatalf("AppendNewID %q: %v, version %d", b, err, u.Version())
		}
		if string(b) <= prev {
			t.Fatalf("ids out of order: %s after %s", b, prev)
		}
		prev = string(b)
	}
	buf := make([]byte, 0, IDLen)
	if n := testing.AllocsPerRun(100, func() { buf = AppendNewID(buf[:0]) }); n != 0 {
		t.Errorf("AppendNewID: %.0f allocations, want 0", n)
	}
}
