package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/capture/capturetest"
	"github.com/tapwire/tapwire/internal/format/har"
)

// records are the golden records and a batch: every kind, every member.
func records() []*capture.Record {
	var recs []*capture.Record
	for _, name := range []string{"http-in", "http-out-tls", "grpc-in", "tcp"} {
		recs = append(recs, capturetest.Records()[name])
	}
	return append(recs, capturetest.Batch(8, 100)...)
}

func write(t *testing.T, n Name, recs []*capture.Record) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(n, &b, har.Creator{Name: "test", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatalf("%s: Write(%s) = %v", n, r.ID, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("%s: Close = %v", n, err)
	}
	return b.Bytes()
}

func TestSniff(t *testing.T) {
	vendor, err := os.ReadFile("raw/testdata/dynamodb-raw.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	browser, err := os.ReadFile("har/testdata/browser.har")
	if err != nil {
		t.Fatal(err)
	}
	recs := records()
	http := 0
	for _, r := range recs {
		if r.HTTP != nil {
			http++
		}
	}
	for _, tc := range []struct {
		name  string
		in    []byte
		want  Name
		count int
	}{
		{"our HAR", write(t, HAR, recs), HAR, http},
		{"browser HAR", browser, HAR, 3},
		{"log not first", []byte(`{"comment": "x", "log": {"version": "1.2", "entries": []}}`), HAR, 0},
		{"raw.jsonl", vendor, Raw, 45},
		{"our raw.jsonl", write(t, Raw, recs), Raw, len(recs)},
		{"msgType null", []byte(`{"msgType": null, "schema": 1}` + "\n"), JSONL, -1},
		{"our JSONL", write(t, JSONL, recs), JSONL, len(recs)},
		{"empty", nil, JSONL, 0},
		{"blank lines", []byte("\n\n  \n"), JSONL, 0},
		{"not JSON", []byte("hello\n"), JSONL, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, r, err := Sniff(bytes.NewReader(tc.in))
			if err != nil || f != tc.want {
				t.Fatalf("Sniff = %s, %v; want %s", f, err, tc.want)
			}
			all, _ := io.ReadAll(r)
			if !bytes.Equal(all, tc.in) {
				t.Fatalf("the reader Sniff returns gives %d bytes, want the %d of the input", len(all), len(tc.in))
			}
			n := 0
			f, err = ReadRecords(bytes.NewReader(tc.in), func(*capture.Record) error { n++; return nil })
			if tc.count < 0 {
				if err == nil || !strings.Contains(err.Error(), "line 1") {
					t.Errorf("ReadRecords = %v, want an error on line 1", err)
				}
				return
			}
			if err != nil || n != tc.count || f != tc.want {
				t.Errorf("ReadRecords = %s, %d records, %v; want %s, %d", f, n, err, tc.want, tc.count)
			}
		})
	}
}

// TestRoundTrip: records → each writer → ReadRecords → the same records,
// less what the format cannot hold (listed per format, and tested where
// each format's package tests its mapping).
func TestRoundTrip(t *testing.T) {
	for _, n := range Names {
		if !n.Stream() {
			continue // TestReadPathMarkdown
		}
		t.Run(string(n), func(t *testing.T) {
			var want []*capture.Record
			for _, r := range records() {
				if lose(n, r) {
					want = append(want, r)
				}
			}
			var got []*capture.Record
			f, err := ReadRecords(bytes.NewReader(write(t, n, records())), func(r *capture.Record) error {
				got = append(got, r)
				return nil
			})
			if err != nil || f != n {
				t.Fatalf("ReadRecords = %s, %v; want %s", f, err, n)
			}
			if len(got) != len(want) {
				t.Fatalf("read back %d records, want %d", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("record %s changed:\ngot  %+v\nwant %+v", want[i].ID, got[i], want[i])
				}
			}
		})
	}
}

// lose changes r as writing it in format n and reading it back does, and
// reports whether the format keeps r at all.
func lose(n Name, r *capture.Record) bool {
	switch n {
	case HAR:
		return r.HTTP != nil // HAR has HTTP entries only
	case Raw:
		*r = *capturetest.VendorForm(r)
	}
	return true
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Name
		ok   bool
	}{
		{"har", HAR, true}, {"jsonl", JSONL, true}, {"raw", Raw, true},
		{"records.jsonl", JSONL, true}, {"raw.jsonl", Raw, true},
		{"md", Markdown, true},
		{"HAR", "", false}, {"", "", false}, {"csv", "", false},
	} {
		got, err := Parse(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("Parse(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestReadPath: a directory of files in mixed formats is read file by file
// in natural order; a Markdown recording (with metadata files beside it)
// is read as one; each record arrives once.
func TestReadPath(t *testing.T) {
	recs := records()
	dir := t.TempDir()
	for i, n := range []Name{JSONL, Raw, JSONL} {
		name := filepath.Join(dir, fmt.Sprintf("records-x-%d.%s", []int{10, 2, 1}[i], n.Ext()))
		part := recs[i*4 : i*4+4]
		if err := os.WriteFile(name, write(t, n, part), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{".hidden.jsonl", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("not records"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srcs, err := Sources(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range srcs {
		names = append(names, filepath.Base(s.Path))
	}
	if want := []string{"records-x-1.jsonl", "records-x-2.raw.jsonl", "records-x-10.jsonl"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Sources = %v, want %v", names, want)
	}
	n := 0
	if err := ReadPath(dir, func(*capture.Record) error { n++; return nil }); err != nil || n != 12 {
		t.Errorf("ReadPath = %d records, %v; want 12", n, err)
	}

	md := filepath.Join(t.TempDir(), "recorded-x")
	w, err := NewDirWriter(Markdown, md)
	if err != nil {
		t.Fatal(err)
	}
	var http []*capture.Record
	for _, r := range records() {
		if r.HTTP != nil {
			http = append(http, r)
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(md, "metadata.json"), []byte(`{"not":"a record"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	srcs, err = Sources(md)
	if err != nil || len(srcs) != 1 || srcs[0].Format != Markdown {
		t.Fatalf("Sources(markdown dir) = %+v, %v; want one Markdown source", srcs, err)
	}
	got := map[string]bool{}
	if err := ReadPath(md, func(r *capture.Record) error { got[r.ID] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, r := range http {
		if !got[r.ID] {
			t.Errorf("record %s not read back from the Markdown recording", r.ID)
		}
	}
	if len(got) != len(http) {
		t.Errorf("read %d records, want %d", len(got), len(http))
	}
	if _, err := Sources(t.TempDir()); !errors.Is(err, ErrNoRecords) {
		t.Errorf("Sources(empty dir) = %v, want ErrNoRecords", err)
	}
}
