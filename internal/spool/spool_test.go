package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t *testing.T, dir string, opts Options) *Spool {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func reader(t *testing.T, s *Spool, name string) *Reader {
	t.Helper()
	r, err := s.Reader(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// frame i's payload: "i:<pad>\n", records = 1.
func payload(i, pad int) []byte {
	return []byte(fmt.Sprintf("%d:%s\n", i, strings.Repeat("x", pad)))
}

func appendN(t *testing.T, s *Spool, from, n, pad int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.Append(payload(i, pad), 1); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

// drain reads and commits everything a reader has now, and returns the
// frame numbers in order.
func drain(t *testing.T, r *Reader, maxBytes int64) []int {
	t.Helper()
	var got []int
	for {
		if r.s.Stats().PendingBytes[r.Name()] == 0 {
			return got
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := r.Next(ctx, maxBytes)
		cancel()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b.Payload), "\n"), "\n")
		if len(lines) != b.Records || b.Frames != b.Records {
			t.Fatalf("batch has %d lines, %d records, %d frames", len(lines), b.Records, b.Frames)
		}
		for _, l := range lines {
			var i int
			fmt.Sscanf(l, "%d:", &i)
			got = append(got, i)
		}
		if err := r.Commit(b); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
}

func seq(from, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = from + i
	}
	return s
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	return m
}

func TestReadersIndependent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 4096, MaxBytes: 1 << 20, Readers: []string{"a", "b"}})
	appendN(t, s, 0, 100, 100) // ~12 KiB: several segments
	a, b := reader(t, s, "a"), reader(t, s, "b")

	if got := drain(t, a, 1000); !equal(got, seq(0, 100)) {
		t.Fatalf("reader a got %v, want 0..99 in order", got)
	}
	if n := len(segFiles(t, dir)); n < 3 {
		t.Errorf("%d segment files while b has read nothing, want all kept (at least 3)", n)
	}
	st := s.Stats()
	if st.PendingBytes["a"] != 0 || st.PendingBytes["b"] == 0 {
		t.Errorf("pending %v, want a 0 and b > 0", st.PendingBytes)
	}
	if got := drain(t, b, 1<<20); !equal(got, seq(0, 100)) {
		t.Fatalf("reader b got %v, want 0..99", got)
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Errorf("%d segment files after both read all, want only the active one", n)
	}
	if st := s.Stats(); st.Appended != 100 || st.AppendedRecords != 100 || st.DroppedRecords["a"] != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestRestartResumes(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4096, MaxBytes: 1 << 20, Readers: []string{"a"}, Logger: quiet}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 0, 50, 100)
	r := reader(t, s, "a")
	b, err := r.Next(context.Background(), 2000)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(b); err != nil {
		t.Fatal(err)
	}
	done := b.Records
	// A batch read but not committed comes again after a restart.
	if _, err := r.Next(context.Background(), 2000); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(payload(0, 1), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}

	s2 := open(t, dir, opts)
	appendN(t, s2, 50, 10, 100)
	if got := drain(t, reader(t, s2, "a"), 1<<20); !equal(got, seq(done, 60-done)) {
		t.Errorf("after restart got %v, want %d..59", got, done)
	}
}

func TestTornTail(t *testing.T) {
	opts := Options{Readers: []string{"a"}, Logger: quiet}
	tests := []struct {
		name string
		hurt func(last string, size int64)
		want []int
	}{
		{"half a frame", func(last string, size int64) { os.Truncate(last, size-5) }, seq(0, 4)},
		{"half a header", func(last string, size int64) { os.Truncate(last, size-int64(len(payload(4, 10)))-5) }, seq(0, 4)},
		{"garbage after", func(last string, _ int64) {
			f, _ := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(bytes.Repeat([]byte{0xff}, 40))
			f.Close()
		}, seq(0, 5)},
		{"payload not written", func(last string, size int64) {
			f, _ := os.OpenFile(last, os.O_WRONLY, 0)
			f.WriteAt(make([]byte, 5), size-5)
			f.Close()
		}, seq(0, 4)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, s, 0, 5, 10)
			s.Close()
			files := segFiles(t, dir)
			last := files[len(files)-1]
			fi, _ := os.Stat(last)
			tc.hurt(last, fi.Size())
			s = open(t, dir, opts)
			if got := drain(t, reader(t, s, "a"), 1<<20); !equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			s.Close()
		})
	}
}

func TestBoundDropsOldestAndCounts(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 4096, MaxBytes: 16384, Readers: []string{"slow", "fast"}})
	fast := reader(t, s, "fast")
	const n = 400 // ~50 KiB of frames into a 16 KiB spool
	var fastGot []int
	for i := range n {
		appendN(t, s, i, 1, 100)
		fastGot = append(fastGot, drain(t, fast, 1<<20)...)
		if st := s.Stats(); st.Bytes > 16384 {
			t.Fatalf("spool holds %d bytes, bound 16384", st.Bytes)
		}
	}
	if !equal(fastGot, seq(0, n)) {
		t.Errorf("the reader that kept up lost records: got %d", len(fastGot))
	}
	got := drain(t, reader(t, s, "slow"), 1<<20)
	st := s.Stats()
	if st.DroppedRecords["fast"] != 0 {
		t.Errorf("fast reader dropped %d, want 0", st.DroppedRecords["fast"])
	}
	if int(st.DroppedRecords["slow"])+len(got) != n || len(got) == 0 || st.DroppedRecords["slow"] == 0 {
		t.Errorf("slow reader: %d delivered + %d dropped, want %d in all, both > 0", len(got), st.DroppedRecords["slow"], n)
	}
	// Loss is of the oldest: what survives is the newest, in order.
	if !equal(got, seq(n-len(got), len(got))) {
		t.Errorf("slow reader got %v, want the newest records in order", got)
	}
}

func TestCorruptFrameSkipsSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4096, MaxBytes: 1 << 20, Readers: []string{"a"}, Logger: quiet}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 0, 60, 100) // two segments and a bit
	s.Close()
	first := segFiles(t, dir)[0]
	b, _ := os.ReadFile(first)
	i := bytes.Index(b, []byte("5:x")) // frame 5's payload
	b[i+3] = 'y'
	os.WriteFile(first, b, 0o640)

	s2 := open(t, dir, opts)
	got := drain(t, reader(t, s2, "a"), 1<<20)
	dropped := s2.Stats().DroppedRecords["a"]
	if len(got) < 5 || !equal(got[:5], seq(0, 5)) || got[len(got)-1] != 59 {
		t.Errorf("got %v, want 0..4, then the later segments", got)
	}
	if int(dropped)+len(got) != 60 || dropped == 0 {
		t.Errorf("%d delivered + %d dropped, want 60", len(got), dropped)
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{Readers: []string{"a"}})
	var wg sync.WaitGroup
	const writers, each = 8, 50
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.Append(payload(w*1000+i, 200), 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Appended != writers*each {
		t.Fatalf("appended %d, want %d", st.Appended, writers*each)
	}
	if st.Syncs == 0 || st.Syncs > st.Appended {
		t.Errorf("%d syncs for %d appends, want between 1 and the appends", st.Syncs, st.Appended)
	}
	t.Logf("%d appends, %d fsyncs", st.Appended, st.Syncs)
	got := drain(t, reader(t, s, "a"), 1<<20)
	if len(got) != writers*each {
		t.Errorf("read %d, want %d", len(got), writers*each)
	}
}

func TestNextWaits(t *testing.T) {
	s := open(t, t.TempDir(), Options{Readers: []string{"a"}})
	r := reader(t, s, "a")
	got := make(chan *Batch, 1)
	go func() {
		b, err := r.Next(context.Background(), 1<<20)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	select {
	case <-got:
		t.Fatal("Next returned on an empty spool")
	case <-time.After(50 * time.Millisecond):
	}
	appendN(t, s, 7, 1, 1)
	select {
	case b := <-got:
		if b == nil || string(b.Payload) != "7:x\n" || b.Appended.IsZero() {
			t.Errorf("batch %+v, want frame 7", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not wake on Append")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r2, _ := s.Reader("a")
	if _, err := r2.Next(ctx, 1<<20); err == nil {
		// The frame is not committed, so it is there; commit and ask again.
	}
	if _, err := s.Reader("nope"); !errors.Is(err, ErrNoReader) {
		t.Errorf("Reader(nope): %v, want ErrNoReader", err)
	}
}

func TestRemovedReaderReleasesSegments(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{SegmentBytes: 4096, MaxBytes: 1 << 20, Readers: []string{"a", "gone"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 0, 100, 100)
	drain(t, reader(t, s, "a"), 1<<20)
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "cursor-a")); err != nil {
		t.Errorf("cursor of a not saved: %v", err)
	}
	s2 := open(t, dir, Options{SegmentBytes: 4096, MaxBytes: 1 << 20, Readers: []string{"a"}})
	if n := len(segFiles(t, dir)); n != 1 {
		t.Errorf("%d segments with the only reader done, want 1 (the active one)", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "cursor-gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cursor of the removed reader still there: %v", err)
	}
	if got := drain(t, reader(t, s2, "a"), 1<<20); len(got) != 0 {
		t.Errorf("reader a got %d records again after a clean restart, want 0", len(got))
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"small segment", Options{SegmentBytes: 10}, "SegmentBytes"},
		{"small spool", Options{SegmentBytes: 1 << 20, MaxBytes: 1 << 20}, "MaxBytes"},
		{"bad name", Options{Readers: []string{"a/b"}}, "reader name"},
		{"twice", Options{Readers: []string{"a", "a"}}, "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(t.TempDir(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want an error naming %s", err, tc.want)
			}
		})
	}
	s := open(t, t.TempDir(), Options{SegmentBytes: 4096, MaxBytes: 8192})
	if err := s.Append(make([]byte, 5000), 1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append of more than half the spool: %v, want ErrTooLarge", err)
	}
}

// TestCursorFile: a reader's cursor is saved on each commit by writing one
// line of fixed width over the last in the same file (no temporary file,
// no rename); a restart resumes there; a cursor of the older form ("v1
// SEG OFF") is still read; one whose checksum fails (torn, or changed) is
// refused and the reader starts again at the oldest frame: frames again,
// never fewer.
func TestCursorFile(t *testing.T) {
	opts := Options{Readers: []string{"a"}, Logger: quiet}
	// delivered3 spools frames 0-9 in a new directory, delivers 0-2 one
	// commit each, and returns the directory and the cursor file's text.
	delivered3 := func() (string, []byte) {
		dir := t.TempDir()
		s, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		appendN(t, s, 0, 10, 1)
		r := reader(t, s, "a")
		var first os.FileInfo
		for range 3 {
			b, err := r.Next(context.Background(), 1) // one frame
			if err != nil || b.Frames != 1 {
				t.Fatalf("Next: %v, %+v", err, b)
			}
			if err := r.Commit(b); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, "cursor-a"))
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = fi
			} else if !os.SameFile(first, fi) {
				t.Errorf("the cursor file was replaced, not written over")
			}
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "cursor-*.tmp")); len(m) > 0 {
			t.Errorf("temporary cursor files: %v", m)
		}
		line, _ := os.ReadFile(filepath.Join(dir, "cursor-a"))
		if len(line) != cursorLen || !strings.HasPrefix(string(line), "v2 ") {
			t.Errorf("cursor %q, want one %d-byte v2 line", line, cursorLen)
		}
		return dir, line
	}
	resume := func(dir string, line []byte, want []int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "cursor-a"), line, 0o640); err != nil {
			t.Fatal(err)
		}
		s := open(t, dir, opts)
		if got := drain(t, reader(t, s, "a"), 1<<20); !equal(got, want) {
			t.Errorf("after a restart with cursor %q: read %v, want %v", line, got, want)
		}
		s.Close()
	}
	dir, line := delivered3()
	// A temporary cursor an older forwarder left behind goes at the start.
	tmpCursor := filepath.Join(dir, "cursor-a.tmp")
	if err := os.WriteFile(tmpCursor, []byte("v1 1 8\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	resume(dir, line, seq(3, 7))
	if _, err := os.Stat(tmpCursor); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after a start: %v", tmpCursor, err)
	}
	f := strings.Fields(string(line))
	dir, _ = delivered3()
	resume(dir, []byte("v1 "+strings.TrimLeft(f[1], "0")+" "+strings.TrimLeft(f[2], "0")+"\n"), seq(3, 7))
	// The offset changed to frame 2's start (a frame boundary, which
	// clamp would take) under the old checksum: refused.
	dir, line = delivered3()
	torn := []byte(fmt.Sprintf("v2 %s %020d %s\n", f[1], segHeader+2*(frameHeader+4), f[3]))
	if p, ok := parseCursor(torn); ok {
		t.Errorf("parseCursor took %q: %+v", torn, p)
	}
	resume(dir, torn, seq(0, 10))
}

// TestCursorSaveAfterClose: a save that comes after the spool closed (a
// Commit that passed its check as Close ran) still writes the cursor, and
// leaves no cursor file open.
func TestCursorSaveAfterClose(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{Readers: []string{"a"}})
	appendN(t, s, 0, 3, 1)
	r := reader(t, s, "a")
	drain(t, r, 1)
	s.Close()
	s.mu.Lock()
	r.pos.Off -= frameHeader + int64(len(payload(2, 1))) // as if a later commit moved it
	want := r.pos
	s.mu.Unlock()
	if err := r.save(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "cursor-a"))
	if p, ok := parseCursor(b); !ok || p != want || r.cf != nil {
		t.Errorf("cursor %q (%+v, %v), want %+v; file left open: %v", b, p, ok, want, r.cf != nil)
	}
}
