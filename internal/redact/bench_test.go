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
