// Package capturetest holds hand-built capture records for the tests of
// every package that reads or writes them.
package capturetest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

// Records returns hand-built records of each kind, the examples of
// docs/record.md and the golden files of internal/capture/testdata: a new
// copy at each call, for a test to change freely.
func Records() map[string]*capture.Record {
	start := time.Date(2025, 2, 11, 21, 7, 54, 542084000, time.UTC)
	return map[string]*capture.Record{
		"http-in": {
			Schema:     capture.SchemaVersion,
			ID:         "01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e10",
			Kind:       capture.KindHTTP,
			Direction:  capture.DirIn,
			Start:      start,
			TTFBMicros: 1840,
			DurMicros:  2210,
			Labels:     capture.Labels{Cluster: "prod", Namespace: "shop", Service: "orders", Pod: "orders-7c88-4dnr6", Tenant: "acme"},
			Net:        capture.Net{ClientAddr: "10.0.3.17:51544", ServerAddr: "localhost:8080", ServerHost: "localhost", ConnID: "c-12", Proxy: "reverse"},
			HTTP: &capture.HTTP{
				Req: capture.Request{
					Method: "POST",
					URL:    "http://orders.shop:4143/v1/orders?dry=1",
					Proto:  "HTTP/1.1",
					Host:   "orders.shop:4143",
					Headers: capture.Headers{
						{Name: "Content-Type", Value: "application/json"},
						{Name: "Accept", Value: "*/*"},
						{Name: "X-Trace", Value: "a"},
						{Name: "X-Trace", Value: "b"},
					},
					Body: capture.Body{Data: []byte(`{"sku":"A-1","qty":2}`), Size: 21},
				},
				Res: &capture.Response{
					Status:     201,
					StatusText: "Created",
					Proto:      "HTTP/1.1",
					Headers:    capture.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "Location", Value: "/v1/orders/9"}},
					Body:       capture.Body{Data: []byte(`{"id":9}`), Size: 8},
				},
			},
			Tags: capture.Tags{"captureMode": "proxy", "proxyType": "dual", "proxyProtocol": "tcp:http"},
		},
		"http-out-tls": {
			Schema:     capture.SchemaVersion,
			ID:         "01950f6e-2b01-7d3e-8a55-0c1f9e7b2d44",
			Kind:       capture.KindHTTP,
			Direction:  capture.DirOut,
			Start:      start.Add(time.Second),
			TTFBMicros: 75000,
			DurMicros:  80125,
			Labels:     capture.Labels{Cluster: "prod", Namespace: "shop", Service: "orders"},
			Net: capture.Net{
				ClientAddr: "127.0.0.1:40112",
				ServerAddr: "api.example.com:443",
				ServerHost: "api.example.com",
				ConnID:     "c-13",
				Proxy:      "connect",
				TLS: &capture.TLS{
					SNI: "api.example.com", Version: "TLS 1.3", ALPN: "h2", CipherSuite: "TLS_AES_128_GCM_SHA256",
					Upstream: &capture.TLS{SNI: "api.example.com", Version: "TLS 1.3", ALPN: "h2", CipherSuite: "TLS_CHACHA20_POLY1305_SHA256"},
				},
			},
			HTTP: &capture.HTTP{
				Req: capture.Request{
					Method:  "GET",
					URL:     "https://api.example.com/v2/items",
					Proto:   "HTTP/2.0",
					Host:    "api.example.com",
					Headers: capture.Headers{{Name: "Authorization", Value: "REDACTED-authorization"}, {Name: "Accept", Value: "application/json"}},
					Body:    capture.Body{Size: 0},
				},
				Res: &capture.Response{
					Status:     200,
					StatusText: "OK",
					Proto:      "HTTP/2.0",
					Headers:    capture.Headers{{Name: "Content-Type", Value: "application/octet-stream"}, {Name: "Trailer", Value: "Grpc-Status"}},
					Body:       capture.Body{Data: []byte{0, 1, 2, 3, 4, 5, 6, 7}, Size: 5 << 20, Truncated: true},
					Trailers:   capture.Headers{{Name: "Grpc-Status", Value: "0"}},
				},
			},
			Error:      "read upstream body: unexpected EOF",
			Redactions: []string{"std-auth"},
		},
		"grpc-in": {
			Schema:     capture.SchemaVersion,
			ID:         "01950f6e-2d20-7b32-84d5-6e7f8091a2b3",
			Kind:       capture.KindHTTP,
			Direction:  capture.DirIn,
			Start:      start.Add(3 * time.Second),
			TTFBMicros: 1650,
			DurMicros:  1820,
			Labels:     capture.Labels{Cluster: "prod", Namespace: "shop", Service: "orders"},
			Net:        capture.Net{ClientAddr: "10.0.3.18:52210", ServerAddr: "localhost:50051", ServerHost: "localhost", ConnID: "c-15", Proxy: "reverse"},
			HTTP: &capture.HTTP{
				Req: capture.Request{
					Method: "POST",
					URL:    "http://orders.shop:4143/shop.v1.Orders/GetOrder",
					Proto:  "HTTP/2.0",
					Host:   "orders.shop:4143",
					Headers: capture.Headers{
						{Name: "Content-Type", Value: "application/grpc"},
						{Name: "Te", Value: "trailers"},
						{Name: "User-Agent", Value: "grpc-go/1.85.0"},
						{Name: "Grpc-Timeout", Value: "999991u"},
					},
					Body: capture.Body{Size: 21, Truncated: true}, // the messages hold the bytes
				},
				Res: &capture.Response{
					Status:     200,
					StatusText: "OK",
					Proto:      "HTTP/2.0",
					Headers:    capture.Headers{{Name: "Content-Type", Value: "application/grpc"}},
					Body:       capture.Body{Size: 31, Truncated: true},
					Trailers:   capture.Headers{{Name: "Grpc-Status", Value: "0"}},
				},
				Messages: []capture.Message{
					{
						Up:       true,
						AtMicros: 140,
						Size:     16,
						Data:     []byte("\x0a\x03A-1\x10\x96\x01\x1a\x06\x08\x02\x12\x02eu"),
						Fields: []capture.ProtoField{
							{Num: 1, Wire: "bytes", String: new("A-1")},
							{Num: 2, Wire: "varint", Uint: new(uint64(150))},
							{Num: 3, Wire: "bytes", Message: []capture.ProtoField{
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
						Fields: []capture.ProtoField{
							{Num: 1, Wire: "varint", Uint: new(uint64(9))},
							{Num: 2, Wire: "bytes", String: new("Created")},
							{Num: 4, Wire: "fixed64", Uint: new(uint64(0x4033fd70a3d70a3d))}, // the double 19.99
							{Num: 5, Wire: "bytes", Bytes: []byte{0x00, 0xff}},
							{Num: 7, Wire: "bytes", String: new("")},
						},
					},
				},
				GRPC: &capture.GRPC{Service: "shop.v1.Orders", Method: "GetOrder", Status: new(0)},
			},
			Tags: capture.Tags{"captureMode": "proxy"},
		},
		"tcp": {
			Schema:    capture.SchemaVersion,
			ID:        "01950f6e-2c10-7a21-b3c4-5d6e7f809112",
			Kind:      capture.KindTCP,
			Direction: capture.DirOut,
			Start:     start.Add(2 * time.Second),
			DurMicros: 1500000,
			Labels:    capture.Labels{Service: "orders"},
			Net:       capture.Net{ClientAddr: "127.0.0.1:40200", ServerAddr: "db.internal:5432", ServerHost: "db.internal", ConnID: "c-14", Proxy: "forward"},
			TCP: &capture.TCP{
				BytesUp:   9,
				BytesDown: 5,
				Chunks: []capture.Chunk{
					{Up: true, AtMicros: 0, Data: []byte("PING 1\r\n\x00")},
					{Up: false, AtMicros: 410, Data: []byte("PONG\n")},
				},
			},
		},
	}
}

// Lines returns the lines of the file at path, each a copy.
func Lines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, len(b)+1)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// VendorSample is the path of the vendor's raw.jsonl sample (45 records of a
// DynamoDB client) from a package directory two levels below internal/.
const VendorSample = "../format/raw/testdata/dynamodb-raw.jsonl"

// Batch returns n records for batch tests and benchmarks, with bodies of
// bodyLen bytes; every fourth is a TCP record.
func Batch(n, bodyLen int) []*capture.Record {
	start := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	body := bytes.Repeat([]byte(`{"k":"v"}`), bodyLen/9+1)[:bodyLen]
	recs := make([]*capture.Record, n)
	for i := range recs {
		r := &capture.Record{
			Schema:    capture.SchemaVersion,
			ID:        fmt.Sprintf("0195d1c0-0000-7000-8000-%012d", i),
			Kind:      capture.KindHTTP,
			Direction: capture.DirOut,
			Start:     start.Add(time.Duration(i) * time.Millisecond),
			DurMicros: 1500,
			Labels:    capture.Labels{Cluster: "prod", Namespace: "shop", Service: "cart", Pod: "cart-7f9"},
			Net:       capture.Net{ClientAddr: "127.0.0.1:50000", ServerAddr: "api.example.com:443", ServerHost: "api.example.com", Proxy: "forward"},
		}
		if i%4 == 3 {
			r.Kind = capture.KindTCP
			r.TCP = &capture.TCP{BytesUp: 3, BytesDown: 2, Chunks: []capture.Chunk{{Up: true, Data: []byte("abc")}, {AtMicros: 9, Data: []byte("de")}}}
		} else {
			r.HTTP = &capture.HTTP{
				Req: capture.Request{Method: "POST", URL: "https://api.example.com/v1/items?x=1&y=<2>", Proto: "HTTP/1.1", Host: "api.example.com",
					Headers: capture.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "X-Trace", Value: fmt.Sprint(i)}},
					Body:    capture.Body{Data: body, Size: int64(len(body))}},
				Res: &capture.Response{Status: 200, StatusText: "OK", Proto: "HTTP/1.1",
					Headers: capture.Headers{{Name: "Content-Type", Value: "application/json"}},
					Body:    capture.Body{Data: body, Size: int64(len(body)) * 2, Truncated: true}},
			}
		}
		recs[i] = r
	}
	return recs
}

// VendorForm returns a copy of rec less what the vendor's RRPair form (and
// so raw.jsonl and Markdown recordings) cannot hold: TCP chunks, HTTP
// messages (gRPC, WebSocket), and the order of headers of different names
// (an import sorts them by name, keeping each name's values in order).
func VendorForm(rec *capture.Record) *capture.Record {
	want := *rec
	if h := want.HTTP; h != nil {
		hc := *h
		hc.Req.Headers = byName(hc.Req.Headers)
		if hc.Res != nil {
			res := *hc.Res
			res.Headers = byName(res.Headers)
			hc.Res = &res
		}
		hc.Messages, hc.MessagesTruncated = nil, false
		want.HTTP = &hc
	}
	if want.TCP != nil {
		tcp := *want.TCP
		tcp.Chunks = nil
		want.TCP = &tcp
	}
	return &want
}

func byName(h capture.Headers) capture.Headers {
	c := slices.Clone(h)
	slices.SortStableFunc(c, func(a, b capture.Header) int { return strings.Compare(a.Name, b.Name) })
	return c
}
