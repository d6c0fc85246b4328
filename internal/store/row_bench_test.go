package store_test

import (
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/storetest"
)

func BenchmarkSynth(b *testing.B) {
	g := storetest.NewSynth(1, time.Now(), time.Hour, b.N)
	for i := 0; i < b.N; i++ {
		g.Next(i)
	}
}

func BenchmarkNewRow(b *testing.B) {
	g := storetest.NewSynth(1, time.Now(), time.Hour, 1000)
	recs := make([]*capture.Record, 1000)
	for i := range recs {
		recs[i] = g.Next(i)
	}
	b.ResetTimer()
	size := 0
	for i := 0; i < b.N; i++ {
		r, err := store.NewRow(recs[i%1000])
		if err != nil {
			b.Fatal(err)
		}
		size += len(r.Data) + len(r.Search)
	}
	b.ReportMetric(float64(size)/float64(b.N), "bytes/row")
}
