// Package file is the capture.Sink that appends records as JSON lines to
// files in a local directory, rotating at a size: goproxy's sink when
// FORWARDER_ADDR is empty or file:///dir, and the forwarder's default.
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/netyield"
	"github.com/tapwire/tapwire/internal/wire"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("file sink is closed")

// Options tune a Sink. The zero value is ready to use.
type Options struct {
	// MaxFileBytes is the size at which the sink starts a new file; a file
	// exceeds it only when its first batch alone does. If zero, 64 MiB.
	MaxFileBytes int64
	// NoSync skips the fsync after each Write; files are then synced only
	// when rotated and on Close. Faster, but a crash may lose the last
	// batches that Write reported delivered.
	NoSync bool
	// Now is the clock for file names. If nil, time.Now.
	Now func() time.Time
	// Yield, if not nil, is called about every wire.YieldEvery while Write
	// encodes a batch, between records (goproxy: see wire.ClientOptions).
	Yield func()
}

// Sink writes records to dir/records-YYYYMMDD-HHMMSS-N.jsonl (UTC time
// the file was opened; N counts the files this Sink opened, from 1).
type Sink struct {
	dir  string
	opts Options

	// Repaired is how many bytes of torn last lines New cut from the
	// directory's files (a crash in the middle of a write).
	Repaired int64

	mu     sync.Mutex
	f      *os.File
	size   int64 // bytes in f
	seq    int   // files opened
	closed bool
	buf    bytes.Buffer
}

var _ capture.Sink = (*Sink)(nil)

// New returns a Sink writing to dir, which it creates (mode 0750) if
// needed. The first file is opened at the first Write.
func New(dir string, opts Options) (*Sink, error) {
	if dir == "" {
		return nil, errors.New("file sink: directory is empty")
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = 64 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("file sink: create directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("file sink: %s is not a directory", dir)
	}
	// A process killed in the middle of a write leaves a torn last line:
	// cut it, so that every file holds whole records (the spool delivers
	// that batch again: at least once).
	files, err := Files(dir)
	if err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	s := &Sink{dir: dir, opts: opts}
	for _, f := range files {
		n, err := repairTail(f)
		if err != nil {
			return nil, fmt.Errorf("file sink: %w", err)
		}
		s.Repaired += n
	}
	return s, nil
}

// repairTail cuts what follows the last newline of the file at path (a
// line torn by a crash) and returns how many bytes it cut.
func repairTail(path string) (int64, error) {
	whole, size, err := completeLen(path)
	if err != nil || whole == size {
		return 0, err
	}
	if err := os.Truncate(path, whole); err != nil {
		return 0, fmt.Errorf("cut the torn last line of %s: %w", path, err)
	}
	return size - whole, nil
}

// completeLen returns the length of the file at path up to and including
// its last newline (the whole lines), and its size.
func completeLen(path string) (whole, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size = fi.Size()
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(end-int64(len(buf)), 0)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil {
			return 0, 0, fmt.Errorf("read %s: %w", path, err)
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, size, nil
		}
		end = start
	}
	return 0, size, nil
}

// Dir returns the directory the Sink writes to.
func (s *Sink) Dir() string { return s.dir }

// Write appends recs, one JSON line each, and (unless NoSync) syncs the
// file before it returns. A batch is never split across files. After an
// error part of the batch may be in the file: a retry can duplicate
// records, which their ids identify.
func (s *Sink) Write(_ context.Context, recs []*capture.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return &capture.PermanentError{Err: ErrClosed}
	}
	s.buf.Reset()
	pace := netyield.Pacer{Every: wire.YieldEvery, Yield: s.opts.Yield}
	var enc jsonl.Encoder
	for _, r := range recs {
		n := s.buf.Len()
		if err := enc.Append(&s.buf, r); err != nil {
			return &capture.PermanentError{Err: fmt.Errorf("file sink: %w", err)}
		}
		pace.Tick(s.buf.Len() - n)
	}
	err := s.appendLocked(s.buf.Bytes())
	if s.buf.Cap() > 8<<20 {
		s.buf = bytes.Buffer{} // do not pin one huge batch's memory
	}
	return err
}

// WriteLines appends lines, records already encoded as JSON lines (as
// jsonl.Append writes them, each ending in a newline), as one batch,
// with Write's guarantees. The forwarder hands over its spool's frames
// this way, without decoding them again. n is the number of records in
// lines; the file sink does not need it.
func (s *Sink) WriteLines(_ context.Context, lines []byte, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return &capture.PermanentError{Err: ErrClosed}
	}
	if len(lines) > 0 && lines[len(lines)-1] != '\n' {
		return &capture.PermanentError{Err: errors.New("file sink: lines do not end in a newline")}
	}
	return s.appendLocked(lines)
}

// appendLocked appends b to the current file, rotating first if b would
// take it past MaxFileBytes, and syncs unless NoSync. Called with mu held.
func (s *Sink) appendLocked(b []byte) error {
	if s.f != nil && s.size > 0 && s.size+int64(len(b)) > s.opts.MaxFileBytes {
		if err := s.closeFile(); err != nil {
			return err
		}
	}
	if s.f == nil {
		if err := s.openFile(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(b)
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("file sink: write %s: %w", s.f.Name(), err)
	}
	if !s.opts.NoSync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("file sink: sync %s: %w", s.f.Name(), err)
		}
	}
	return nil
}

func (s *Sink) openFile() error {
	stamp := s.opts.Now().UTC().Format("20060102-150405")
	for range 1000 {
		s.seq++
		name := filepath.Join(s.dir, fmt.Sprintf("records-%s-%d.jsonl", stamp, s.seq))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
		if errors.Is(err, os.ErrExist) {
			continue // another sink (or an earlier run) in the same second
		}
		if err != nil {
			return fmt.Errorf("file sink: create file: %w", err)
		}
		s.f, s.size = f, 0
		return nil
	}
	return fmt.Errorf("file sink: no free file name for records-%s-N.jsonl in %s", stamp, s.dir)
}

func (s *Sink) closeFile() error {
	f := s.f
	s.f = nil
	serr := f.Sync()
	cerr := f.Close()
	if serr != nil {
		return fmt.Errorf("file sink: sync %s: %w", f.Name(), serr)
	}
	if cerr != nil {
		return fmt.Errorf("file sink: close %s: %w", f.Name(), cerr)
	}
	return nil
}

// Close syncs and closes the current file. Later Writes fail with
// ErrClosed.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	return s.closeFile()
}

// Files returns the record files in dir in the order they were written:
// by time stamp, then by N.
func Files(dir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "records-*.jsonl"))
	if err != nil {
		return nil, err
	}
	type named struct {
		path  string
		stamp string
		n     int
	}
	var files []named
	for _, m := range matches {
		base := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "records-"), ".jsonl")
		i := strings.LastIndexByte(base, '-')
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(base[i+1:])
		if err != nil {
			continue
		}
		files = append(files, named{m, base[:i], n})
	}
	slices.SortFunc(files, func(a, b named) int {
		if c := strings.Compare(a.stamp, b.stamp); c != 0 {
			return c
		}
		return a.n - b.n
	})
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	return paths, nil
}

// ReadDir calls fn with every record in dir's record files, in the order
// they were written. It stops at the first error: a file that cannot be
// read, a line that is not a valid record (a *wire.DecodeError naming the
// line, wrapped with the file's name), or fn's own error.
func ReadDir(dir string, fn func(*capture.Record) error) error {
	files, err := Files(dir)
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	for _, path := range files {
		if err := readFile(path, fn); err != nil {
			return err
		}
	}
	return nil
}

func readFile(path string, fn func(*capture.Record) error) error {
	// Whole lines only: a sink killed in the middle of a write leaves a
	// torn last line, which its next start cuts (New).
	whole, _, err := completeLen(path)
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	defer f.Close()
	var fnErr error
	err = wire.DecodeBatch(io.LimitReader(f, whole), wire.EncodingIdentity, math.MaxInt64, func(r *capture.Record) error {
		if fnErr = fn(r); fnErr != nil {
			return fnErr
		}
		return nil
	})
	if err != nil && (fnErr == nil || err != fnErr) {
		return fmt.Errorf("read records %s: %w", path, err)
	}
	return err
}
