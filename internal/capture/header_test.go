package capture_test

import (
	"bytes"
	"encoding/json"
	"testing"

	gojson "github.com/goccy/go-json"
	"github.com/tapwire/tapwire/internal/capture"
)

// headerCases are names and values for the fast and the slow paths of
// Header's JSON methods.
var headerCases = [][2]string{
	{"Content-Type", "application/json"},
	{"", ""},
	{"X-Q", `say "hi"`},
	{"X-B", `a\b`},
	{"X-Html", "<a href='x'>&amp;</a>"},
	{"X-Ctl", "a\tb\x00c\x7f"},
	{"X-Utf8", "ünïcødé \u2028 \u2029"},
	{"X-Bad", "\xff\xfe"},
}

// TestHeaderMarshalJSON: the fast path writes what encoding/json writes
// for the pair.
func TestHeaderMarshalJSON(t *testing.T) {
	for _, c := range headerCases {
		want, _ := json.Marshal(c)
		got, err := capture.Header{Name: c[0], Value: c[1]}.MarshalJSON()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("MarshalJSON(%q) = %s, %v; want %s", c, got, err, want)
		}
	}
}

// TestHeaderUnmarshalJSON: the fast path reads what the decoder reads,
// and refuses what it refuses.
func TestHeaderUnmarshalJSON(t *testing.T) {
	inputs := []string{`["a","b"]`, ` [ "a" , "b" ] `, `["a","b","c"]`, `["a"]`, `[]`, `null`, `["a",1]`,
		`["a\"","b"]`, `["a","\u0041"]`, `["ü","b"]`, `["a","b"`, `["a","b"]x`, `["a" "b"]`, `{"a":"b"}`}
	for _, c := range headerCases {
		b, _ := json.Marshal(c)
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		checkHeaderUnmarshal(t, []byte(in))
	}
}

func checkHeaderUnmarshal(t *testing.T, in []byte) {
	t.Helper()
	var got capture.Header
	gerr := got.UnmarshalJSON(in)
	var a []string
	werr := gojson.Unmarshal(in, &a)
	if werr == nil && len(a) != 2 {
		werr = json.Unmarshal([]byte("x"), &a) // any error
	}
	switch {
	case (gerr == nil) != (werr == nil):
		t.Errorf("UnmarshalJSON(%q): error %v, the decoder's %v", in, gerr, werr)
	case gerr == nil && (got.Name != a[0] || got.Value != a[1]):
		t.Errorf("UnmarshalJSON(%q) = %q, %q; want %q", in, got.Name, got.Value, a)
	}
}

func FuzzHeaderJSON(f *testing.F) {
	for _, c := range headerCases {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		want, _ := json.Marshal([2]string{name, value})
		got, err := capture.Header{Name: name, Value: value}.MarshalJSON()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("MarshalJSON(%q, %q) = %s, %v; want %s", name, value, got, err, want)
		}
		checkHeaderUnmarshal(t, []byte(`["`+name+`","`+value+`"]`))
		checkHeaderUnmarshal(t, []byte(name))
	})
}
