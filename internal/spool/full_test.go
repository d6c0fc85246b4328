package spool

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// TestNoSpace: an append that finds the disk full fails with ErrNoSpace wrapping ENOSPC, leaves nothing
// behind, and Stats say so until an append succeeds again.
func TestNoSpace(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 4096, MaxBytes: 64 << 10, Readers: []string{"hub"}})
	appendN(t, s, 0, 2, 10)
	var fault error
	s.writeFault = func() error { return fault }
	fault = &os.PathError{Op: "write", Path: "segment", Err: syscall.ENOSPC}
	for i := range 2 {
		err := s.Append(payload(2, 10), 1)
		if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Append %d on a full disk: %v, want ErrNoSpace wrapping ENOSPC", i, err)
		}
	}
	st := s.Stats()
	if !errors.Is(st.NoSpace, ErrNoSpace) || st.NoSpaceErrors != 2 || st.Appended != 2 {
		t.Errorf("stats on a full disk: NoSpace %v, NoSpaceErrors %d, Appended %d; want ErrNoSpace, 2, 2", st.NoSpace, st.NoSpaceErrors, st.Appended)
	}
	// Another failure is not a lack of space.
	fault = errors.New("input/output error")
	if err := s.Append(payload(2, 10), 1); err == nil || errors.Is(err, ErrNoSpace) {
		t.Errorf("Append with EIO: %v, want an error that is not ErrNoSpace", err)
	}
	fault = nil
	appendN(t, s, 2, 1, 10)
	st = s.Stats()
	if st.NoSpace != nil || st.NoSpaceErrors != 2 || st.Appended != 3 {
		t.Errorf("stats after space came back: NoSpace %v, NoSpaceErrors %d, Appended %d; want nil, 2, 3", st.NoSpace, st.NoSpaceErrors, st.Appended)
	}
	if got := drain(t, reader(t, s, "hub"), 1<<20); !equal(got, seq(0, 3)) {
		t.Errorf("read %v, want %v: a refused append must leave no frame", got, seq(0, 3))
	}
}

// TestFullStats: Stats say the spool is full once less than a segment is left under MaxBytes.
func TestFullStats(t *testing.T) {
	s := open(t, t.TempDir(), Options{SegmentBytes: 4096, MaxBytes: 16384, Readers: []string{"hub"}})
	if st := s.Stats(); st.Full || st.MaxBytes != 16384 {
		t.Fatalf("empty spool: Full %t, MaxBytes %d; want false, 16384", st.Full, st.MaxBytes)
	}
	for i := 0; !s.Stats().Full; i++ {
		if i > 100 {
			t.Fatalf("spool of %d bytes never full", s.Stats().Bytes)
		}
		appendN(t, s, i, 1, 1000)
	}
	if st := s.Stats(); st.Bytes+4096 <= st.MaxBytes || st.DroppedRecords["hub"] != 0 {
		t.Errorf("full at %d of %d bytes with %d dropped; want within a segment of the bound, none dropped yet", st.Bytes, st.MaxBytes, st.DroppedRecords["hub"])
	}
}
