package redact

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
)

// BenchmarkRedactBody: the default rules over a 1 KiB body of one byte
// (bench/run's backend) and over an API's JSON answer with ids, prices,
// times and addresses, as goproxy redacts every record before it ships.
func BenchmarkRedactBody(b *testing.B) {
	r, err := New(DefaultRules(true))
	if err != nil {
		b.Fatal(err)
	}
	var js bytes.Buffer
	js.WriteString(`{"orders":[`)
	for i := range 12 {
		if i > 0 {
			js.WriteByte(',')
		}
		fmt.Fprintf(&js, `{"id":"ord_%08d","customer":{"id":%d,"email":"user%d@example.com","name":"Jane Doe"},"total":%d.%02d,"currency":"EUR","items":[{"sku":"SKU-%05d","qty":%d}],"created":"2026-12-0%dT10:%02d:00Z"}`,
			48213+i, 1000+i, i, 10+i*7, i, 300+i, 1+i%3, 1+i%7, i*4)
	}
	js.WriteString(`]}`)
	for _, tc := range []struct {
		name, ct string
		body     []byte
	}{
		{"text-x-1KiB", "text/plain", bytes.Repeat([]byte("x"), 1024)},
		{"json-api", "application/json", js.Bytes()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			hs := capture.Headers{{Name: "Content-Type", Value: tc.ct}}
			b.SetBytes(int64(len(tc.body)))
			for b.Loop() {
				var h hits
				r.redactBody(tc.body, hs, &h)
			}
		})
	}
}

// BenchmarkRedactRecord: the default rules over a record as goproxy makes
// one from bench/run's traffic (wrk's request, bench/backend's answer:
// headers, a URL with a query, 1 KiB of text), its headers and URL
// redacted in place each time as Redact does.
func BenchmarkRedactRecord(b *testing.B) {
	r, err := New(DefaultRules(true))
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 1024)
	rec := &capture.Record{Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn,
		HTTP: &capture.HTTP{
			Req: capture.Request{Method: "GET", URL: "http://127.0.0.1:8080/api/items?page=2&sort=name", Proto: "HTTP/1.1", Host: "127.0.0.1:8080",
				Headers: capture.Headers{{Name: "Host", Value: "127.0.0.1:8080"}, {Name: "User-Agent", Value: "wrk"}, {Name: "Accept", Value: "*/*"}}},
			Res: &capture.Response{Status: 200, Proto: "HTTP/1.1",
				Headers: capture.Headers{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}, {Name: "Content-Length", Value: "1024"},
					{Name: "Date", Value: "Mon, 07 Dec 2026 10:00:00 GMT"}}, Body: capture.Body{Data: body}},
		}}
	for b.Loop() {
		r.Redact(rec)
	}
}
