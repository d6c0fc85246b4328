package volatile

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzAddJSON: the fast flattening (fastjson) gives exactly what the
// flattening by encoding/json's tokens gives, for every valid document.
func FuzzAddJSON(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[true,null,"x"],"c":{}}`, `[]`, `{"k":"\u00e9\n","k":2e10,"n":-0.5}`, `[[],{},[{"x":[1]}]]`,
		`{"a":{"b":{"c":"d"}},"e":[1,2,3],"":""}`, `{"big":12345678901234567890123,"esc":"a\"b\\c"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		doc = bytes.TrimLeft(doc, " \t\r\n")
		if len(doc) == 0 || (doc[0] != '{' && doc[0] != '[') || !json.Valid(doc) {
			return
		}
		got := addJSON(nil, doc, "body")
		want := addJSONTokens(nil, doc, "body")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("addJSON(%q)\n= %q\nwant %q", doc, got, want)
		}
	})
}
