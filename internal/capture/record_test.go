package capture

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
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const schemaPath = "../../docs/record.schema.json"

// goldenRecords are hand-built records of each kind, the examples of
// docs/record.md.
func goldenRecords() map[string]*Record {
	start := time.Date(2025, 2, 11, 21, 7, 54, 542084000, time.UTC)
	return map[string]*Record{
		"http-in": {
			Schema:     SchemaVersion,
			ID:         "01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e10",
			Kind:       KindHTTP,
			Direction:  DirIn,
			Start:      start,
			TTFBMicros: 1840,
			DurMicros:  2210,
			Labels:     Labels{Cluster: "prod", Namespace: "shop", Service: "orders", Pod: "orders-7c88-4dnr6", Tenant: "acme"},
			Net:        Net{ClientAddr: "10.0.3.17:51544", ServerAddr: "localhost:8080", ServerHost: "localhost", ConnID: "c-12", Proxy: "reverse"},
			HTTP: &HTTP{
				Req: Request{
					Method: "POST",
					URL:    "http://orders.shop:4143/v1/orders?dry=1",
					Proto:  "HTTP/1.1",
					Host:   "orders.shop:4143",
					Headers: Headers{
						{"Content-Type", "application/json"},
						{"Accept", "*/*"},
						{"X-Trace", "a"},
						{"X-Trace", "b"},
					},
					Body: Body{Data: []byte(`{"sku":"A-1","qty":2}`), Size: 21},
				},
				Res: &Response{
					Status:     201,
					StatusText: "Created",
					Proto:      "HTTP/1.1",
					Headers:    Headers{{"Content-Type", "application/json"}, {"Location", "/v1/orders/9"}},
					Body:       Body{Data: []byte(`{"id":9}`), Size: 8},
				},
			},
			Tags: Tags{"captureMode": "proxy", "proxyType": "dual", "proxyProtocol": "tcp:http"},
		},
		"http-out-tls": {
			Schema:     SchemaVersion,
			ID:         "01950f6e-2b01-7d3e-8a55-0c1f9e7b2d44",
			Kind:       KindHTTP,
			Direction:  DirOut,
			Start:      start.Add(time.Second),
			TTFBMicros: 75000,
			DurMicros:  80125,
			Labels:     Labels{Cluster: "prod", Namespace: "shop", Service: "orders"},
			Net: Net{
				ClientAddr: "127.0.0.1:40112",
				ServerAddr: "api.example.com:443",
				ServerHost: "api.example.com",
				ConnID:     "c-13",
				Proxy:      "connect",
				TLS: &TLS{
					SNI: "api.example.com", Version: "TLS 1.3", ALPN: "h2", CipherSuite: "TLS_AES_128_GCM_SHA256",
					Upstream: &TLS{SNI: "api.example.com", Version: "TLS 1.3", ALPN: "h2", CipherSuite: "TLS_CHACHA20_POLY1305_SHA256"},
				},
			},
			HTTP: &HTTP{
				Req: Request{
					Method:  "GET",
					URL:     "https://api.example.com/v2/items",
					Proto:   "HTTP/2.0",
					Host:    "api.example.com",
					Headers: Headers{{"Authorization", "REDACTED-authorization"}, {"Accept", "application/json"}},
					Body:    Body{Size: 0},
				},
				Res: &Response{
					Status:     200,
					StatusText: "OK",
					Proto:      "HTTP/2.0",
					Headers:    Headers{{"Content-Type", "application/octet-stream"}, {"Trailer", "Grpc-Status"}},
					Body:       Body{Data: []byte{0, 1, 2, 3, 4, 5, 6, 7}, Size: 5 << 20, Truncated: true},
					Trailers:   Headers{{"Grpc-Status", "0"}},
				},
			},
			Error:      "read upstream body: unexpected EOF",
			Redactions: []string{"std-auth"},
		},
		"grpc-in": {
			Schema:     SchemaVersion,
			ID:         "01950f6e-2d20-7b32-84d5-6e7f8091a2b3",
			Kind:       KindHTTP,
			Direction:  DirIn,
			Start:      start.Add(3 * time.Second),
			TTFBMicros: 1650,
			DurMicros:  1820,
			Labels:     Labels{Cluster: "prod", Namespace: "shop", Service: "orders"},
			Net:        Net{ClientAddr: "10.0.3.18:52210", ServerAddr: "localhost:50051", ServerHost: "localhost", ConnID: "c-15", Proxy: "reverse"},
			HTTP: &HTTP{
				Req: Request{
					Method: "POST",
					URL:    "http://orders.shop:4143/shop.v1.Orders/GetOrder",
					Proto:  "HTTP/2.0",
					Host:   "orders.shop:4143",
					Headers: Headers{
						{"Content-Type", "application/grpc"},
						{"Te", "trailers"},
						{"User-Agent", "grpc-go/1.85.0"},
						{"Grpc-Timeout", "999991u"},
					},
					Body: Body{Size: 21, Truncated: true}, // the messages hold the bytes
				},
				Res: &Response{
					Status:     200,
					StatusText: "OK",
					Proto:      "HTTP/2.0",
					Headers:    Headers{{"Content-Type", "application/grpc"}},
					Body:       Body{Size: 31, Truncated: true},
					Trailers:   Headers{{"Grpc-Status", "0"}},
				},
				Messages: []Message{
					{
						Up:       true,
						AtMicros: 140,
						Size:     16,
						Data:     []byte("\x0a\x03A-1\x10\x96\x01\x1a\x06\x08\x02\x12\x02eu"),
						Fields: []ProtoField{
							{Num: 1, Wire: "bytes", String: new("A-1")},
							{Num: 2, Wire: "varint", Uint: new(uint64(150))},
							{Num: 3, Wire: "bytes", Message: []ProtoField{
								{Num: 1, Wire: "varint", Uint: new(uint64(2))},
								{Num: 2, Wire: "bytes", String: new("eu")},
							}},
						},
					},
					{
						Up:       false,
						AtMicros: 1790,
						Size:     26,
						Data:     []byte("\x08\x09\x12\x07Created\x21\x3d\x0a\xd7\xa3\x70\xfd\x33\x40\x2a\x02\x00\xff\x3a\x00"),
						Fields: []ProtoField{
							{Num: 1, Wire: "varint", Uint: new(uint64(9))},
							{Num: 2, Wire: "bytes", String: new("Created")},
							{Num: 4, Wire: "fixed64", Uint: new(uint64(0x4033fd70a3d70a3d))}, // the double 19.99
							{Num: 5, Wire: "bytes", Bytes: []byte{0x00, 0xff}},
							{Num: 7, Wire: "bytes", String: new("")},
						},
					},
				},
				GRPC: &GRPC{Service: "shop.v1.Orders", Method: "GetOrder", Status: new(0)},
			},
			Tags: Tags{"captureMode": "proxy"},
		},
		"tcp": {
			Schema:    SchemaVersion,
			ID:        "01950f6e-2c10-7a21-b3c4-5d6e7f809112",
			Kind:      KindTCP,
			Direction: DirOut,
			Start:     start.Add(2 * time.Second),
			DurMicros: 1500000,
			Labels:    Labels{Service: "orders"},
			Net:       Net{ClientAddr: "127.0.0.1:40200", ServerAddr: "db.internal:5432", ServerHost: "db.internal", ConnID: "c-14", Proxy: "forward"},
			TCP: &TCP{
				BytesUp:   9,
				BytesDown: 5,
				Chunks: []Chunk{
					{Up: true, AtMicros: 0, Data: []byte("PING 1\r\n\x00")},
					{Up: false, AtMicros: 410, Data: []byte("PONG\n")},
				},
			},
		},
	}
}

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
			var got Record
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
	var got Record
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("decode with unknown fields: %v", err)
	}
	if want := goldenRecords()["tcp"]; !reflect.DeepEqual(&got, want) {
		t.Errorf("got %+v, want %+v", got, *want)
	}
}

func TestValidate(t *testing.T) {
	good := func() *Record { return goldenRecords()["http-in"] }
	tests := []struct {
		name   string
		modify func(*Record)
		want   error
	}{
		{"valid http", func(r *Record) {}, nil},
		{"valid tcp", func(r *Record) { *r = *goldenRecords()["tcp"] }, nil},
		{"older schema", func(r *Record) { r.Schema = 0 }, nil},
		{"no id", func(r *Record) { r.ID = "" }, ErrNoID},
		{"newer schema", func(r *Record) { r.Schema = SchemaVersion + 1 }, ErrSchemaTooNew},
		{"empty direction", func(r *Record) { r.Direction = "" }, ErrBadDirection},
		{"upper-case direction", func(r *Record) { r.Direction = "IN" }, ErrBadDirection},
		{"empty kind", func(r *Record) { r.Kind = "" }, ErrBadKind},
		{"unknown kind", func(r *Record) { r.Kind = "grpc" }, ErrBadKind},
		{"http without block", func(r *Record) { r.HTTP = nil }, ErrMissingHTTP},
		{"tcp without block", func(r *Record) { r.Kind = KindTCP }, ErrMissingTCP},
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
	for i, rec := range readSample(t) {
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
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft != reflect.TypeFor[Headers]():
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
	check("record", reflect.TypeFor[Record](), root)
	for _, typ := range []reflect.Type{
		reflect.TypeFor[Record](), reflect.TypeFor[Labels](), reflect.TypeFor[Net](), reflect.TypeFor[TLS](),
		reflect.TypeFor[HTTP](), reflect.TypeFor[Request](), reflect.TypeFor[Response](), reflect.TypeFor[Body](),
		reflect.TypeFor[TCP](), reflect.TypeFor[Chunk](), reflect.TypeFor[VendorFacts](),
		reflect.TypeFor[RRNetInfo](), reflect.TypeFor[RREndpoint](),
		reflect.TypeFor[GRPC](), reflect.TypeFor[Message](), reflect.TypeFor[ProtoField](),
	} {
		if !seen[typ] {
			t.Errorf("the schema walk never reached %s", typ.Name())
		}
	}
}
