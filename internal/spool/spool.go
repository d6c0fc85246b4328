// Package spool is the forwarder's durable on-disk queue: batches of
// encoded records are appended to segment files, each sink reads them back
// at its own cursor, and a segment is deleted once every sink has passed
// it. The spool is bounded in bytes: when a new batch does not fit, the
// oldest segment is deleted even if a sink has not read it, and the
// records lost are counted per sink. docs/forwarder.md describes the
// format and the fsync policy.
//
// Layout of the directory:
//
//	00000000000000000001.seg   segments, oldest first; the last is being written
//	cursor-NAME                a reader's position: "v1 SEGMENT OFFSET\n"
//
// A segment starts with the 8-byte magic "TWSPL001", then frames. A frame
// is a 20-byte header (payload length, record count, append time in Unix
// nanoseconds, CRC-32C of the header's first 16 bytes and the payload;
// little endian) followed by the payload.
package spool

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors.
var (
	ErrClosed   = errors.New("spool is closed")
	ErrTooLarge = errors.New("batch is larger than the spool")
	ErrNoReader = errors.New("no such spool reader")
	// ErrNoSpace means an append found the spool's disk full (the
	// operating system's ENOSPC, which the error also wraps) before the
	// spool reached MaxBytes: the batch is not spooled.
	ErrNoSpace = errors.New("no space left on the spool's disk")
)

const (
	magic       = "TWSPL001"
	segHeader   = int64(len(magic))
	frameHeader = 20
	// MaxPayload is the largest payload one frame holds.
	MaxPayload = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options tune a Spool. The zero value is ready to use, with no readers.
type Options struct {
	// MaxBytes bounds the bytes of all segment files together. When an
	// Append would cross it, the oldest segments are deleted first,
	// delivered or not. If zero, 1 GiB. At least 2 × SegmentBytes.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment starts (a segment
	// exceeds it only when its first frame alone does). It is also the
	// unit of loss when the spool is full. If zero, 16 MiB.
	SegmentBytes int64
	// NoSync skips the fsyncs: Append returns once the frame is written
	// to the operating system, so a crash of the machine (not of the
	// process) may lose batches that were acknowledged. Risky.
	NoSync bool
	// Readers names the readers (one per sink). A reader without a cursor
	// file starts at the oldest frame; cursor files of other names are
	// removed, so that a sink taken out of the configuration does not
	// hold segments forever.
	Readers []string
	// Logger receives recovery and loss reports. If nil, slog.Default().
	Logger *slog.Logger
	// Now is the clock stamped on frames. If nil, time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 30
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 16 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate checks the options after defaults.
func (o *Options) Validate() error {
	if o.SegmentBytes < 4096 {
		return fmt.Errorf("spool: SegmentBytes %d: want at least 4096", o.SegmentBytes)
	}
	if o.MaxBytes < 2*o.SegmentBytes {
		return fmt.Errorf("spool: MaxBytes %d: want at least twice SegmentBytes (%d)", o.MaxBytes, 2*o.SegmentBytes)
	}
	seen := map[string]bool{}
	for _, n := range o.Readers {
		if !validName.MatchString(n) {
			return fmt.Errorf("spool: reader name %q: want letters, digits, '-' and '_'", n)
		}
		if seen[n] {
			return fmt.Errorf("spool: reader name %q given twice", n)
		}
		seen[n] = true
	}
	return nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Pos is a position in the spool: a segment number and a byte offset in
// it.
type Pos struct {
	Seg uint64
	Off int64
}

func (p Pos) less(q Pos) bool { return p.Seg < q.Seg || (p.Seg == q.Seg && p.Off < q.Off) }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Seg, p.Off) }

// segment is what the spool knows of one segment file.
type segment struct {
	num     uint64
	size    int64 // bytes written: the readable end
	records int64 // records in its frames
	path    string
}

// Stats are the spool's counters and gauges.
type Stats struct {
	Bytes    int64 // bytes of all segment files
	Segments int   // segment files

	Appended        int64 // frames appended since Open
	AppendedRecords int64 // records in them
	Syncs           int64 // fsyncs of segment files (group commit: fewer than frames)

	// DroppedRecords counts, per reader, records deleted by the byte
	// bound before that reader delivered them.
	DroppedRecords map[string]int64
	// PendingBytes counts, per reader, spool bytes after its cursor.
	PendingBytes map[string]int64

	// MaxBytes is the spool's byte bound (Options.MaxBytes).
	MaxBytes int64
	// Full: less than one segment is left under MaxBytes, so the next
	// segment deletes the oldest one, delivered or not.
	Full bool
	// NoSpace is the error of the last append when it failed for lack of
	// space on the disk (it wraps ErrNoSpace), nil once an append
	// succeeds again.
	NoSpace error
	// NoSpaceErrors counts the appends that failed for lack of space.
	NoSpaceErrors int64
}

// Spool is an on-disk queue of frames with one cursor per reader. Append
// is safe for concurrent use; each Reader is for one goroutine.
type Spool struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	segs     []*segment // oldest first; the last is active
	active   *os.File
	total    int64 // bytes of all segments
	readers  map[string]*Reader
	notify   chan struct{} // closed and replaced after each append
	closed   bool
	seq      uint64 // frames appended
	appended int64
	appRecs  int64

	syncMu sync.Mutex // one fsync at a time; the others wait and share it
	synced uint64     // every frame up to this seq is durable
	syncs  atomic.Int64

	noSpace     error // the last append's ENOSPC, nil after a success; under mu
	noSpaceErrs int64 // under mu

	// writeFault, when set by a test, is called before each write of a
	// frame; its error is taken as the write's (a full disk is
	// syscall.ENOSPC).
	writeFault func() error
}

// Open opens (creating if needed) the spool in dir, recovers its
// segments (a frame torn by a crash is cut off), loads the readers'
// cursors, and starts a new segment for appends.
func Open(dir string, opts Options) (*Spool, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: create directory: %w", err)
	}
	s := &Spool{dir: dir, opts: opts, log: opts.Logger, readers: map[string]*Reader{}, notify: make(chan struct{})}
	if err := s.recover(); err != nil {
		return nil, err
	}
	var next uint64 = 1
	if n := len(s.segs); n > 0 {
		next = s.segs[n-1].num + 1
	}
	if err := s.startSegment(next); err != nil {
		return nil, err
	}
	if err := s.loadCursors(); err != nil {
		s.active.Close()
		return nil, err
	}
	s.removeDelivered()
	return s, nil
}

func segName(num uint64) string { return fmt.Sprintf("%020d.seg", num) }

// recover reads every segment's frame headers to learn its size and
// record count, cutting off a torn frame at the end.
func (s *Spool) recover() error {
	matches, err := filepath.Glob(filepath.Join(s.dir, "*.seg"))
	if err != nil {
		return fmt.Errorf("spool: list segments: %w", err)
	}
	type file struct {
		path string
		num  uint64
	}
	var files []file
	for _, m := range matches {
		num, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(m), ".seg"), 10, 64)
		if err != nil || num == 0 {
			continue
		}
		files = append(files, file{m, num})
	}
	slices.SortFunc(files, func(a, b file) int { return cmp.Compare(a.num, b.num) })
	for i, f := range files {
		seg, err := s.scan(f.path, f.num, i == len(files)-1)
		if err != nil {
			return err
		}
		if seg == nil {
			continue
		}
		s.segs = append(s.segs, seg)
		s.total += seg.size
	}
	return nil
}

// scan checks one segment file. It returns nil for a file that holds no
// frame (and removes it).
func (s *Spool) scan(path string, num uint64, last bool) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("spool: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: stat segment: %w", err)
	}
	head := make([]byte, segHeader)
	if _, err := f.ReadAt(head, 0); err != nil || string(head) != magic {
		s.log.Warn("spool: removing a segment without the spool's header", "segment", path, "bytes", fi.Size())
		_ = os.Remove(path)
		return nil, nil
	}
	seg := &segment{num: num, path: path, size: segHeader}
	var hdr [frameHeader]byte
	var payload []byte
	for {
		off := seg.size
		if off+frameHeader > fi.Size() {
			break
		}
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			break
		}
		n, recs, _, sum := parseHeader(hdr[:])
		if n > MaxPayload || off+frameHeader+int64(n) > fi.Size() {
			break
		}
		// Check the payload too: after a crash the tail may hold a
		// header whose payload never reached the disk.
		if !last {
			// Only the last segment can have a torn tail after a crash
			// (rotation syncs a segment before the next one starts);
			// readers check every frame's checksum as they read.
			seg.size = off + frameHeader + int64(n)
			seg.records += int64(recs)
			continue
		}
		if cap(payload) < int(n) {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := f.ReadAt(payload, off+frameHeader); err != nil {
			break
		}
		if frameSum(hdr[:16], payload) != sum {
			break
		}
		seg.size = off + frameHeader + int64(n)
		seg.records += int64(recs)
	}
	if seg.size < fi.Size() {
		s.log.Warn("spool: cutting a torn or corrupt tail off a segment", "segment", path,
			"keptBytes", seg.size, "cutBytes", fi.Size()-seg.size)
		if err := f.Truncate(seg.size); err != nil {
			return nil, fmt.Errorf("spool: truncate segment: %w", err)
		}
	}
	if seg.records == 0 {
		_ = os.Remove(path)
		return nil, nil
	}
	return seg, nil
}

func parseHeader(h []byte) (n, recs uint32, at int64, sum uint32) {
	return binary.LittleEndian.Uint32(h[0:4]), binary.LittleEndian.Uint32(h[4:8]),
		int64(binary.LittleEndian.Uint64(h[8:16])), binary.LittleEndian.Uint32(h[16:20])
}

func frameSum(head16, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(head16, castagnoli), castagnoli, payload)
}

// startSegment creates segment num and makes it the active one. Called
// with mu held (or before the spool is shared).
func (s *Spool) startSegment(num uint64) error {
	path := filepath.Join(s.dir, segName(num))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		f.Close()
		return fmt.Errorf("spool: write segment header: %w", err)
	}
	if !s.opts.NoSync {
		// The new file's directory entry must survive a crash too.
		if err := syncDir(s.dir); err != nil {
			f.Close()
			return err
		}
	}
	s.active = f
	s.segs = append(s.segs, &segment{num: num, path: path, size: segHeader})
	s.total += segHeader
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: open directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync directory: %w", err)
	}
	return nil
}

// Append writes one frame holding payload (the encoded form of records
// records) and, unless NoSync, returns only once it is on disk. Appends
// that run at the same time share one fsync. When the frame does not fit
// the byte bound, the oldest segments are deleted first and their
// undelivered records counted as dropped.
func (s *Spool) Append(payload []byte, records int) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("spool: %w: %d bytes", ErrTooLarge, len(payload))
	}
	// The header and the payload are written one after the other rather
	// than copied into one buffer: a batch is megabytes. A crash between
	// the two leaves a torn frame, which recovery cuts off like any other.
	head := s.header(payload, records)
	return s.append(int64(frameHeader+len(payload)), records, 1, func(w io.Writer) (int, error) {
		n, err := w.Write(head[:])
		if err == nil {
			var m int
			m, err = w.Write(payload)
			n += m
		}
		return n, err
	})
}

// header returns the header of a frame holding payload.
func (s *Spool) header(payload []byte, records int) [frameHeader]byte {
	var head [frameHeader]byte
	binary.LittleEndian.PutUint32(head[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(head[4:8], uint32(records))
	binary.LittleEndian.PutUint64(head[8:16], uint64(s.opts.Now().UnixNano()))
	binary.LittleEndian.PutUint32(head[16:20], frameSum(head[:16], payload))
	return head
}

// append writes size bytes of frames (holding records records) to the
// active segment with write, at once, as Append specifies.
func (s *Spool) append(size int64, records, frames int, write func(io.Writer) (int, error)) error {
	if size+segHeader > s.opts.MaxBytes/2 {
		return fmt.Errorf("spool: %w: %d bytes", ErrTooLarge, size)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	cur := s.segs[len(s.segs)-1]
	if cur.size > segHeader && cur.size+size > s.opts.SegmentBytes {
		if err := s.rotate(); err != nil {
			err = s.failed(err)
			s.mu.Unlock()
			return err
		}
		cur = s.segs[len(s.segs)-1]
	}
	for s.total+size > s.opts.MaxBytes && len(s.segs) > 1 {
		s.dropOldest()
	}

	var n int
	var err error
	if s.writeFault != nil {
		err = s.writeFault()
	}
	if err == nil {
		n, err = write(s.active)
	}
	if err == nil && int64(n) != size {
		err = fmt.Errorf("wrote %d bytes of %d", n, size)
	}
	if err != nil {
		// A partial frame would make the segment unreadable past it: cut
		// it off, or, failing that, start a new segment.
		if n > 0 {
			if terr := s.active.Truncate(cur.size); terr != nil {
				_ = s.rotate()
			} else {
				_, _ = s.active.Seek(cur.size, io.SeekStart)
			}
		}
		err = s.failed(fmt.Errorf("spool: append: %w", err))
		s.mu.Unlock()
		return err
	}
	s.noSpace = nil
	cur.size += size
	cur.records += int64(records)
	s.total += size
	s.seq++
	s.appended += int64(frames)
	s.appRecs += int64(records)
	seq := s.seq
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()

	if s.opts.NoSync {
		return nil
	}
	if err := s.syncTo(seq); err != nil {
		s.mu.Lock()
		err = s.failed(err)
		s.mu.Unlock()
		return err
	}
	return nil
}

// failed notes an append's error: one for lack of space (ENOSPC) is
// wrapped in ErrNoSpace, remembered for Stats and counted. Called with mu
// held.
func (s *Spool) failed(err error) error {
	if !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	err = fmt.Errorf("%w: %w", ErrNoSpace, err)
	s.noSpace = err
	s.noSpaceErrs++
	return err
}

// syncTo returns once every frame up to seq is on disk. The first caller
// fsyncs the active segment for everyone who appended before it started;
// the others wait for it and return without a sync of their own (group
// commit).
func (s *Spool) syncTo(seq uint64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced >= seq {
		return nil
	}
	s.mu.Lock()
	f, upTo := s.active, s.seq
	s.mu.Unlock()
	// A segment rotated away since was synced by rotate before it was
	// closed, so a closed file here means the frames are on disk.
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("spool: sync: %w", err)
	}
	s.synced = upTo
	s.syncs.Add(1)
	return nil
}

// rotate seals the active segment and starts the next. Called with mu
// held.
func (s *Spool) rotate() error {
	old := s.active
	cur := s.segs[len(s.segs)-1]
	if !s.opts.NoSync {
		if err := old.Sync(); err != nil {
			return fmt.Errorf("spool: sync segment: %w", err)
		}
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("spool: close segment: %w", err)
	}
	if err := s.startSegment(cur.num + 1); err != nil {
		// Keep appending where we were rather than stop.
		f, oerr := os.OpenFile(cur.path, os.O_RDWR|os.O_APPEND, 0)
		if oerr == nil {
			s.active = f
		}
		return err
	}
	return nil
}

// dropOldest deletes the oldest segment (never the active one) and counts
// its undelivered records against each reader still before its end.
// Called with mu held.
func (s *Spool) dropOldest() {
	seg := s.segs[0]
	next := s.segs[1]
	lost := map[string]int64{}
	for name, r := range s.readers {
		if r.pos.Seg > seg.num {
			continue
		}
		from := r.pos
		if b := r.inflight; b != nil && b.Start.Seg == seg.num && from.less(b.End) {
			// The reader holds these frames and is delivering them: count
			// them when it gives up on them (Release), not here.
			from = b.End
		}
		n := seg.records
		if from.Seg == seg.num && from.Off > segHeader {
			n = s.recordsAfter(seg, from.Off)
		}
		if n > 0 {
			r.dropped += n
			lost[name] = n
		}
		r.pos = Pos{Seg: next.num, Off: segHeader}
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("spool: remove segment", "segment", seg.path, "err", err.Error())
	}
	s.total -= seg.size
	s.segs = s.segs[1:]
	if len(lost) > 0 {
		s.log.Warn("spool full: oldest segment deleted before every sink delivered it",
			"segment", seg.num, "bytes", seg.size, "lostRecords", lost, "maxBytes", s.opts.MaxBytes)
	}
}

// recordsAfter counts the records of seg's frames at or after off, by
// reading their headers.
func (s *Spool) recordsAfter(seg *segment, off int64) int64 {
	f, err := os.Open(seg.path)
	if err != nil {
		return seg.records // cannot tell: count the whole segment
	}
	defer f.Close()
	var n int64
	var hdr [frameHeader]byte
	for off+frameHeader <= seg.size {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			break
		}
		plen, recs, _, _ := parseHeader(hdr[:])
		n += int64(recs)
		off += frameHeader + int64(plen)
	}
	return min(n, seg.records) // a corrupt header may say anything
}

// removeDelivered deletes the segments every reader has passed (never the
// active one). Called with mu held, or before the spool is shared.
func (s *Spool) removeDelivered() {
	for len(s.segs) > 1 {
		seg := s.segs[0]
		for _, r := range s.readers {
			// A reader at the end of a sealed segment has passed it.
			if r.pos.Seg < seg.num || (r.pos.Seg == seg.num && r.pos.Off < seg.size) {
				return
			}
		}
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("spool: remove delivered segment", "segment", seg.path, "err", err.Error())
			return
		}
		s.total -= seg.size
		s.segs = s.segs[1:]
	}
}

// Reader returns the reader of the given name, one of Options.Readers.
func (s *Spool) Reader(name string) (*Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.readers[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoReader, name)
	}
	return r, nil
}

// Stats returns the counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Bytes: s.total, Segments: len(s.segs), Appended: s.appended, AppendedRecords: s.appRecs,
		DroppedRecords: map[string]int64{}, PendingBytes: map[string]int64{},
		MaxBytes: s.opts.MaxBytes, Full: s.total+s.opts.SegmentBytes > s.opts.MaxBytes,
		NoSpace: s.noSpace, NoSpaceErrors: s.noSpaceErrs,
	}
	for name, r := range s.readers {
		st.DroppedRecords[name] = r.dropped
		st.PendingBytes[name] = s.pendingBytes(r.pos)
	}
	st.Syncs = s.syncs.Load()
	return st
}

// pendingBytes is the frame bytes at or after pos. Called with mu held.
func (s *Spool) pendingBytes(pos Pos) int64 {
	var n int64
	for _, seg := range s.segs {
		switch {
		case seg.num > pos.Seg:
			n += seg.size - segHeader
		case seg.num == pos.Seg:
			n += seg.size - max(pos.Off, segHeader)
		}
	}
	return n
}

// Close syncs and closes the active segment and saves every cursor.
// Appends and reads after Close fail with ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.notify)
	s.notify = make(chan struct{})
	var errs []error
	if !s.opts.NoSync {
		if err := s.active.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("spool: sync: %w", err))
		}
	}
	if err := s.active.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spool: close segment: %w", err))
	}
	readers := make([]*Reader, 0, len(s.readers))
	for _, r := range s.readers {
		readers = append(readers, r)
	}
	s.mu.Unlock()
	for _, r := range readers {
		r.mu.Lock()
		if r.f != nil {
			r.f.Close()
			r.f = nil
		}
		r.mu.Unlock()
		if err := r.closeCursor(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// cursor files

func cursorPath(dir, name string) string { return filepath.Join(dir, "cursor-"+name) }

func (s *Spool) loadCursors() error {
	oldest := s.segs[0]
	for _, name := range s.opts.Readers {
		r := &Reader{s: s, name: name, pos: Pos{Seg: oldest.num, Off: segHeader}}
		b, err := os.ReadFile(cursorPath(s.dir, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			s.log.Info("spool: new reader starts at the oldest frame", "reader", name)
		case err != nil:
			return fmt.Errorf("spool: read cursor: %w", err)
		default:
			p, ok := parseCursor(b)
			if !ok {
				s.log.Warn("spool: unreadable cursor: the reader starts again at the oldest frame (records may be delivered twice)",
					"reader", name, "cursor", strings.TrimSpace(string(b)))
				break
			}
			r.pos = s.clamp(p)
		}
		s.readers[name] = r
		r.saved = r.pos
	}
	// Cursors of readers no longer configured would hold segments forever.
	// A cursor-NAME.tmp is what a forwarder before cursors v2 left when it
	// stopped between writing a cursor and renaming it: never read.
	matches, _ := filepath.Glob(filepath.Join(s.dir, "cursor-*"))
	for _, m := range matches {
		name := strings.TrimPrefix(filepath.Base(m), "cursor-")
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(m)
			continue
		}
		if _, ok := s.readers[name]; !ok {
			s.log.Info("spool: removing the cursor of a sink that is no longer configured", "reader", name)
			_ = os.Remove(m)
		}
	}
	return nil
}

// A cursor file is one line: "v2", the segment and the offset of the
// reader's next frame, both 20 digits wide, and the CRC-32C of what comes
// before it, 8 hex digits. Being of one width, each save overwrites the
// last in place. Before v2 a cursor was "v1 SEG OFF" (written to a
// temporary file and renamed), which parseCursor still reads.
const (
	cursorSumAt = len("v2 ") + 20 + 1 + 20 + 1 // where the checksum starts
	cursorLen   = cursorSumAt + 8 + 1
)

func appendCursor(b []byte, p Pos) []byte {
	b = fmt.Appendf(b, "v2 %020d %020d ", p.Seg, p.Off)
	return fmt.Appendf(b, "%08x\n", crc32.Checksum(b, castagnoli))
}

func parseCursor(b []byte) (Pos, bool) {
	f := strings.Fields(string(b))
	switch {
	case len(f) == 3 && f[0] == "v1":
	case len(f) == 4 && f[0] == "v2" && len(b) >= cursorLen:
		sum, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || uint32(sum) != crc32.Checksum(b[:cursorSumAt], castagnoli) {
			return Pos{}, false
		}
	default:
		return Pos{}, false
	}
	seg, err1 := strconv.ParseUint(f[1], 10, 64)
	off, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || off < 0 {
		return Pos{}, false
	}
	return Pos{Seg: seg, Off: off}, true
}

// clamp moves p into the spool: before the oldest segment means it was
// delivered and deleted; inside a segment it must be a frame boundary we
// know of, else the reader starts that segment again.
func (s *Spool) clamp(p Pos) Pos {
	for _, seg := range s.segs {
		switch {
		case p.Seg < seg.num:
			return Pos{Seg: seg.num, Off: segHeader}
		case p.Seg == seg.num:
			if p.Off < segHeader || p.Off > seg.size {
				return Pos{Seg: seg.num, Off: segHeader}
			}
			return p
		}
	}
	last := s.segs[len(s.segs)-1]
	return Pos{Seg: last.num, Off: segHeader}
}

// Reader reads the spool's frames from its cursor on. Its methods are for
// one goroutine at a time.
type Reader struct {
	s    *Spool
	name string

	// Guarded by s.mu.
	pos      Pos    // the first frame not yet committed
	dropped  int64  // records lost to the byte bound (or corruption) before delivery
	inflight *Batch // returned by Next, not yet committed or released

	mu   sync.Mutex // guards f against Close
	f    *os.File   // open segment being read
	fnum uint64
	buf  []byte

	cmu      sync.Mutex // guards saved, cf and cfClosed: Commit and Close both save
	saved    Pos        // what the cursor file says
	cf       *os.File   // the cursor file, once saved to
	cfClosed bool       // the spool closed: a save after (a Commit that raced Close) closes cf again
}

// Batch is a run of consecutive frames read by Next: their payloads, back
// to back.
type Batch struct {
	Payload  []byte    // the frames' payloads concatenated; valid until the next Next
	Records  int       // records in them, as appended
	Frames   int       // frames read
	Appended time.Time // when the first frame was appended
	Start    Pos       // position of the first frame
	End      Pos       // position after the last frame
}

// Name returns the reader's name.
func (r *Reader) Name() string { return r.name }

// Next returns the frames after the reader's cursor, at most maxBytes of
// payload (but always at least one frame) from one segment, waiting until
// there is one or ctx is done. It does not move the cursor: Commit does,
// once the batch is delivered, so the same frames come again after a
// failure or a restart. A frame whose checksum fails (the disk corrupted
// it) ends the segment for this reader: it is logged, and its records and
// those after it in the segment are counted as dropped.
func (r *Reader) Next(ctx context.Context, maxBytes int64) (*Batch, error) {
	s := r.s
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		pos := r.pos
		var seg *segment
		last := false
		for i, sg := range s.segs {
			if sg.num >= pos.Seg {
				seg = sg
				last = i == len(s.segs)-1
				break
			}
		}
		if seg == nil { // cannot happen: the active segment is last
			seg, last = s.segs[len(s.segs)-1], true
		}
		if seg.num != pos.Seg || pos.Off < segHeader {
			pos = Pos{Seg: seg.num, Off: segHeader}
			r.pos = pos
		}
		end := seg.size
		path := seg.path
		if pos.Off >= end {
			if !last {
				r.pos = Pos{Seg: s.segs[slices.Index(s.segs, seg)+1].num, Off: segHeader}
				s.mu.Unlock()
				continue
			}
			wait := s.notify
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-wait:
			}
			continue
		}
		s.mu.Unlock()

		b, err := r.read(path, pos, end, maxBytes)
		if errors.Is(err, os.ErrNotExist) {
			continue // dropped or delivered meanwhile: look again
		}
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue // a corrupt frame skipped the rest of the segment
		}
		s.mu.Lock()
		r.inflight = b
		s.mu.Unlock()
		return b, nil
	}
}

// read reads frames of the segment at path from pos up to end.
func (r *Reader) read(path string, pos Pos, end, maxBytes int64) (*Batch, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil || r.fnum != pos.Seg {
		if r.f != nil {
			r.f.Close()
			r.f = nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		r.f, r.fnum = f, pos.Seg
	}
	// Read the first frame's header to size the read.
	var hdr [frameHeader]byte
	if _, err := r.f.ReadAt(hdr[:], pos.Off); err != nil {
		return r.corrupt(pos, fmt.Errorf("read frame header: %w", err))
	}
	first, _, _, _ := parseHeader(hdr[:])
	want := min(end-pos.Off, max(maxBytes, frameHeader+int64(first)))
	if want < frameHeader+int64(first) {
		return r.corrupt(pos, errors.New("frame runs past the segment's end"))
	}
	if int64(cap(r.buf)) < want {
		r.buf = make([]byte, want)
	}
	buf := r.buf[:want]
	if _, err := r.f.ReadAt(buf, pos.Off); err != nil {
		return r.corrupt(pos, fmt.Errorf("read frames: %w", err))
	}
	b := &Batch{Start: pos}
	// Parse frames and move their payloads together, in place.
	in, out := 0, 0
	for in+frameHeader <= len(buf) {
		n, recs, at, sum := parseHeader(buf[in : in+frameHeader])
		if in+frameHeader+int(n) > len(buf) {
			break // the next frame did not fit maxBytes
		}
		payload := buf[in+frameHeader : in+frameHeader+int(n)]
		if frameSum(buf[in:in+16], payload) != sum {
			if b.Frames == 0 {
				return r.corrupt(Pos{pos.Seg, pos.Off + int64(in)}, errors.New("checksum mismatch"))
			}
			break // deliver the good frames first; the next Next reports it
		}
		if b.Frames == 0 {
			b.Appended = time.Unix(0, at)
		}
		copy(buf[out:], payload)
		out += int(n)
		in += frameHeader + int(n)
		b.Frames++
		b.Records += int(recs)
	}
	b.Payload = buf[:out]
	b.End = Pos{Seg: pos.Seg, Off: pos.Off + int64(in)}
	if r.buf != nil && cap(r.buf) > 64<<20 {
		r.buf = nil
	}
	return b, nil
}

// corrupt skips the rest of a segment after an unreadable frame at pos,
// counting its records as dropped. It returns (nil, nil): look again.
func (r *Reader) corrupt(pos Pos, cause error) (*Batch, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.segs, func(sg *segment) bool { return sg.num == pos.Seg })
	if i < 0 || r.pos.Seg != pos.Seg {
		return nil, nil // the segment is gone, or the reader moved on
	}
	seg := s.segs[i]
	if i == len(s.segs)-1 {
		// The active segment: the frame may be mid-write by no one (appends
		// write whole frames under mu), so this is real corruption too, but
		// appends go on after it. Start a new segment so they are readable.
		if err := s.rotate(); err != nil {
			return nil, fmt.Errorf("spool: reader %s: %w (after %w)", r.name, err, cause)
		}
	}
	lost := s.recordsAfter(seg, pos.Off)
	r.dropped += lost
	r.pos = Pos{Seg: s.segs[i+1].num, Off: segHeader}
	s.log.Error("spool: corrupt frame: skipping the rest of the segment", "reader", r.name,
		"segment", seg.num, "offset", pos.Off, "lostRecords", lost, "err", cause.Error())
	return nil, nil
}

// Commit moves the cursor past b (if it is not past it already: a
// segment dropped while b was being delivered moved it on), saves it,
// and deletes the segments every reader has passed.
func (r *Reader) Commit(b *Batch) error {
	s := r.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if r.pos.less(b.End) {
		r.pos = b.End
	}
	if r.inflight == b {
		r.inflight = nil
	}
	s.removeDelivered()
	s.mu.Unlock()
	return r.save()
}

// Release gives b up without delivering it (the reader is stopping): it
// stays in the spool for the next start, unless the byte bound deleted
// its segment meanwhile; then its records are counted as dropped.
func (r *Reader) Release(b *Batch) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.inflight == b {
		r.inflight = nil
	}
	if len(s.segs) > 0 && b.Start.Seg < s.segs[0].num {
		r.dropped += int64(b.Records)
	}
}

// Pos returns the reader's cursor.
func (r *Reader) Pos() Pos {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.pos
}

// save writes the cursor file if the cursor moved: one line of fixed
// width (appendCursor) written over the last, in place, on the file kept
// open — not a new file renamed over it, which took an open, a close and a
// rename per delivered batch, and on ext4 the rename's flush of the new
// file's data. Not synced: a cursor lost in a crash only makes the reader
// deliver some frames again, and one torn by it fails its checksum
// (parseCursor) and does the same.
func (r *Reader) save() error {
	r.s.mu.Lock()
	pos := r.pos
	r.s.mu.Unlock()
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if pos == r.saved {
		return nil
	}
	if r.cf == nil {
		f, err := os.OpenFile(cursorPath(r.s.dir, r.name), os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("spool: save cursor %s: %w", r.name, err)
		}
		r.cf = f
	}
	var b [cursorLen]byte
	_, err := r.cf.WriteAt(appendCursor(b[:0], pos), 0)
	if r.cfClosed {
		r.cf.Close()
		r.cf = nil
	}
	if err != nil {
		return fmt.Errorf("spool: save cursor %s: %w", r.name, err)
	}
	r.saved = pos
	return nil
}

// closeCursor closes the cursor file after a last save.
func (r *Reader) closeCursor() error {
	err := r.save()
	r.cmu.Lock()
	defer r.cmu.Unlock()
	r.cfClosed = true
	if r.cf != nil {
		if cerr := r.cf.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("spool: close cursor %s: %w", r.name, cerr)
		}
		r.cf = nil
	}
	return err
}

// Pending returns the spooled frame bytes at or after the reader's
// cursor: what it has not delivered yet.
func (r *Reader) Pending() int64 {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.s.pendingBytes(r.pos)
}
