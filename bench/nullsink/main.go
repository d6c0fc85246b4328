// Command nullsink answers goproxy's batches without storing them: it
// reads each POST's body to the end, counts the batch and its records (the
// X-Tapwire-Records header) and answers 200 as the forwarder does (listing
// the codings it takes, so that goproxy sends S2). bench/run ships a goproxy's
// records to it to measure goproxy with capture on apart from the
// forwarder: with two cores, the forwarder shares the load core with wrk
// and the backend, and its CPU (decoding, redacting and writing every
// record: about 20 µs per record) slows them, which lowers every figure
// taken through that core, goproxy's req/s and latency included.
//
//	nullsink -addr 127.0.0.1:8888
//	curl -s http://127.0.0.1:8888/stats   # {"batches":N,"records":M,"bytes":B}
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/tapwire/tapwire/internal/wire"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8888", "listen address")
	flag.Parse()
	var batches, records, bytes atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.Path, func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		k, _ := strconv.ParseInt(r.Header.Get(wire.HeaderRecords), 10, 64)
		batches.Add(1)
		records.Add(k)
		bytes.Add(n)
		// As the forwarder answers: goproxy then sends S2, as it does to c's
		// forwarder (without it, zstd's fastest level, which costs goproxy
		// more).
		wire.WriteAccepted(w, int(k))
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"batches":%d,"records":%d,"bytes":%d}`+"\n", batches.Load(), records.Load(), bytes.Load())
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}
