// Command mock writes the snapshot bench/mock/run serves with speedctl mock: N outbound records (our JSONL)
// over E endpoints of api.bench.local, each a POST with a JSON body holding stable fields, an id that varies
// between recordings, and a fresh nonce, timestamp and token (volatile shapes), and the wrk script that
// sends such requests with new volatile values each time.
package main

import (
	"bufio"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"os"
)

func main() {
	n := flag.Int("n", 10000, "records")
	e := flag.Int("endpoints", 100, "endpoints")
	out := flag.String("o", "snapshot.jsonl", "output file")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := 0; i < *n; i++ {
		ep := i % *e
		body := fmt.Sprintf(`{"account":"acct-%d","currency":"EUR","id":%d,"nonce":"%016x","ts":"2026-06-25T18:%02d:%02dZ","token":"%032x"}`,
			ep, i / *e, uint64(i)*0x9e3779b97f4a7c15, (i/60)%60, i%60, uint64(i)*0xbf58476d1ce4e5b9)
		res := fmt.Sprintf(`{"ok":true,"endpoint":%d,"n":%d}`, ep, i / *e)
		fmt.Fprintf(w, `{"schema":1,"id":"%08x-0000-7000-8000-%012x","kind":"http","direction":"out","start":"2026-06-25T18:00:%02d.%06dZ","durationUs":900,"labels":{},"net":{},"http":{"req":{"method":"POST","url":"https://api.bench.local/v1/e%d/items","proto":"HTTP/1.1","host":"api.bench.local","headers":[["Content-Type","application/json"],["X-Request-Nonce","%016x"]],"body":{"data":"%s","size":%d}},"res":{"status":200,"headers":[["Content-Type","application/json"]],"body":{"data":"%s","size":%d}}}}`+"\n",
			i, i, (i/1000000)%60, i%1000000, ep, uint64(i)*0x94d049bb133111eb, base64.StdEncoding.EncodeToString([]byte(body)), len(body),
			base64.StdEncoding.EncodeToString([]byte(res)), len(res))
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
