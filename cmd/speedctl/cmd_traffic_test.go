package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/config"
	"github.com/tapwire/tapwire/internal/format/har/hartest"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/hub"
	"github.com/tapwire/tapwire/internal/hubclient"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/store/storetest"
	"github.com/tapwire/tapwire/internal/wire"
)

// hubRecords are what `hub start` ingests: fixed ids, so that the output
// is golden.
func hubRecords() []*capture.Record {
	recs := []*capture.Record{
		storetest.Rec(1, "orders", capture.DirIn, "GET", "http://orders.shop/v1/orders/42", 200),
		storetest.Rec(2, "orders", capture.DirOut, "POST", "https://api.stripe.com/v1/charges", 402),
		storetest.Rec(3, "users", capture.DirIn, "GET", "http://users.shop/v1/users?name=ada", 500),
		storetest.Rec(4, "orders", capture.DirIn, "DELETE", "http://orders.shop/v1/orders/7", 0),
	}
	for i, r := range recs {
		r.ID = fmt.Sprintf("01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e1%d", i)
	}
	recs[1].HTTP.Req.Body = capture.Body{Data: []byte(`{"amount":1200,"currency":"usd"}`), Size: 32}
	recs[1].HTTP.Req.Headers = append(recs[1].HTTP.Req.Headers, capture.Header{Name: "Content-Type", Value: "application/json"})
	recs[1].HTTP.Res.Body = capture.Body{Data: []byte(`{"error":{"code":"card_declined"}}`), Size: 34}
	recs[3].Error = "upstream closed the connection"
	return recs
}

// hubCmd runs a real hub on loopback for the script, with a SQLite store
// in $WORK:
//
//	hub start [-empty] [NAME]   start a hub; set $HUB, $KEY (a read key) and
//	                            $INGEST_KEY, suffixed with NAME; ingest
//	                            hubRecords through POST /v1/batches unless -empty
//	hub ingest [-to NAME] [-ago DURATION] FIRST LAST
//	                            post records FIRST to LAST of freshRecord
//	                            (started just now, or DURATION ago) to that hub
//	hub sample FILE             write the vendor's sample raw.jsonl (45 records)
func hubCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: hub start [-empty] [NAME] | hub ingest [-to NAME] FIRST LAST")
	}
	switch args[0] {
	case "start":
		args = args[1:]
		empty := len(args) > 0 && args[0] == "-empty"
		if empty {
			args = args[1:]
		}
		if len(args) > 1 {
			ts.Fatalf("usage: hub start [-empty] [NAME]")
		}
		name := ""
		if len(args) == 1 {
			name = args[0]
		}
		var recs []*capture.Record
		if !empty {
			recs = hubRecords()
		}
		h, err := startHub(ts.MkAbs("hub-data"+name), recs)
		ts.Check(err)
		ts.Defer(h.close)
		ts.Setenv("HUB"+name, h.url)
		ts.Setenv("KEY"+name, h.read)
		ts.Setenv("INGEST_KEY"+name, h.ingest)
	case "ingest":
		args = args[1:]
		name := ""
		if len(args) > 1 && args[0] == "-to" {
			name, args = args[1], args[2:]
		}
		var ago time.Duration
		if len(args) > 1 && args[0] == "-ago" {
			var err error
			ago, err = time.ParseDuration(args[1])
			ts.Check(err)
			args = args[2:]
		}
		if len(args) != 2 {
			ts.Fatalf("usage: hub ingest [-to NAME] [-ago DURATION] FIRST LAST")
		}
		first, err1 := strconv.Atoi(args[0])
		last, err2 := strconv.Atoi(args[1])
		if err1 != nil || err2 != nil || last < first {
			ts.Fatalf("hub ingest: want two record numbers, FIRST <= LAST")
		}
		var recs []*capture.Record
		for i := first; i <= last; i++ {
			recs = append(recs, freshRecord(i, time.Now().Add(-ago)))
		}
		ts.Check(ingest(ts.Getenv("HUB"+name), ts.Getenv("INGEST_KEY"+name), recs))
	case "sample":
		// hub sample FILE: the vendor's sample raw.jsonl (45 records).
		if len(args) != 2 {
			ts.Fatalf("usage: hub sample FILE")
		}
		b, err := os.ReadFile(filepath.Join("..", "..", "internal", "format", "raw", "testdata", "dynamodb-raw.jsonl"))
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(args[1]), b, 0o644))
	default:
		ts.Fatalf("usage: hub start [-empty] [NAME] | hub ingest [-to NAME] FIRST LAST | hub sample FILE")
	}
}

// freshRecord is record i of service tail, started at start, with the id
// 00000000-0000-7000-8000-00000000000i.
func freshRecord(i int, start time.Time) *capture.Record {
	r := storetest.Rec(0, "tail", capture.DirIn, "GET", fmt.Sprintf("http://tail.shop/v1/items/%d", i), 200)
	r.ID = fmt.Sprintf("00000000-0000-7000-8000-%012d", i)
	r.Start = start.UTC()
	return r
}

type testHub struct {
	url, read, ingest string
	close             func()
}

// startHub serves a hub with a SQLite store in dir on 127.0.0.1 and
// ingests recs with its first ingest key, as a forwarder would.
func startHub(dir string, recs []*capture.Record) (*testHub, error) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "hub.db"), sqlite.Options{})
	if err != nil {
		return nil, err
	}
	ingestKey, read, err := hub.Bootstrap(ctx, st, storetest.T0)
	if err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		return nil, err
	}
	srv := httptest.NewUnstartedServer(hub.NewServer(hub.Config{}, st, nil).Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	h := &testHub{url: srv.URL, read: read, ingest: ingestKey, close: func() { srv.Close(); st.Close() }}
	if len(recs) > 0 {
		if err := ingest(srv.URL, ingestKey, recs); err != nil {
			h.close()
			return nil, err
		}
	}
	return h, nil
}

// newTestHub starts a hub for t as startHub does, stopped at its end,
// and points speedctl's home at an empty folder.
func newTestHub(t *testing.T, recs []*capture.Record) *testHub {
	t.Helper()
	h, err := startHub(t.TempDir(), recs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	t.Setenv(config.HomeEnv, t.TempDir())
	return h
}

// ingest posts recs to the hub at url as one batch.
func ingest(url, key string, recs []*capture.Record) error {
	var body bytes.Buffer
	if err := wire.EncodeBatch(&body, recs); err != nil {
		return err
	}
	req, err := wire.NewRequest(context.Background(), url+wire.Path, body.Bytes(), wire.BatchID(recs), len(recs), key)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	a, err := wire.ParseResponse(resp)
	if err == nil && a.Accepted != len(recs) {
		err = fmt.Errorf("hub accepted %d records, want %d", a.Accepted, len(recs))
	}
	return err
}

// TestTrafficListCursors: list follows the hub's cursors until --limit.
func TestTrafficListCursors(t *testing.T) {
	h := newTestHub(t, hubRecords())
	defer func(n int) { listPageSize = n }(listPageSize)
	listPageSize = 1
	for _, tc := range []struct {
		limit    string
		want     int
		wantNext bool
	}{{"3", 3, true}, {"4", 4, false}, {"10", 4, false}} {
		out, err := run(t, "traffic", "list", "--hub", h.url, "--key", h.read, "--json", "--limit", tc.limit)
		if err != nil {
			t.Fatalf("list --limit %s: %v\n%s", tc.limit, err, out)
		}
		var page struct {
			Records []struct{ ID string }
			Next    string
		}
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range page.Records {
			ids = append(ids, r.ID[len(r.ID)-2:])
		}
		want := []string{"13", "12", "11", "10"}[:tc.want]
		if fmt.Sprint(ids) != fmt.Sprint(want) || (page.Next != "") != tc.wantNext {
			t.Errorf("list --limit %s: ids %v, next %q; want %v, next %v", tc.limit, ids, page.Next, want, tc.wantNext)
		}
	}
}

// harValid checks that FILE is a HAR with N entries, valid by the HAR 1.2
// schema of har-validator: har FILE N.
func harValid(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: har FILE ENTRIES")
	}
	var h struct {
		Log *struct {
			Version string `json:"version"`
			Creator struct {
				Name string `json:"name"`
			} `json:"creator"`
			Entries []struct {
				StartedDateTime string `json:"startedDateTime"`
				Request         struct {
					Method string `json:"method"`
					URL    string `json:"url"`
				} `json:"request"`
				Response struct {
					Status int `json:"status"`
				} `json:"response"`
			} `json:"entries"`
		} `json:"log"`
	}
	doc := []byte(ts.ReadFile(args[0]))
	err := json.Unmarshal(doc, &h)
	if err == nil {
		// har-validator's schema, a third party's reading of HAR 1.2.
		err = hartest.Validate(doc)
	}
	if err == nil && h.Log == nil {
		err = fmt.Errorf("no log")
	}
	if err == nil && h.Log.Version != "1.2" {
		err = fmt.Errorf("log.version %q, want 1.2", h.Log.Version)
	}
	if err == nil && fmt.Sprint(len(h.Log.Entries)) != args[1] {
		err = fmt.Errorf("%d entries, want %s", len(h.Log.Entries), args[1])
	}
	if err == nil {
		for i, e := range h.Log.Entries {
			if e.Request.Method == "" || e.Request.URL == "" || e.StartedDateTime == "" {
				err = fmt.Errorf("entry %d lacks request.method, request.url or startedDateTime", i)
			}
		}
	}
	if neg != (err != nil) {
		if neg {
			ts.Fatalf("%s is a HAR with %s entries", args[0], args[1])
		}
		ts.Fatalf("%s: %v", args[0], err)
	}
}

// hubExport is the hub's own export of format with the query q, and its
// Tapwire-Next-Cursor trailer, through hubclient.
func hubExport(t *testing.T, h *testHub, format string, q apitype.ExportQuery) (body, next string) {
	t.Helper()
	c, err := hubclient.New(h.url, h.read, hubclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Export(context.Background(), format, q)
	if err != nil {
		t.Fatalf("export %s %+v: %v", format, q, err)
	}
	defer e.Close()
	b, err := io.ReadAll(e)
	if err != nil {
		t.Fatalf("export %s %+v: %v", format, q, err)
	}
	return string(b), e.NextCursor()
}

// TestTrafficExportCursors: export follows the hub's cursors page by page,
// past any page size, and writes what the hub's own export writes.
func TestTrafficExportCursors(t *testing.T) {
	recs := hubRecords()
	for i := range 7 {
		r := storetest.Rec(10+i, "bulk", capture.DirOut, "GET", fmt.Sprintf("http://bulk/%d", i), 200)
		r.ID = fmt.Sprintf("01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4f%02d", i)
		recs = append(recs, r)
	}
	h := newTestHub(t, recs)
	defer func(n int) { exportPageSize = n }(exportPageSize)
	exportPageSize = 2
	for _, tc := range []struct {
		format, hubFormat, limit string
		want                     int
	}{
		{"jsonl", "records.jsonl", "", 11},
		{"jsonl", "records.jsonl", "5", 5},
		{"raw", "raw.jsonl", "", 11},
		{"har", "har", "", 11},
		{"har", "har", "3", 3},
	} {
		t.Run(tc.format+"/"+tc.limit, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"traffic", "export", "--hub", h.url, "--key", h.read, "--format", tc.format, "-o", out}
			q := apitype.ExportQuery{Limit: 100000}
			if tc.limit != "" {
				args = append(args, "--limit", tc.limit)
				q.Limit, _ = strconv.Atoi(tc.limit)
			}
			if msg, err := run(t, args...); err != nil {
				t.Fatalf("export: %v\n%s", err, msg)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := hubExport(t, h, tc.hubFormat, q)
			if tc.format == "har" {
				want = strings.Replace(want, `"creator":{"name":"tapwire hub","version":"1"}`, `"creator":{"name":"speedctl","version":"`+version+`"}`, 1)
			}
			if string(got) != want {
				t.Errorf("speedctl's export differs from the hub's:\n%s\nwant\n%s", got, want)
			}
			n := strings.Count(want, `"_id"`) + strings.Count(want, "\n{\"schema\"") + strings.Count(want, `"msgType"`)
			if strings.HasPrefix(want, `{"schema"`) {
				n++
			}
			if n != tc.want {
				t.Errorf("%d records, want %d", n, tc.want)
			}
		})
	}

	// The hub's own export says where a cut export stops, and goes on from
	// there.
	first, next := hubExport(t, h, "records.jsonl", apitype.ExportQuery{Limit: 4})
	if strings.Count(first, "\n") != 4 || next == "" {
		t.Fatalf("export?limit=4: %d lines, next cursor %q; want 4 and a cursor", strings.Count(first, "\n"), next)
	}
	rest, next2 := hubExport(t, h, "records.jsonl", apitype.ExportQuery{Limit: 100, Cursor: next})
	all, _ := hubExport(t, h, "records.jsonl", apitype.ExportQuery{})
	if first+rest != all || next2 != "" {
		t.Errorf("export in two parts differs from the whole (next cursor %q)", next2)
	}
	if _, next := hubExport(t, h, "records.jsonl", apitype.ExportQuery{Limit: 11}); next != "" {
		t.Errorf("an export of all records has the next cursor %q", next)
	}
}

// syncBuffer is a bytes.Buffer safe for a command writing and a test
// reading at once; it signals each write.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{wrote: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until the buffer holds want.
func (s *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(s.String(), want) {
		select {
		case <-s.wrote:
		case <-deadline:
			t.Fatalf("no %q after 10s in:\n%s", want, s.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startTail runs speedctl traffic tail with args in the background; the
// channel gets its error when it ends.
func startTail(t *testing.T, args ...string) (stdout, stderr *syncBuffer, done chan error) {
	cmd := newRootCmd()
	stdout, stderr = newSyncBuffer(), newSyncBuffer()
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetArgs(append([]string{"traffic", "tail"}, args...))
	done = make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	return stdout, stderr, done
}

func tailIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var s struct{ ID string }
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("tail --json printed %q: %v", line, err)
		}
		ids = append(ids, s.ID[len(s.ID)-2:])
	}
	return ids
}

// TestTrafficTail: tail prints each record that arrives once, in arrival
// order, records that were there before it started not at all (without
// --since), late records however late, and stops at --count.
func TestTrafficTail(t *testing.T) {
	h := newTestHub(t, hubRecords())
	now := time.Now()
	post := func(recs ...*capture.Record) {
		t.Helper()
		if err := ingest(h.url, h.ingest, recs); err != nil {
			t.Fatal(err)
		}
	}
	post(freshRecord(1, now.Add(-5*time.Second)), freshRecord(2, now.Add(-4*time.Second)))

	stdout, stderr, done := startTail(t, "--hub", h.url, "--key", h.read, "--json", "--count", "5", "--for", "20s",
		"--interval", "20ms", "--service", "tail")
	stderr.waitFor(t, "following "+h.url)
	post(freshRecord(3, now), freshRecord(4, now.Add(time.Millisecond)))
	stdout.waitFor(t, "00000000-0000-7000-8000-000000000004")
	post(freshRecord(3, now), freshRecord(4, now.Add(time.Millisecond))) // again: nothing new
	post(freshRecord(5, now.Add(-30*time.Second)))                       // late
	post(freshRecord(6, now.Add(-2*time.Hour)))                          // two hours late
	stdout.waitFor(t, "00000000-0000-7000-8000-000000000006")
	post(storetest.Rec(0, "other", capture.DirIn, "GET", "http://other/", 200)) // not the service
	time.Sleep(100 * time.Millisecond)                                          // a few polls
	post(freshRecord(7, time.Now()))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tail: %v\n%s", err, stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("tail did not stop at --count 5")
	}
	if got, want := tailIDs(t, stdout.String()), []string{"03", "04", "05", "06", "07"}; !slices.Equal(got, want) {
		t.Errorf("tail printed %v, want %v", got, want)
	}

	// --since prints the records of that period first, oldest first, and
	// the table has a header.
	stdout, stderr, done = startTail(t, "--hub", h.url, "--key", h.read, "--since", "1m", "--count", "7",
		"--interval", "20ms", "--service", "tail")
	stderr.waitFor(t, "following")
	post(freshRecord(8, time.Now()))
	if err := <-done; err != nil {
		t.Fatalf("tail --since: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var ids []string
	for _, l := range lines[1:] {
		ids = append(ids, strings.Fields(l)[0][34:])
	}
	if !strings.HasPrefix(lines[0], "ID ") || !slices.Equal(ids, []string{"05", "01", "02", "03", "04", "07", "08"}) {
		t.Errorf("tail --since printed:\n%s\nwant a header and records 05 01 02 03 04 07 08", stdout)
	}

	// --for ends a quiet tail without an error.
	began := time.Now()
	if out, err := run(t, "traffic", "tail", "--hub", h.url, "--key", h.read, "--for", "300ms", "--interval", "50ms"); err != nil || time.Since(began) > 5*time.Second {
		t.Errorf("tail --for 300ms: %v after %s\n%s", err, time.Since(began), out)
	}
}

func TestTrafficTailErrors(t *testing.T) {
	h := newTestHub(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "now"}, "--to: tail has no end"},
		{[]string{"--key", h.ingest}, "needs a read key"},
		{[]string{"--hub", "http://127.0.0.1:1"}, "unreachable"},
		{[]string{"--status", "6xx"}, "status"},
	} {
		args := append([]string{"traffic", "tail", "--hub", h.url, "--key", h.read, "--for", "5s"}, tc.args...)
		if out, err := run(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tail %v: %v, want an error containing %q\n%s", tc.args, err, tc.want, out)
		}
	}
}

// TestTrafficImportRetries: import waits out a 503 with Retry-After and
// splits a batch the hub finds too large, through a front server that
// answers so before the real hub; a folder gives its record files.
func TestTrafficImportRetries(t *testing.T) {
	h := newTestHub(t, nil)
	target, err := url.Parse(h.url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var answers []string
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		first := len(answers) == 0
		n := r.Header.Get(wire.HeaderRecords)
		switch {
		case first:
			answers = append(answers, "503")
			mu.Unlock()
			w.Header().Set("Retry-After", "1")
			wire.WriteError(w, wire.Errorf(http.StatusServiceUnavailable, "store busy"))
			return
		case n != "1" && n != "2":
			answers = append(answers, "413/"+n)
			mu.Unlock()
			wire.WriteError(w, wire.Errorf(http.StatusRequestEntityTooLarge, "too large"))
			return
		}
		answers = append(answers, "200/"+n)
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	dir := t.TempDir()
	var body bytes.Buffer
	recs := hubRecords()
	if err := jsonl.Append(&body, recs[:3]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "records-20250301T120000Z-1.jsonl"), body.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	body.Reset()
	if err := jsonl.Append(&body, recs[3:]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "records-20250301T120000Z-2.jsonl"), body.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not records"), 0o644)
	began := time.Now()
	out, err := run(t, "traffic", "import", "--hub", front.URL, "--ingest-key", h.ingest, dir)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if !strings.Contains(out, "imported 4 records from 2 files (2 jsonl)") || !strings.Contains(out, "4 sent in 1 batch") { // the batch the hub took in two halves counts once
		t.Errorf("import said:\n%s", out)
	}
	if d := time.Since(began); d < time.Second {
		t.Errorf("import took %s: it did not wait the Retry-After of 1s", d)
	}
	// One batch of 4: 503, then 413; the halves of 2 pass.
	if want := []string{"503", "413/4", "200/2", "200/2"}; !slices.Equal(answers, want) {
		t.Errorf("the front server answered %v, want %v", answers, want)
	}
	got, err := run(t, "traffic", "list", "--hub", h.url, "--key", h.read, "--json")
	if err != nil || strings.Count(got, `"id": "01950f6e`) != 4 {
		t.Errorf("the hub holds, after import:\n%s %v", got, err)
	}
}
