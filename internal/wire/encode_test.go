package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
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
		if err := AppendLines(&got, []*capture.Record{&r}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("%s:\n got %s\nwant %s", filepath.Base(f), got.Bytes(), want.Bytes())
		}
	}
}
