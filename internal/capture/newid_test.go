package capture

import (
	"sync"
	"testing"
	"time"

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
		b := AppendNewID(nil, time.Now())
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
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { buf = AppendNewID(buf[:0], now) }); n != 0 {
		t.Errorf("AppendNewID: %.0f allocations, want 0", n)
	}
}

func BenchmarkAppendNewID(b *testing.B) {
	buf := make([]byte, 0, IDLen)
	now := time.Now()
	for b.Loop() {
		buf = AppendNewID(buf[:0], now)
	}
}

// TestNewIDConcurrent: ids made at once by many goroutines, many for the
// same instant, are all different, each goroutine's in increasing order,
// version 7 with RFC 9562's variant, and hold their time to the
// millisecond (an id may run ahead of its time only by the ids made for
// the same instant before it: 1/4096 ms each).
func TestNewIDConcurrent(t *testing.T) {
	const workers, each = 8, 5000
	at := time.Now()
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := range each {
				tm := at
				if k%2 == 1 {
					tm = time.Now()
				}
				ids[w] = append(ids[w], string(AppendNewID(nil, tm)))
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for w := range workers {
		for k, id := range ids[w] {
			if seen[id] {
				t.Fatalf("id %s made twice", id)
			}
			seen[id] = true
			if k > 0 && id <= ids[w][k-1] {
				t.Fatalf("goroutine %d: %s after %s", w, id, ids[w][k-1])
			}
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 {
				t.Fatalf("%s: %v, version %d, variant %v", id, err, u.Version(), u.Variant())
			}
			sec, nsec := u.Time().UnixTime()
			got := time.Unix(sec, nsec)
			if got.Before(at.Truncate(time.Millisecond)) || got.After(time.Now().Add(time.Second)) {
				t.Fatalf("%s holds %v, made from %v on", id, got, at)
			}
		}
	}
}
