package forwarder

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/wire"
)

// benchBatches builds n zstd batches of size records with 1 KiB JSON-ish
// response bodies, as bench/forwarder does.
func benchBatches(n, size int) [][]byte {
	var out [][]byte
	for b := range n {
		recs := httpRecords(size, 0)
		for i, r := range recs {
			var body bytes.Buffer
			for body.Len() < 1000 {
				fmt.Fprintf(&body, `{"item":"sku-%d","qty":%d,"note":"express"},`, b*size+i, body.Len())
			}
			r.HTTP.Res.Body = capture.Body{Data: body.Bytes()[:1024], Size: 1024}
			r.HTTP.Res.Headers = capture.Headers{{Name: "Content-Type", Value: "application/json"}}
			r.HTTP.Req.Headers = capture.Headers{{Name: "Accept", Value: "*/*"}, {Name: "Authorization", Value: "Bearer x.y.z"}}
		}
		var z bytes.Buffer
		if err := wire.EncodeBatch(&z, recs); err != nil {
			panic(err)
		}
		out = append(out, z.Bytes())
	}
	return out
}

// BenchmarkIngest posts 512-record batches with 1 KiB bodies from 16
// concurrent senders into a forwarder with the directory sink, over
// loopback HTTP, and reports records/s acknowledged (spooled, fsynced).
//
//	go test -run '^$' -bench Ingest -benchtime 20000x ./internal/forwarder
func BenchmarkIngest(b *testing.B) {
	const size, senders = 512, 16
	batches := benchBatches(32, size)
	f := start(b, Config{MaxInFlight: 8, SpoolDir: filepath.Join(b.TempDir(), "spool"), Dir: filepath.Join(b.TempDir(), "records")})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	defer client.CloseIdleConnections()
	url := "http://" + f.addr + wire.Path
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next += size
				mu.Unlock()
				if i >= b.N {
					return
				}
				for {
					req, _ := http.NewRequest("POST", url, bytes.NewReader(batches[(i/size)%len(batches)]))
					req.Header.Set(wire.HeaderProtocol, "1")
					req.Header.Set("Content-Encoding", "zstd")
					req.Header.Set(wire.HeaderRecords, strconv.Itoa(size))
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	// On a shared machine the wall clock says little; the process's CPU
	// time (forwarder, directory sink and the senders' HTTP) per record
	// does not depend on the neighbours.
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "records/cpu-s")
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
