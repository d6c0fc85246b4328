package capture_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/capture/capturetest"
	"github.com/tapwire/tapwire/internal/format/raw"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const schemaPath = "../../docs/record.schema.json"

func goldenRecords() map[string]*capture.Record { return capturetest.Records() }

func goldenPath(name string) string { return filepath.Join("testdata", name+".golden.json") }

func TestRecordGolden(t *testing.T) {
	for name, rec := range goldenRecords() {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(rec, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			if *update {
				if err := os.WriteFile(goldenPath(name), got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(goldenPath(name))
			if err != nil {
				t.Fatalf("read golden (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("JSON of %s differs from %s (run with -update if intended):\ngot:\n%s\nwant:\n%s", name, goldenPath(name), got, want)
			}
		})
	}
}

func TestRecordGoldenDecode(t *testing.T) {
	for name, want := range goldenRecords() {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(goldenPath(name))
			if err != nil {
				t.Fatal(err)
			}
			var got capture.Record
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(&got, want) {
				t.Errorf("decoded %s:\ngot  %+v\nwant %+v", name, got, *want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

// TestRecordUnknownFields checks the compatibility rule that readers ignore
// members they do not know.
func TestRecordUnknownFields(t *testing.T) {
	b, err := os.ReadFile(goldenPath("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["futureField"] = map[string]any{"x": 1}
	m["net"].(map[string]any)["futureNet"] = "y"
	b, _ = json.Marshal(m)
	var got capture.Record
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("decode with unknown fields: %v", err)
	}
	if want := goldenRecords()["tcp"]; !reflect.DeepEqual(&got, want) {
		t.Errorf("got %+v, want %+v", got, *want)
	}
}

func TestValidate(t *testing.T) {
	good := func() *capture.Record { return goldenRecords()["http-in"] }
	tests := []struct {
		name   string
		modify func(*capture.Record)
		want   error
	}{
		{"valid http", func(r *capture.Record) {}, nil},
		{"valid tcp", func(r *capture.Record) { *r = *goldenRecords()["tcp"] }, nil},
		{"older schema", func(r *capture.Record) { r.Schema = 0 }, nil},
		{"no id", func(r *capture.Record) { r.ID = "" }, capture.ErrNoID},
		{"newer schema", func(r *capture.Record) { r.Schema = capture.SchemaVersion + 1 }, capture.ErrSchemaTooNew},
		{"empty direction", func(r *capture.Record) { r.Direction = "" }, capture.ErrBadDirection},
		{"upper-case direction", func(r *capture.Record) { r.Direction = "IN" }, capture.ErrBadDirection},
		{"empty kind", func(r *capture.Record) { r.Kind = "" }, capture.ErrBadKind},
		{"unknown kind", func(r *capture.Record) { r.Kind = "grpc" }, capture.ErrBadKind},
		{"http without block", func(r *capture.Record) { r.HTTP = nil }, capture.ErrMissingHTTP},
		{"tcp without block", func(r *capture.Record) { r.Kind = capture.KindTCP }, capture.ErrMissingTCP},
		{"zero start", func(r *capture.Record) { r.Start = time.Time{} }, nil},
		{"start in year 0", func(r *capture.Record) { r.Start = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) }, nil},
		{"start in year 9999", func(r *capture.Record) { r.Start = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) }, nil},
		{"start in year 9999 at -05:00 (10000 in UTC)", func(r *capture.Record) {
			r.Start = time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -5*3600))
		}, nil},
		{"start in year 10000", func(r *capture.Record) { r.Start = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, capture.ErrBadStart},
		{"start in year -1", func(r *capture.Record) { r.Start = time.Date(-1, 12, 31, 0, 0, 0, 0, time.UTC) }, capture.ErrBadStart},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good()
			tt.modify(r)
			err := r.Validate()
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("parse %s: %v", schemaPath, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	const url = "https://github.com/tapwire/tapwire/docs/record.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaPath, err)
	}
	return sch
}

func validateJSON(t *testing.T, sch *jsonschema.Schema, b []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(inst)
}

// TestSchemaGolden validates the golden files, and the records imported
// from the vendor sample, against docs/record.schema.json.
func TestSchemaGolden(t *testing.T) {
	sch := compileSchema(t)
	for name := range goldenRecords() {
		b, err := os.ReadFile(goldenPath(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := validateJSON(t, sch, b); err != nil {
			t.Errorf("%s does not match the schema: %v", goldenPath(name), err)
		}
	}
	f, err := os.Open(capturetest.VendorSample)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sample []*capture.Record
	if err := raw.Read(f, func(r *capture.Record) error { sample = append(sample, r); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, rec := range sample {
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := validateJSON(t, sch, b); err != nil {
			t.Errorf("vendor sample record %d does not match the schema: %v", i+1, err)
		}
	}
}

// TestSchemaRejects checks that the schema is not vacuous.
func TestSchemaRejects(t *testing.T) {
	sch := compileSchema(t)
	// field returns the JSON object of the message field at path (message
	// index, then field indexes) of the gRPC golden record.
	field := func(m map[string]any, path ...int) map[string]any {
		msg := m["http"].(map[string]any)["messages"].([]any)[path[0]].(map[string]any)
		fs := msg["fields"].([]any)
		var f map[string]any
		for _, i := range path[1:] {
			f = fs[i].(map[string]any)
			fs, _ = f["message"].([]any)
		}
		return f
	}
	tests := []struct {
		name   string
		golden string // the record to modify; if empty, http-in
		modify func(m map[string]any)
	}{
		{"newer schema", "", func(m map[string]any) { m["schema"] = 2 }},
		{"no id", "", func(m map[string]any) { delete(m, "id") }},
		{"bad kind", "", func(m map[string]any) { m["kind"] = "grpc" }},
		{"bad direction", "", func(m map[string]any) { m["direction"] = "IN" }},
		{"http kind without block", "", func(m map[string]any) { delete(m, "http") }},
		{"bad start", "", func(m map[string]any) { m["start"] = "yesterday" }},
		{"header triple", "", func(m map[string]any) {
			m["http"].(map[string]any)["req"].(map[string]any)["headers"] = []any{[]any{"a", "b", "c"}}
		}},
		{"body not base64", "", func(m map[string]any) {
			m["http"].(map[string]any)["req"].(map[string]any)["body"] = map[string]any{"data": "*not base64*", "size": 3}
		}},
		{"negative duration", "", func(m map[string]any) { m["durationUs"] = -1 }},
		{"grpc without method", "grpc-in", func(m map[string]any) { delete(m["http"].(map[string]any)["grpc"].(map[string]any), "method") }},
		{"message without size", "grpc-in", func(m map[string]any) {
			delete(m["http"].(map[string]any)["messages"].([]any)[0].(map[string]any), "size")
		}},
		{"message data not base64", "grpc-in", func(m map[string]any) {
			m["http"].(map[string]any)["messages"].([]any)[0].(map[string]any)["data"] = "*"
		}},
		{"field number 0", "grpc-in", func(m map[string]any) { field(m, 0, 0)["n"] = 0 }},
		{"unknown wire type", "grpc-in", func(m map[string]any) { field(m, 0, 0)["wire"] = "float" }},
		{"varint without uint", "grpc-in", func(m map[string]any) { delete(field(m, 0, 1), "uint") }},
		{"varint with string", "grpc-in", func(m map[string]any) { field(m, 0, 1)["string"] = "x" }},
		{"negative uint", "grpc-in", func(m map[string]any) { field(m, 0, 1)["uint"] = -1 }},
		{"uint beyond 64 bits", "grpc-in", func(m map[string]any) { field(m, 0, 1)["uint"] = json.Number("18446744073709551616") }},
		{"fixed32 beyond 32 bits", "grpc-in", func(m map[string]any) { f := field(m, 1, 2); f["wire"] = "fixed32" }},
		{"bytes with two values", "grpc-in", func(m map[string]any) { field(m, 0, 0)["bytes"] = "AA==" }},
		{"bytes without value", "grpc-in", func(m map[string]any) { delete(field(m, 0, 0), "string") }},
		{"bytes with uint", "grpc-in", func(m map[string]any) { field(m, 1, 3)["uint"] = 1 }},
		{"nested field without n", "grpc-in", func(m map[string]any) { delete(field(m, 0, 2, 1), "n") }},
		{"group with string", "grpc-in", func(m map[string]any) { f := field(m, 0, 2); f["wire"] = "group"; f["string"] = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.golden == "" {
				tt.golden = "http-in"
			}
			b, err := os.ReadFile(goldenPath(tt.golden))
			if err != nil {
				t.Fatal(err)
			}
			if err := validateJSON(t, sch, b); err != nil {
				t.Fatalf("%s does not match the schema before the change: %v", tt.golden, err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			tt.modify(m)
			bad, _ := json.Marshal(m)
			if err := validateJSON(t, sch, bad); err == nil {
				t.Errorf("schema accepted a record with %s", tt.name)
			}
		})
	}
}

// TestSchemaFields checks that every JSON member the Go types write has a
// property in docs/record.schema.json, and every property a Go field, so
// that the two cannot drift apart.
func TestSchemaFields(t *testing.T) {
	b, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	defs, _ := root["$defs"].(map[string]any)
	resolve := func(n map[string]any) map[string]any {
		for {
			ref, ok := n["$ref"].(string)
			if !ok {
				return n
			}
			name, ok := strings.CutPrefix(ref, "#/$defs/")
			if !ok {
				t.Fatalf("unexpected $ref %q", ref)
			}
			n, _ = defs[name].(map[string]any)
			if n == nil {
				t.Fatalf("$ref %q has no definition", ref)
			}
		}
	}
	seen := map[reflect.Type]bool{}
	var check func(path string, typ reflect.Type, node map[string]any)
	check = func(path string, typ reflect.Type, node map[string]any) {
		node = resolve(node)
		if seen[typ] {
			return
		}
		seen[typ] = true
		props, _ := node["properties"].(map[string]any)
		var goNames []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			goNames = append(goNames, name)
			p, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("%s.%s (Go field %s.%s) is missing from the schema", path, name, typ.Name(), f.Name)
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]():
				check(path+"."+name, ft, p)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft != reflect.TypeFor[capture.Headers]():
				items, _ := resolve(p)["items"].(map[string]any)
				if items == nil {
					t.Errorf("%s.%s: array of objects without items in the schema", path, name)
					continue
				}
				check(path+"."+name+"[]", ft.Elem(), items)
			}
		}
		for name := range props {
			if !slices.Contains(goNames, name) {
				t.Errorf("%s.%s is in the schema but no Go field of %s writes it", path, name, typ.Name())
			}
		}
	}
	check("record", reflect.TypeFor[capture.Record](), root)
	for _, typ := range []reflect.Type{
		reflect.TypeFor[capture.Record](), reflect.TypeFor[capture.Labels](), reflect.TypeFor[capture.Net](), reflect.TypeFor[capture.TLS](),
		reflect.TypeFor[capture.HTTP](), reflect.TypeFor[capture.Request](), reflect.TypeFor[capture.Response](), reflect.TypeFor[capture.Body](),
		reflect.TypeFor[capture.TCP](), reflect.TypeFor[capture.Chunk](), reflect.TypeFor[capture.VendorFacts](),
		reflect.TypeFor[capture.VendorNetInfo](), reflect.TypeFor[capture.VendorEndpoint](),
		reflect.TypeFor[capture.GRPC](), reflect.TypeFor[capture.Message](), reflect.TypeFor[capture.ProtoField](),
	} {
		if !seen[typ] {
			t.Errorf("the schema walk never reached %s", typ.Name())
		}
	}
}
