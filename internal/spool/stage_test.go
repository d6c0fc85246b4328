package spool

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
)

// TestStage: a stage's frames reach the spool at once on Commit, and
// nothing of a stage that is closed without it; no file is left behind.
func TestStage(t *testing.T) {
	tests := []struct {
		name   string
		frames int
		commit bool
		want   []byte // payloads a reader gets
	}{
		{"committed", 3, true, []byte("0:\n1:\n2:\n")},
		{"closed", 3, false, nil},
		{"empty", 0, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{SegmentBytes: 4096, MaxBytes: 1 << 20, Readers: []string{"a"}})
			r := reader(t, s, "a")
			st := s.Stage()
			for i := range tt.frames {
				if err := st.Frame(payload(i, 0), 1); err != nil {
					t.Fatalf("Frame %d: %v", i, err)
				}
			}
			if tt.commit {
				if err := st.Commit(); err != nil {
					t.Fatalf("Commit: %v", err)
				}
			}
			st.Close()
			if err := s.Append(payload(9, 0), 1); err != nil { // one frame after, to read up to
				t.Fatal(err)
			}
			var got []byte
			frames, records := 0, 0
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				b, err := r.Next(ctx, 1<<20)
				cancel()
				if err != nil {
					break
				}
				got = append(got, b.Payload...)
				frames += b.Frames
				records += b.Records
				if err := r.Commit(b); err != nil {
					t.Fatal(err)
				}
			}
			want := append(append([]byte{}, tt.want...), payload(9, 0)...)
			if !bytes.Equal(got, want) {
				t.Errorf("read %q, want %q", got, want)
			}
			if n := 1 + len(bytes.Split(tt.want, []byte{'\n'})) - 1; records != n || frames != n {
				t.Errorf("read %d frames of %d records, want %d of %d", frames, records, n, n)
			}
			if st := s.Stats(); st.AppendedRecords != int64(records) {
				t.Errorf("Stats().AppendedRecords = %d, want %d", st.AppendedRecords, records)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if e.Name()[0] == '.' {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}
