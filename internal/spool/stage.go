package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Stage is a run of frames that goes into the spool at once, or not at
// all: a batch too large to hold in memory. Its frames are written to a
// file of their own in the spool's directory (unlinked at once, so that a
// crash leaves nothing behind) and copied to the active segment by Commit,
// as one Append of all of them would write them. Until then they are on
// the spool's disk but not counted in its bytes. A Stage is for one
// goroutine.
type Stage struct {
	s       *Spool
	f       *os.File // nil until the first frame
	size    int64
	records int
	frames  int
	err     error
}

// Stage starts a run of frames. Close it.
func (s *Spool) Stage() *Stage { return &Stage{s: s} }

// Frame writes one frame holding payload (the encoded form of records
// records) to the stage.
func (st *Stage) Frame(payload []byte, records int) error {
	if st.err != nil {
		return st.err
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("spool: %w: %d bytes", ErrTooLarge, len(payload))
	}
	if st.f == nil {
		f, err := os.CreateTemp(st.s.dir, ".stage-*")
		if err != nil {
			return st.fail(err)
		}
		_ = os.Remove(f.Name()) // the open file lives on until Close
		st.f = f
	}
	head := st.s.header(payload, records)
	if _, err := st.f.Write(head[:]); err != nil {
		return st.fail(err)
	}
	if _, err := st.f.Write(payload); err != nil {
		return st.fail(err)
	}
	st.size += int64(frameHeader + len(payload))
	st.records += records
	st.frames++
	return nil
}

// fail notes a write error of the stage: ENOSPC counts as the spool's
// (ErrNoSpace).
func (st *Stage) fail(err error) error {
	st.s.mu.Lock()
	err = st.s.failed(fmt.Errorf("spool: stage: %w", err))
	st.s.mu.Unlock()
	st.err = err
	return err
}

// Commit appends the stage's frames to the spool, as Append does one
// frame: at once, and, unless NoSync, on disk when it returns.
func (st *Stage) Commit() error {
	if st.err != nil {
		return st.err
	}
	if st.frames == 0 {
		return nil
	}
	if _, err := st.f.Seek(0, io.SeekStart); err != nil {
		return st.fail(err)
	}
	err := st.s.append(st.size, st.records, st.frames, func(w io.Writer) (int, error) {
		n, err := io.Copy(w, st.f) // copy_file_range where the system has it
		return int(n), err
	})
	st.err = errors.New("spool: stage committed")
	if err != nil {
		st.err = err
	}
	return err
}

// Close drops what was not committed.
func (st *Stage) Close() {
	if st.f != nil {
		st.f.Close()
		st.f = nil
	}
}
