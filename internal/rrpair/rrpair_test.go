package rrpair_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/capture/capturetest"
	"github.com/tapwire/tapwire/internal/format/raw"
	"github.com/tapwire/tapwire/internal/rrpair"
)

const samplePath = "../format/raw/testdata/dynamodb-raw.jsonl"

// sampleLines returns the lines of the vendor sample.
func sampleLines(t testing.TB) [][]byte { return capturetest.Lines(t, samplePath) }

func readSample(t testing.TB) []*capture.Record {
	t.Helper()
	f, err := os.Open(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []*capture.Record
	if err := raw.Read(f, func(r *capture.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatalf("raw.Read(%s) = %v", samplePath, err)
	}
	return recs
}

func TestReadSample(t *testing.T) {
	recs := readSample(t)
	if got, want := len(recs), 45; got != want {
		t.Fatalf("records = %d, want %d", got, want)
	}
	ids := map[string]bool{}
	for i, r := range recs {
		if err := r.Validate(); err != nil {
			t.Errorf("record %d: Validate() = %v", i+1, err)
		}
		if ids[r.ID] {
			t.Errorf("record %d: duplicate id %s", i+1, r.ID)
		}
		ids[r.ID] = true
	}

	// Spot-check the mapping on the first line.
	r := recs[0]
	want := struct {
		id, url, proto, host, contentType, tech, resource string
		start                                             time.Time
		dur                                               int64
		status                                            int
		statusText                                        string
		reqSize                                           int64
	}{
		id:          "562c0685-9d68-4e2c-ba15-9f2dab6e822c", // base64 ViwGhZ1oTiy6FZ8tq26CLA==
		url:         "https://dynamodb.us-west-2.amazonaws.com/",
		proto:       "HTTP/2.0",
		host:        "dynamodb.us-west-2.amazonaws.com",
		contentType: "application/x-amz-json-1.0",
		tech:        "DynamoDB",
		resource:    "responder",
		start:       time.Date(2025, 2, 11, 21, 7, 54, 542084000, time.UTC),
		dur:         276000,
		status:      400,
		statusText:  "Bad Request",
		reqSize:     218,
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"ID", r.ID, want.id},
		{"Kind", r.Kind, capture.KindHTTP},
		{"Direction", r.Direction, capture.DirOut},
		{"Start", r.Start, want.start},
		{"DurMicros", r.DurMicros, want.dur},
		{"Labels.Cluster", r.Labels.Cluster, "undefined"},
		{"Net.ServerAddr", r.Net.ServerAddr, "dynamodb.us-west-2.amazonaws.com:0"},
		{"Net.ServerHost", r.Net.ServerHost, want.host},
		{"Req.Method", r.HTTP.Req.Method, "POST"},
		{"Req.URL", r.HTTP.Req.URL, want.url},
		{"Req.Proto", r.HTTP.Req.Proto, want.proto},
		{"Req.Host", r.HTTP.Req.Host, want.host},
		{"Req.Headers[0]", r.HTTP.Req.Headers[0], capture.Header{Name: "Accept-Encoding", Value: "identity"}},
		{"Req.Headers.Get(X-Amz-Target)", r.HTTP.Req.Headers.Get("x-amz-target"), "DynamoDB_20120810.CreateTable"},
		{"Req.Body.Size", r.HTTP.Req.Body.Size, want.reqSize},
		{"Req.Body.Truncated", r.HTTP.Req.Body.Truncated, false},
		{"Res.Status", r.HTTP.Res.Status, want.status},
		{"Res.StatusText", r.HTTP.Res.StatusText, want.statusText},
		{"Res.Headers.Get(Content-Type)", r.HTTP.Res.Headers.Get("Content-Type"), want.contentType},
		{"Tags[proxyVersion]", r.Tags["proxyVersion"], "v2.3.208"},
		{"Vendor.Tech", r.Vendor.Tech, want.tech},
		{"Vendor.Resource", r.Vendor.Resource, want.resource},
		{"Vendor.Signature[http:method]", r.Vendor.Signature["http:method"], "UE9TVA=="},
		{"Vendor.Extra[responderMatch]", string(r.Vendor.Extra["responderMatch"]), `"PASSTHROUGH"`},
		{"Vendor.Absent", len(r.Vendor.Absent), 0},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("record 1 %s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if !strings.HasPrefix(string(r.HTTP.Req.Body.Data), `{"AttributeDefinitions"`) {
		t.Errorf("record 1 request body = %.40q..., want the CreateTable JSON", r.HTTP.Req.Body.Data)
	}
}

// exportDiffs lists the intentional differences between a vendor line and
// the export of its import, as paths of decoded JSON. For the sample there
// are none: every member comes back with the same value. (Timestamps are
// compared as text; the export writes them as the vendor does.)
var exportDiffs = map[string]bool{}

func TestVendorExportCarriesFacts(t *testing.T) {
	lines := sampleLines(t)
	recs := readSample(t)
	var out bytes.Buffer
	if err := raw.Write(&out, recs); err != nil {
		t.Fatal(err)
	}
	exported := bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n"))
	if len(exported) != len(lines) {
		t.Fatalf("exported %d lines, want %d", len(exported), len(lines))
	}
	for i := range lines {
		var want, got any
		if err := json.Unmarshal(lines[i], &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(exported[i], &got); err != nil {
			t.Fatalf("line %d: exported line is not JSON: %v", i+1, err)
		}
		for _, d := range diffJSON("", want, got) {
			if !exportDiffs[d.path] {
				t.Errorf("line %d: %s: got %s, want %s", i+1, d.path, d.got, d.want)
			}
		}
	}
}

type jsonDiff struct{ path, got, want string }

// diffJSON compares decoded JSON field by field and returns the paths
// where got and want differ.
func diffJSON(path string, want, got any) []jsonDiff {
	wm, wok := want.(map[string]any)
	gm, gok := got.(map[string]any)
	if wok && gok {
		var ds []jsonDiff
		for k, wv := range wm {
			ds = append(ds, diffJSON(path+"."+k, wv, gm[k])...)
		}
		for k, gv := range gm {
			if _, ok := wm[k]; !ok {
				ds = append(ds, diffJSON(path+"."+k, nil, gv)...)
			}
		}
		return ds
	}
	if !reflect.DeepEqual(want, got) {
		return []jsonDiff{{path, short(got), short(want)}}
	}
	return nil
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

func TestVendorRoundTripSample(t *testing.T) {
	recs := readSample(t)
	var out bytes.Buffer
	if err := raw.Write(&out, recs); err != nil {
		t.Fatal(err)
	}
	var again []*capture.Record
	if err := raw.Read(&out, func(r *capture.Record) error { again = append(again, r); return nil }); err != nil {
		t.Fatalf("re-import: %v", err)
	}
	if len(again) != len(recs) {
		t.Fatalf("re-imported %d records, want %d", len(again), len(recs))
	}
	for i := range recs {
		if !reflect.DeepEqual(again[i], recs[i]) {
			t.Errorf("record %d changed by export and import:\ngot  %s\nwant %s", i+1, mustJSON(again[i]), mustJSON(recs[i]))
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestVendorRoundTripOwn exports our own records and imports them again.
// Intentional losses, listed: TCP chunks and the messages of HTTP
// (HTTP.Messages, HTTP.MessagesTruncated: the vendor form has no place for
// them), and the order of header fields of different names (the vendor's
// header map has none; import sorts by name, keeping each name's values in
// order). Every import is of the current Schema, which all golden records
// have.
func TestVendorRoundTripOwn(t *testing.T) {
	for name, rec := range capturetest.Records() {
		t.Run(name, func(t *testing.T) {
			p := rrpair.FromRecord(rec)
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var p2 rrpair.Pair
			if err := json.Unmarshal(b, &p2); err != nil {
				t.Fatal(err)
			}
			got, err := rrpair.ToRecord(&p2)
			if err != nil {
				t.Fatalf("rrpair.ToRecord(rrpair.FromRecord(%s)) = %v\n%s", name, err, b)
			}
			want := capturetest.VendorForm(rec)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip of %s:\ngot  %s\nwant %s\nvendor form %s", name, mustJSON(got), mustJSON(want), b)
			}
		})
	}
}

func TestToFromRecordFields(t *testing.T) {
	p := rrpair.FromRecord(capturetest.Records()["http-in"])
	checks := []struct{ name, got, want string }{
		{"msgType", p.MsgType, "rrpair"},
		{"ts", p.TS, "2025-02-11T21:07:54.542084Z"},
		{"uuid", p.UUID, "AZUPbipufEqbHj9tKoxOEA=="},
		{"direction", p.Direction, "IN"},
		{"l7protocol", p.L7Protocol, "http"},
		{"command", p.Command, "POST"},
		{"location", p.Location, "/v1/orders"},
		{"status", p.Status, "201"},
		{"network_address", p.NetworkAddress, "localhost:8080"},
		{"resource", p.Resource, "orders"},
		{"http.req.url", p.HTTP.Req.URL, "/v1/orders?dry=1"},
		{"http.req.uri", p.HTTP.Req.URI, "/v1/orders?dry=1"},
		{"http.req.version", p.HTTP.Req.Version, "1.1"},
		{"http.req.host", p.HTTP.Req.Host, "orders.shop:4143"},
		{"http.req.headers.X-Trace", strings.Join(p.HTTP.Req.Headers["X-Trace"], ","), "a,b"},
		{"http.res.statusMessage", p.HTTP.Res.StatusMessage, "201 Created"},
		{"http.res.contentType", p.HTTP.Res.ContentType, "application/json"},
		{"netinfo.downstream.ipAddress", p.NetInfo.Downstream.IPAddress, "10.0.3.17"},
		{"netinfo.downstream.port", fmt.Sprint(p.NetInfo.Downstream.Port), "51544"},
		{"netinfo.upstream.hostname", p.NetInfo.Upstream.Hostname, "localhost"},
		{"tags.k8sAppPodName", p.Tags[rrpair.TagPod], "orders-7c88-4dnr6"},
		{"duration", fmt.Sprint(p.Duration), "2"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

// TestToRRPairGRPC checks that the export of a gRPC call carries its gRPC
// block in a tag, and leaves its messages out.
func TestToFromRecordGRPC(t *testing.T) {
	rec := capturetest.Records()["grpc-in"]
	p := rrpair.FromRecord(rec)
	if got, want := p.Tags[rrpair.TagGRPC], `{"service":"shop.v1.Orders","method":"GetOrder","status":0}`; got != want {
		t.Errorf("tag %s = %s, want %s", rrpair.TagGRPC, got, want)
	}
	if got, want := p.Tags[rrpair.TagReqBodySize], "21"; got != want {
		t.Errorf("tag %s = %q, want %q", rrpair.TagReqBodySize, got, want)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString(rec.HTTP.Messages[0].Data))) {
		t.Errorf("the vendor form holds a message's data, want it left out: %s", b)
	}
}

// TestVendorUnknownFields checks that members the vendor types do not model
// survive import and export, at the top level and in http.req and res.
func TestVendorUnknownFields(t *testing.T) {
	in := `{"msgType":"rrpair","ts":"2026-06-25T18:18:27.132643Z","l7protocol":"http","duration":21,"direction":"IN",` +
		`"uuid":"rEclfZ34QAmtqtnBWEB2ew==","service":"my-app","resource":"my-app","command":"POST","location":"/d","status":"400",` +
		`"http":{"req":{"url":"/d","uri":"/d","version":"1.1","method":"POST","host":"localhost:8088","queryParams":{"a":["1"]}},` +
		`"res":{"statusCode":400,"statusMessage":"400 Bad Request","cookies":[1,2]}},` +
		`"netinfo":{"id":"5","startTime":"2026-06-25T18:18:27.132578Z","downstream":{"established":"2026-06-25T18:18:27.132042Z","ipAddress":"127.0.0.1","port":64190,"bytesSent":"386"},` +
		`"upstream":{"established":"2026-06-25T18:18:27.132503Z","ipAddress":"127.0.0.1","port":8088,"hostname":"localhost","bytesSent":"351"}},` +
		`"session":"abc","meta":{"x":"<b>"}}`
	var rec *capture.Record
	if err := raw.Read(strings.NewReader(in), func(r *capture.Record) error { rec = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.Net.ClientAddr, "127.0.0.1:64190"; got != want {
		t.Errorf("ClientAddr = %q, want %q", got, want)
	}
	if got, want := rec.Net.ConnID, "5"; got != want {
		t.Errorf("ConnID = %q, want %q", got, want)
	}
	if rec.Vendor == nil || rec.Vendor.NetInfo == nil || rec.Vendor.NetInfo.Upstream.BytesSent != 351 {
		t.Errorf("Vendor.NetInfo = %s, want the upstream bytesSent kept", mustJSON(rec.Vendor))
	}
	var out bytes.Buffer
	if err := raw.Write(&out, []*capture.Record{rec}); err != nil {
		t.Fatal(err)
	}
	var want, got any
	json.Unmarshal([]byte(in), &want)
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, d := range diffJSON("", want, got) {
		t.Errorf("%s: got %s, want %s", d.path, d.got, d.want)
	}
}

// TestVendorAbsentFields checks that a sparse vendor record exports without
// members it did not have, though they could be derived.
func TestVendorAbsentFields(t *testing.T) {
	in := `{"msgType":"rrpair","ts":"2025-01-01T00:00:00Z","duration":3,"direction":"OUT","http":{"req":{"url":"/x?q=1","method":"GET","host":"h"},"res":{"statusCode":204}}}`
	var p rrpair.Pair
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	rec, err := rrpair.ToRecord(&p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rec.HTTP.Req.URL, "http://h/x?q=1"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	b, err := json.Marshal(rrpair.FromRecord(rec))
	if err != nil {
		t.Fatal(err)
	}
	var want, got map[string]any
	json.Unmarshal([]byte(in), &want)
	json.Unmarshal(b, &got)
	delete(got, "uuid") // intentional: a record without uuid gets an id, and export writes it
	for _, d := range diffJSON("", want, got) {
		t.Errorf("%s: got %s, want %s", d.path, d.got, d.want)
	}
}

// TestReadRawJSONLNoUUID: a line without a uuid gets an id made from its
// bytes, the same on every read, so that an import twice stores it once;
// two different lines get different ids.
