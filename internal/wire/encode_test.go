package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
)

// TestAppendLinesMatchesEncodingJSON: the fast encoder writes exactly what
// encoding/json writes, for every golden record of the capture package
// (every field of the schema appears in one of them).
func TestAppendLinesMatchesEncodingJSON(t *testing.T) {
	files, err := filepath.Glob("../capture/testdata/*.golden.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("golden records: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r capture.Record
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// Fields a golden file may not exercise.
		r.Tags = capture.Tags{"a<b": "x&y", "ünï": "\u2028"}
		var want bytes.Buffer
		je := json.NewEncoder(&want)
		je.SetEscapeHTML(false)
		if err := je.Encode(&r); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := jsonl.Append(&got, []*capture.Record{&r}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("%s:\n got %s\nwant %s", filepath.Base(f), got.Bytes(), want.Bytes())
		}
	}
}

// TestDecodeMatchesEncodingJSON: DecodeBatch's fast decoder reads every
// golden record exactly as encoding/json does.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	files, _ := filepath.Glob("../capture/testdata/*.golden.json")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var want capture.Record
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		line := bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\n"), nil), []byte("\r"), nil)
		var got *capture.Record
		if err := DecodeBatch(bytes.NewReader(append(line, '\n')), "identity", 0, func(r *capture.Record) error { got = r; return nil }); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("%s: decoded differently:\n got %+v\nwant %+v", filepath.Base(f), got, &want)
		}
	}
}
