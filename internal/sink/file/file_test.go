package file

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/sink/sinktest"
	"github.com/tapwire/tapwire/internal/wire"
)

func records(n, bodyLen int) []*capture.Record {
	recs := make([]*capture.Record, n)
	for i := range recs {
		recs[i] = &capture.Record{
			Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn,
			Start: time.Now().UTC(),
			HTTP: &capture.HTTP{Req: capture.Request{Method: "GET", URL: "http://svc/", Proto: "HTTP/1.1",
				Body: capture.Body{Data: make([]byte, bodyLen), Size: int64(bodyLen)}}},
		}
	}
	return recs
}

func readAll(t *testing.T, dir string) []*capture.Record {
	t.Helper()
	var got []*capture.Record
	if err := ReadDir(dir, func(r *capture.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	return got
}

func TestWriteRotateRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "records")
	clock := time.Date(2026, 3, 1, 9, 8, 7, 0, time.FixedZone("x", 3600))
	s, err := New(dir, Options{MaxFileBytes: 4096, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	var want []*capture.Record
	for range 10 {
		recs := records(3, 300) // about 1.3 KiB of JSON per batch
		want = append(want, recs...)
		if err := s.Write(context.Background(), recs); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("%d files, want rotation at 4096 bytes to make at least 3", len(files))
	}
	name := regexp.MustCompile(`^records-20260301-080807-\d+\.jsonl$`)
	for i, f := range files {
		if !name.MatchString(filepath.Base(f)) {
			t.Errorf("file name %s, want records-YYYYMMDD-HHMMSS-N.jsonl in UTC", filepath.Base(f))
		}
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if i < len(files)-1 && fi.Size() > 4096 {
			t.Errorf("%s is %d bytes, want at most MaxFileBytes 4096", f, fi.Size())
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o640 {
			t.Errorf("%s mode %v, want 0640", f, fi.Mode().Perm())
		}
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(dir)
		if fi.Mode().Perm() != 0o750 {
			t.Errorf("dir mode %v, want 0750", fi.Mode().Perm())
		}
	}

	got := readAll(t, dir)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID {
			t.Fatalf("record %d is %s, want %s: order across files lost", i, got[i].ID, want[i].ID)
		}
	}

	if err := s.Write(context.Background(), records(1, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	var perm *capture.PermanentError
	if err := s.Write(context.Background(), records(1, 1)); !errors.As(err, &perm) {
		t.Errorf("Write after Close = %v, want a permanent error", err)
	}
}

func TestTwoSinksSameSecondDoNotCollide(t *testing.T) {
	dir := t.TempDir()
	now := func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	var sinks []*Sink
	for range 2 {
		s, err := New(dir, Options{Now: now, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), records(2, 10)); err != nil {
			t.Fatal(err)
		}
		sinks = append(sinks, s)
	}
	for _, s := range sinks {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if files, _ := Files(dir); len(files) != 2 {
		t.Errorf("files %v, want 2", files)
	}
	if got := readAll(t, dir); len(got) != 4 {
		t.Errorf("read %d records, want 4", len(got))
	}
}

func TestFilesOrderNumeric(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"records-20260101-000000-10.jsonl", "records-20260101-000000-9.jsonl", "records-20251231-235959-11.jsonl", "other.txt"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	want := []string{"records-20251231-235959-11.jsonl", "records-20260101-000000-9.jsonl", "records-20260101-000000-10.jsonl"}
	if len(got) != len(want) {
		t.Fatalf("Files = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Files = %v, want %v", got, want)
			break
		}
	}
}

func TestReadDirBadLine(t *testing.T) {
	dir := t.TempDir()
	good := `{"schema":1,"id":"a","kind":"tcp","direction":"in","tcp":{"bytesUp":1,"bytesDown":0}}`
	os.WriteFile(filepath.Join(dir, "records-20260101-000000-1.jsonl"), []byte(good+"\n"+good[:20]+"\n"), 0o600)
	err := ReadDir(dir, func(*capture.Record) error { return nil })
	var de *wire.DecodeError
	if !errors.As(err, &de) || de.Line != 2 {
		t.Errorf("err = %v, want a *wire.DecodeError at line 2", err)
	}

	stop := errors.New("stop")
	if err := ReadDir(dir, func(*capture.Record) error { return stop }); err != stop {
		t.Errorf("err = %v, want fn's own error", err)
	}
}

func TestNewErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(f, nil, 0o600)
	for _, dir := range []string{"", f, filepath.Join(f, "sub")} {
		if _, err := New(dir, Options{}); err == nil {
			t.Errorf("New(%q) = nil error, want one", dir)
		}
	}
}

func TestWriteLines(t *testing.T) {
	dir := t.TempDir()
	s, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := records(3, 10)
	var b bytes.Buffer
	if err := jsonl.Append(&b, want); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteLines(context.Background(), b.Bytes(), len(want)); err != nil {
		t.Fatalf("WriteLines: %v", err)
	}
	var perm *capture.PermanentError
	if err := s.WriteLines(context.Background(), []byte(`{"no":"newline"}`), 1); !errors.As(err, &perm) {
		t.Errorf("WriteLines without a final newline = %v, want a permanent error", err)
	}
	s.Close()
	got := readAll(t, dir)
	if len(got) != len(want) || got[2].ID != want[2].ID {
		t.Errorf("read %d records, want the %d written as lines", len(got), len(want))
	}
	if err := s.WriteLines(context.Background(), b.Bytes(), 3); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteLines after Close = %v, want ErrClosed", err)
	}
}

// TestTornTail: a line torn by a crash in the middle of a write is skipped
// by ReadDir and cut by the next New; the whole lines before it stay.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := sinktest.Records(3, 100)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	s.Close()
	files, err := Files(dir)
	if err != nil || len(files) != 1 {
		t.Fatalf("files %v, %v", files, err)
	}
	f, err := os.OpenFile(files[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"schema":1,"id":"torn","kind":"ht`) // a write cut by kill -9
	f.Close()
	count := func() int {
		n := 0
		if err := ReadDir(dir, func(*capture.Record) error { n++; return nil }); err != nil {
			t.Fatalf("ReadDir with a torn last line: %v", err)
		}
		return n
	}
	if got := count(); got != len(recs) {
		t.Errorf("ReadDir read %d records, want the %d whole ones", got, len(recs))
	}
	s2, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Repaired != int64(len(`{"schema":1,"id":"torn","kind":"ht`)) {
		t.Errorf("New repaired %d bytes, want the torn line's %d", s2.Repaired, len(`{"schema":1,"id":"torn","kind":"ht`))
	}
	b, _ := os.ReadFile(files[0])
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Errorf("after New the file does not end with a whole line")
	}
	if got := count(); got != len(recs) {
		t.Errorf("after the repair ReadDir read %d records, want %d", got, len(recs))
	}
}
