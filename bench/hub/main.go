// Command hub measures the hub's store: the ingest rate of realistic records
// into SQLite and PostgreSQL, then the latency of list queries (and the
// summaries) on what was stored, 1M records by default.
//
//	go run ./bench/hub                          # SQLite, 1M records
//	go run ./bench/hub -store postgres          # a private, durable PostgreSQL (internal/testpg)
//	go run ./bench/hub -store postgres -db postgres://...   # an existing database (use an empty one)
//	go run ./bench/hub -n 200000 -queries 100 -http      # smaller; ingest over HTTP through the hub
//	go run ./bench/hub -baseline                # first the same records as JSON blobs in a bare SQLite table
//
// Ingest: -writers goroutines each insert batches of 512 records (a goproxy
// batch) through store.Insert (or, with -http, POST them to the hub's
// /v1/batches over loopback, zstd-encoded as the forwarder sends them).
// Records come from a pool of synthetic ones (storetest.Synth) given fresh
// ids and rising start times spread over -span, so that generating them
// costs little next to storing them. It prints records/s and records per
// CPU second of this process (for PostgreSQL the server's CPU is not in it).
//
// Queries: each kind is run -queries times against random points of the
// stored time span and reports p50, p95, p99 and the mean number of rows.
// Everything runs in a temporary directory that is removed at the end.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/hub"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/postgres"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/store/storetest"
	"github.com/tapwire/tapwire/internal/testpg"
	"github.com/tapwire/tapwire/internal/wire"
)

func main() {
	kind := flag.String("store", "sqlite", "sqlite or postgres")
	dsn := flag.String("db", "", "postgres: an existing, empty database instead of a private server")
	n := flag.Int("n", 1_000_000, "records to ingest")
	writers := flag.Int("writers", 2, "concurrent writers")
	batch := flag.Int("batch", 512, "records per batch")
	span := flag.Duration("span", 7*24*time.Hour, "the records' start times spread over this span before now")
	queries := flag.Int("queries", 200, "runs of each query")
	viaHTTP := flag.Bool("http", false, "ingest over HTTP through the hub instead of calling the store")
	skipQueries := flag.Bool("ingest-only", false, "stop after ingest")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the ingest to this file")
	flag.StringVar(&tsvFile, "tsv", "", "also append the headline figures to this file as bench/all's rows")
	baseline := flag.Bool("baseline", false, "sqlite: first measure the baseline, the same records as JSON blobs in a bare SQLite table")
	flag.Parse()
	log.SetFlags(0)

	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "tapwire-bench-hub-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	var st store.Store
	switch *kind {
	case "sqlite":
		st, err = sqlite.Open(ctx, filepath.Join(tmp, "hub.db"), sqlite.Options{})
	case "postgres":
		if *dsn == "" {
			srv, err := testpg.Start(testpg.Options{Durable: true, Settings: map[string]string{"shared_buffers": "512MB", "max_wal_size": "4GB"}})
			if err != nil {
				log.Fatal(err)
			}
			defer srv.Stop()
			if *dsn, err = srv.CreateDB(ctx); err != nil {
				log.Fatal(err)
			}
		}
		st, err = postgres.Open(ctx, *dsn)
	default:
		log.Fatalf("-store %q: want sqlite or postgres", *kind)
	}
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	fmt.Printf("hub store bench: %s, %d records in batches of %d, %d writers, http=%v, GOMAXPROCS=%d, load average %s\n",
		*kind, *n, *batch, *writers, *viaHTTP, runtime.GOMAXPROCS(0), loadavg())
	end := time.Now().UTC()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	baseName, baseRate := "", ""
	if *baseline && *kind == "sqlite" {
		fmt.Printf("\nbaseline: the same records, each one JSON blob, into a table with only a primary key (modernc SQLite, the store's pragmas)")
		post, done := blobIngest(filepath.Join(tmp, "baseline.db"))
		r := ingest(*n, *batch, *writers, end, *span, post)
		done()
		baseName, baseRate = "bare SQLite table of JSON blobs", fmt.Sprintf("%.0f", r)
		fmt.Printf("\nthe store:")
	}
	post := func(recs []*capture.Record) error {
		_, err := st.Insert(ctx, "bench", recs)
		return err
	}
	if *viaHTTP {
		post = httpIngest(ctx, st)
	}
	rate := ingest(*n, *batch, *writers, end, *span, post)
	target := ""
	if *kind == "sqlite" {
		target = ">=50000" // issue 5's target
	}
	tsvRow(fmt.Sprintf("hub ingest records/s into %s (%d writers, batches of %d)", *kind, *writers, *batch), fmt.Sprintf("%.0f", rate), baseName, baseRate, target)
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	if o, ok := st.(interface{ Optimize(context.Context) error }); ok {
		t := time.Now()
		if err := o.Optimize(ctx); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("  statistics for the planner after the load (PRAGMA optimize, ANALYZE): %s\n", time.Since(t).Round(time.Millisecond))
	}
	if s, ok := st.(*sqlite.Store); ok {
		if fi, err := os.Stat(s.Path()); err == nil {
			fmt.Printf("  database file: %.0f MiB (%.0f bytes per record)\n", float64(fi.Size())/(1<<20), float64(fi.Size())/float64(*n))
		}
	}
	if !*skipQueries {
		query(ctx, st, end, *span, *queries, *kind, *n)
	}
}

// tsvFile is -tsv: where the headline figures go as bench/all's rows.
var tsvFile string

// tsvRow appends a row (figure, ours, baseline name, baseline, target) to
// tsvFile, if set.
func tsvRow(cols ...string) {
	if tsvFile == "" {
		return
	}
	f, err := os.OpenFile(tsvFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(f, strings.Join(cols, "\t"))
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if len(b) > 14 {
		return string(b[:14])
	}
	return "?"
}

// pool makes the records: a few thousand synthetic ones, copied with a new
// id and start for each insert.
type pool struct {
	recs  []*capture.Record
	end   time.Time
	span  time.Duration
	total int
}

func newPool(end time.Time, span time.Duration, total int) *pool {
	const size = 8192
	g := storetest.NewSynth(7, end, span, size)
	p := &pool{end: end, span: span, total: total}
	for i := range size {
		p.recs = append(p.recs, g.Next(i))
	}
	return p
}

func (p *pool) record(i int) *capture.Record {
	r := *p.recs[i%len(p.recs)]
	r.ID = capture.NewID()
	r.Start = p.end.Add(-p.span + time.Duration(float64(p.span)*float64(i)/float64(p.total)))
	return &r
}

// ingest stores n records and returns the rate, in records per second.
// post stores one batch.
func ingest(n, batch, writers int, end time.Time, span time.Duration, post func([]*capture.Record) error) float64 {
	p := newPool(end, span, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var lats []time.Duration
	var mu sync.Mutex
	start, cpu0 := time.Now(), storetest.CPUTime()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]*capture.Record, 0, batch)
			for {
				lo := int(next.Add(int64(batch))) - batch
				if lo >= n {
					return
				}
				recs = recs[:0]
				for i := lo; i < min(lo+batch, n); i++ {
					recs = append(recs, p.record(i))
				}
				t := time.Now()
				if err := post(recs); err != nil {
					log.Fatalf("ingest: %v", err)
				}
				mu.Lock()
				lats = append(lats, time.Since(t))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall, cpu := time.Since(start), storetest.CPUTime()-cpu0
	slices.Sort(lats)
	fmt.Printf("\ningest: %d records in %s: %.0f records/s, %.0f records per CPU second of this process\n",
		n, wall.Round(time.Millisecond), float64(n)/wall.Seconds(), float64(n)/cpu.Seconds())
	fmt.Printf("  batch latency: p50 %s, p95 %s, p99 %s, max %s\n", pct(lats, 50), pct(lats, 95), pct(lats, 99), lats[len(lats)-1].Round(time.Millisecond))
	return float64(n) / wall.Seconds()
}

// blobIngest opens a bare SQLite database at path, with the pragmas of
// internal/store/sqlite (WAL, synchronous NORMAL, 16 KiB pages), and
// returns a poster that stores each record as one JSON blob under its id,
// a batch per transaction: the floor of keeping records in SQLite at all,
// without the store's columns, indexes and text search.
func blobIngest(path string) (post func([]*capture.Record) error, done func()) {
	q := url.Values{"_txlock": {"immediate"}}
	for _, p := range []string{"page_size(16384)", "busy_timeout(10000)", "journal_mode(WAL)", "synchronous(NORMAL)", "cache_size(-32768)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1) // SQLite has one writer
	if _, err := db.Exec(`CREATE TABLE records (id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID`); err != nil {
		log.Fatal(err)
	}
	return func(recs []*capture.Record) error {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		defer tx.Rollback()
		ins, err := tx.Prepare(`INSERT OR IGNORE INTO records (id, body) VALUES (?, ?)`)
		if err != nil {
			return err
		}
		for _, r := range recs {
			b, err := json.Marshal(r) // as internal/store encodes a record
			if err != nil {
				return err
			}
			if _, err := ins.Exec(r.ID, b); err != nil {
				return err
			}
		}
		return tx.Commit()
	}, func() { db.Close() }
}

// httpIngest serves the hub over loopback and returns a poster of batches
// with an ingest key, encoded as the forwarder sends them.
func httpIngest(ctx context.Context, st store.Store) func([]*capture.Record) error {
	if err := st.CreateTenant(ctx, store.Tenant{ID: "bench", Created: time.Now()}); err != nil {
		log.Fatal(err)
	}
	key, k, err := hub.NewKey("bench", store.RoleIngest, "bench", time.Now())
	if err != nil {
		log.Fatal(err)
	}
	if err := st.CreateKey(ctx, k); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: hub.NewServer(hub.Config{MaxInFlight: 64}, st, nil).Handler()}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String() + wire.Path
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	return func(recs []*capture.Record) error {
		var body bytes.Buffer
		if err := wire.EncodeBatch(&body, recs); err != nil {
			return err
		}
		req, err := wire.NewRequest(ctx, url, body.Bytes(), wire.BatchID(recs), len(recs), key)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = wire.ParseResponse(resp)
		return err
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[max(i, 1)-1].Round(10 * time.Microsecond)
}

func query(ctx context.Context, st store.Store, end time.Time, span time.Duration, runs int, storeKind string, stored int) {
	rng := rand.New(rand.NewPCG(1, 2))
	// A random instant of the stored span, away from its ends.
	at := func() time.Time {
		return end.Add(-span + time.Duration(rng.Int64N(int64(span-2*time.Hour))) + time.Hour)
	}
	services := []string{"orders", "users", "payments", "catalog", "search", "gateway", "inventory", "shipping"}
	svc := func() string { return services[rng.IntN(len(services))] }
	type kind struct {
		name string
		run  func() (int, error)
	}
	list := func(q store.Query) (int, error) {
		p, err := st.List(ctx, "bench", q)
		return len(p.Items), err
	}
	// The cursor of a page deep in the list, fetched once per run.
	deep := func(f store.Filter) (int, error) {
		q := store.Query{Filter: f, Limit: 100}
		n := 0
		for range 10 {
			p, err := st.List(ctx, "bench", q)
			if err != nil {
				return 0, err
			}
			n = len(p.Items)
			if q.Cursor = p.Next; p.Next == "" {
				break
			}
		}
		return n, nil
	}
	kinds := []kind{
		{"newest 100, no filter", func() (int, error) { return list(store.Query{Limit: 100}) }},
		{"1h window, 100", func() (int, error) {
			t := at()
			return list(store.Query{Limit: 100, Filter: store.Filter{From: t, To: t.Add(time.Hour)}})
		}},
		{"service, 100", func() (int, error) { return list(store.Query{Limit: 100, Filter: store.Filter{Service: svc()}}) }},
		{"service + in + 2xx, 1h window", func() (int, error) {
			t := at()
			return list(store.Query{Limit: 100, Filter: store.Filter{Service: svc(), Direction: "in", StatusLo: 200, StatusHi: 299, From: t, To: t.Add(time.Hour)}})
		}},
		{"service + 5xx (2%), 100", func() (int, error) {
			return list(store.Query{Limit: 100, Filter: store.Filter{Service: svc(), StatusLo: 500, StatusHi: 599}})
		}},
		{"failed, 1h window", func() (int, error) {
			t := at()
			return list(store.Query{Limit: 100, Filter: store.Filter{Failed: true, From: t, To: t.Add(time.Hour)}})
		}},
		{"host + method, 100", func() (int, error) {
			return list(store.Query{Limit: 100, Filter: store.Filter{Host: "api.stripe.com", Method: "POST"}})
		}},
		{"path substring, 100", func() (int, error) {
			return list(store.Query{Limit: 100, Filter: store.Filter{Path: "/stock"}})
		}},
		{"page 10 of service (cursor)", func() (int, error) { return deep(store.Filter{Service: svc()}) }},
		{"text, common (customer), 100", func() (int, error) {
			return list(store.Query{Limit: 100, Filter: store.Filter{Text: "deliver before noon"}})
		}},
		{"text, rare, 1h window", func() (int, error) {
			t := at()
			return list(store.Query{Limit: 100, Filter: store.Filter{Text: fmt.Sprintf("c-%d", rng.IntN(1e6)), From: t, To: t.Add(time.Hour)}})
		}},
		{"text, absent, 1 day window", func() (int, error) {
			t := at()
			return list(store.Query{Limit: 100, Filter: store.Filter{Text: "no-such-text-anywhere", From: t.Add(-24 * time.Hour), To: t}})
		}},
		{"summaries, 1h window", func() (int, error) {
			t := at()
			s, err := store.Summarize(ctx, st, "bench", store.Filter{From: t, To: t.Add(time.Hour)})
			return len(s), err
		}},
		{"histogram, 1 day, 10m steps", func() (int, error) {
			t := at()
			b, err := store.Histogram(ctx, st, "bench", store.Filter{From: t.Add(-24 * time.Hour), To: t}, 10*time.Minute)
			return len(b), err
		}},
	}
	fmt.Printf("\nqueries (%d runs each, one at a time):\n", runs)
	fmt.Printf("  %-34s %10s %10s %10s %8s\n", "query", "p50", "p95", "p99", "rows")
	for _, k := range kinds {
		var lats []time.Duration
		rows := 0
		n := runs
		if k.name == "text, absent, 1 day window" || k.name == "summaries, 1h window" || k.name == "histogram, 1 day, 10m steps" {
			n = max(runs/10, 5)
		}
		for range n {
			t := time.Now()
			r, err := k.run()
			if err != nil {
				log.Fatalf("%s: %v", k.name, err)
			}
			lats = append(lats, time.Since(t))
			rows += r
		}
		slices.Sort(lats)
		fmt.Printf("  %-34s %10s %10s %10s %8.0f\n", k.name, pct(lats, 50), pct(lats, 95), pct(lats, 99), float64(rows)/float64(n))
		target := "<=50" // issue 5's target for the filtered list query
		if strings.HasPrefix(k.name, "summaries") || strings.HasPrefix(k.name, "histogram") {
			target = ""
		}
		tsvRow(fmt.Sprintf("hub %s query p95 ms at %d records: %s", storeKind, stored, k.name), fmt.Sprintf("%.1f", float64(pct(lats, 95).Microseconds())/1000), "", "", target)
	}
}
