package hub_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/memtest"
	"github.com/tapwire/tapwire/internal/wire"
)

// hubMemoryBound is what docs/hub.md promises: the worst legal batch, or
// any hostile one, raises the hub's peak resident set by at most this.
// The design holds far less (a chunk of 512 records, one long line at a
// time, see ingest.go); the gap is the margin for the garbage collector,
// which lets the heap grow to about twice what is live, and for SQLite's
// page cache, which grows with the database.
const hubMemoryBound = 128 * memtest.MiB

// TestMemory starts the real hub (SQLite) and reads its peak RSS before
// and after each batch: the largest legal ones must be stored (or, sent
// together, some answered 429) and hostile ones refused, each within
// hubMemoryBound.
func TestMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the hub")
	}
	bin := memtest.Build(t, "./cmd/hub")
	maxRecords := memtest.Lines(wire.MaxBatchRecords, wire.MaxDecodedBytes/wire.MaxBatchRecords)
	maxLines := memtest.Lines(3, wire.MaxLineBytes-64)
	tiny := memtest.Lines(1_000_000, 0)
	warm := memtest.Lines(60_000, 300)
	maxRecords2 := memtest.Lines(wire.MaxBatchRecords, wire.MaxDecodedBytes/wire.MaxBatchRecords)
	bomb := memtest.Zstd(bytes.Repeat([]byte{'\n'}, 64<<20), wire.MaxWindowBytes) // 2 KiB, inflates past the limit

	type result struct {
		status int
		msg    string
	}
	tests := []struct {
		name    string
		batches []memtest.Batch
		want    []int // statuses a batch may get
	}{
		{"max records, 8 MiB window", []memtest.Batch{{Body: memtest.Zstd(maxRecords, wire.MaxWindowBytes), Encoding: "zstd", Records: wire.MaxBatchRecords}}, []int{200}},
		{"max lines", []memtest.Batch{memtest.ZstdBatch("", maxLines, 3)}, []int{200}},
		{"identity", []memtest.Batch{{Body: maxRecords, Encoding: "identity", Records: wire.MaxBatchRecords}}, []int{200}},
		{"four at once", []memtest.Batch{
			memtest.ZstdBatch("", maxRecords, wire.MaxBatchRecords), memtest.ZstdBatch("", maxLines, 3),
			memtest.ZstdBatch("", maxRecords2, wire.MaxBatchRecords), memtest.ZstdBatch("", memtest.Lines(3, wire.MaxLineBytes-64), 3)}, []int{200, 429}},
		{"a million tiny records, said", []memtest.Batch{memtest.ZstdBatch("", tiny, 1_000_000)}, []int{413}},
		{"a million tiny records, unsaid", []memtest.Batch{memtest.ZstdBatch("", tiny, -1)}, []int{413}},
		{"zstd bomb", []memtest.Batch{{Body: bomb, Encoding: "zstd", Records: -1}}, []int{413}},
		{"too large", []memtest.Batch{memtest.ZstdBatch("", append(maxRecords[:len(maxRecords):len(maxRecords)], maxLines[:len(maxLines)/3]...), wire.MaxBatchRecords+1)}, []int{413}},
	}
	// One hub for all cases, warmed up: the store, its writer and the
	// pools exist, and SQLite's page cache (32 MiB) has reached its size,
	// as in a hub that has run a while. Each case then starts from the
	// peak reset to the resident set of the moment.
	addr := memtest.FreeAddr(t)
	p := memtest.Start(t, bin, addr, "/healthz", nil, "-listen", addr, "-data", t.TempDir())
	key := ingestKey(t, p.Stdout())
	url := "http://" + addr + wire.Path
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if st, msg, err := memtest.Post(ctx, url, key, memtest.ZstdBatch("", warm, -1)); err != nil || st != 200 {
		t.Fatalf("warm-up batch: %d %s %v", st, msg, err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.ResetPeak(t)
			before := p.Peak(t)
			start := time.Now()
			results := make([]result, len(tt.batches))
			var wg sync.WaitGroup
			for i, b := range tt.batches {
				wg.Go(func() {
					st, msg, err := memtest.Post(ctx, url, key, b)
					if err != nil {
						msg = err.Error()
					}
					results[i] = result{st, msg}
				})
			}
			wg.Wait()
			after := p.Peak(t)
			ok200 := 0
			for i, r := range results {
				if !slices.Contains(tt.want, r.status) {
					t.Errorf("batch %d: %d %s, want one of %v", i, r.status, r.msg, tt.want)
				}
				if r.status == 200 {
					ok200++
				}
			}
			if len(tt.batches) > 1 && ok200 == 0 {
				t.Errorf("no batch of %d stored: %v", len(tt.batches), results)
			}
			t.Logf("peak RSS %.1f MiB -> %.1f MiB (+%.1f MiB) in %v; answers %v",
				mib(before), mib(after), mib(after-before), time.Since(start).Round(time.Millisecond), results)
			if after-before > hubMemoryBound {
				t.Errorf("peak RSS rose by %.1f MiB, want at most %.0f MiB", mib(after-before), mib(hubMemoryBound))
			}
		})
	}
}

func ingestKey(t *testing.T, stdout string) string {
	t.Helper()
	for line := range strings.Lines(stdout) {
		if strings.Contains(line, "ingest key") {
			f := strings.Fields(line)
			return f[len(f)-1]
		}
	}
	t.Fatalf("no ingest key in the hub's output:\n%s", stdout)
	return ""
}

func mib(n int64) float64 { return float64(n) / memtest.MiB }
