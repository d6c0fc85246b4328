package hub

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/postgres"
	"github.com/tapwire/tapwire/internal/store/storetest"
	"github.com/tapwire/tapwire/internal/testpg"
)

// TestArrivals: GET /api/v1/records/arrivals lists in arrival order (a
// record that started an hour before the others but arrived after them
// comes after them), with the list's filters and a cursor.
func TestArrivals(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(*testing.T) store.Store) {
		h := newHub(t, open(t), Config{})
		read := h.keys["acme/read"]
		a := storetest.Rec(3600, "web", "in", "GET", "http://web/a", 200)
		b := storetest.Rec(3601, "web", "in", "GET", "http://web/b", 500)
		late := storetest.Rec(0, "web", "in", "GET", "http://web/late", 200)
		for _, recs := range [][]*capture.Record{{a, b}, {late}} {
			if _, resp := h.post(h.keys["acme/ingest"], recs); resp.StatusCode != 200 {
				t.Fatalf("post: %d", resp.StatusCode)
			}
		}
		arrivals := func(query string) apitype.Arrivals {
			t.Helper()
			var got apitype.Arrivals
			if code := h.get(read, "/api/v1/records/arrivals"+query, &got); code != 200 {
				t.Fatalf("arrivals%s: status %d", query, code)
			}
			return got
		}
		ids := func(a apitype.Arrivals) []string {
			return pageIDs(store.Page{Items: a.Records})
		}
		all := arrivals("")
		if got, want := ids(all), recIDs(a, b, late); !slices.Equal(got, want) {
			t.Errorf("arrivals = %v, want %v", got, want)
		}
		if n := len(all.Records); n == 0 || all.Next != all.Records[n-1].Seq {
			t.Fatalf("next %d, want the last seq", all.Next)
		}
		first := arrivals("?limit=2")
		if rest := arrivals("?limit=2&after=" + strconv.FormatInt(first.Next, 10)); !slices.Equal(ids(rest), recIDs(late)) {
			t.Errorf("second page = %v, want %v", ids(rest), recIDs(late))
		}
		if got := arrivals("?status=2xx"); !slices.Equal(ids(got), recIDs(a, late)) {
			t.Errorf("arrivals?status=2xx = %v, want %v", ids(got), recIDs(a, late))
		}
		if end := arrivals("?after=end"); len(end.Records) != 0 || end.Next != all.Next {
			t.Errorf("arrivals?after=end = %d records, next %d; want none, %d", len(end.Records), end.Next, all.Next)
		}
		if got := arrivals("?after=0"); len(got.Records) != 3 {
			t.Errorf("arrivals?after=0: %d records, want 3", len(got.Records))
		}
		var beta apitype.Arrivals
		if h.get(h.keys["beta/read"], "/api/v1/records/arrivals", &beta); len(beta.Records) != 0 {
			t.Errorf("beta sees %d of acme's records", len(beta.Records))
		}
		for _, tc := range []struct {
			name, key, query string
			want             int
		}{
			{"bad after", read, "?after=x", 400},
			{"negative after", read, "?after=-5", 400},
			{"snapshot", read, "?snapshot=s", 400},
			{"ingest key", h.keys["acme/ingest"], "", 403},
			{"no key", "", "", 401},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if code := h.get(tc.key, "/api/v1/records/arrivals"+tc.query, nil); code != tc.want {
					t.Errorf("status %d, want %d", code, tc.want)
				}
			})
		}
	})
}

// sseEvent is one event of a stream.
type sseEvent struct {
	id, event, data string
	comment         string
}

// openStream opens GET /api/v1/stream and returns its events as they come;
// the stream closes with the test.
func openStream(t *testing.T, h *hub, key, query, lastID string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"/api/v1/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ch := make(chan sseEvent, 100)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); resp.Body.Close(); <-done })
	go func() {
		defer close(done)
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev.comment = strings.TrimSpace(line[1:])
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return resp, ch
}

// nextRecord returns the next record event of ch, skipping comments.
func nextRecord(t *testing.T, ch <-chan sseEvent) (sseEvent, store.Item) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.event != "record" {
				continue
			}
			var it store.Item
			if err := json.Unmarshal([]byte(ev.data), &it); err != nil {
				t.Fatalf("event data %q: %v", ev.data, err)
			}
			if ev.id != strconv.FormatInt(it.Seq, 10) {
				t.Errorf("event id %q, want the record's seq %d", ev.id, it.Seq)
			}
			return ev, it
		case <-timeout:
			t.Fatal("no record event within 10s")
		}
	}
}

// TestStream: GET /api/v1/stream over a real socket sends a record posted
// while it is open (one that started an hour ago too), and only what
// arrived after; resumed with Last-Event-ID it skips what was seen; it
// sends keep-alive comments.
func TestStream(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(*testing.T) store.Store) {
		h := newHub(t, open(t), Config{})
		h.srv.streamPoll, h.srv.keepAlive = 20*time.Millisecond, 200*time.Millisecond
		read, ingest := h.keys["acme/read"], h.keys["acme/ingest"]
		before := storetest.Rec(1, "web", "in", "GET", "http://web/before", 200)
		if _, resp := h.post(ingest, []*capture.Record{before}); resp.StatusCode != 200 {
			t.Fatalf("post: %d", resp.StatusCode)
		}

		resp, ch := openStream(t, h, read, "?service=web", "")
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
			t.Fatalf("stream: %d %q, want 200 text/event-stream", resp.StatusCode, ct)
		}
		hourOld := storetest.Rec(0, "web", "in", "GET", "http://web/hour-old", 200)
		hourOld.Start = time.Now().Add(-time.Hour)
		other := storetest.Rec(2, "db", "out", "GET", "http://db/x", 200) // filtered out
		fresh := storetest.Rec(3, "web", "in", "GET", "http://web/fresh", 200)
		if _, resp := h.post(ingest, []*capture.Record{hourOld, other}); resp.StatusCode != 200 {
			t.Fatalf("post: %d", resp.StatusCode)
		}
		if _, resp := h.post(h.keys["beta/ingest"], []*capture.Record{storetest.Rec(4, "web", "in", "GET", "http://web/beta", 200)}); resp.StatusCode != 200 {
			t.Fatalf("post: %d", resp.StatusCode)
		}
		if _, resp := h.post(ingest, []*capture.Record{fresh}); resp.StatusCode != 200 {
			t.Fatalf("post: %d", resp.StatusCode)
		}
		ev1, it1 := nextRecord(t, ch)
		_, it2 := nextRecord(t, ch)
		if got, want := []string{it1.ID, it2.ID}, recIDs(hourOld, fresh); !slices.Equal(got, want) {
			t.Errorf("streamed %v, want %v (not the record from before, another service's or another tenant's)", got, want)
		}
		// Keep-alive comments come while nothing arrives.
		deadline := time.After(5 * time.Second)
	wait:
		for {
			select {
			case ev := <-ch:
				if ev.comment == "keep-alive" {
					break wait
				}
			case <-deadline:
				t.Fatal("no keep-alive comment within 5s")
			}
		}

		// Resumed after the first event: the second only.
		_, ch2 := openStream(t, h, read, "?service=web", ev1.id)
		if _, it := nextRecord(t, ch2); it.ID != fresh.ID {
			t.Errorf("resumed with Last-Event-ID %s: got %s, want %s", ev1.id, it.ID, fresh.ID)
		}
		// after=0: from the first record there is.
		_, ch3 := openStream(t, h, read, "?after=0", "")
		if _, it := nextRecord(t, ch3); it.ID != before.ID {
			t.Errorf("after=0: got %s first, want %s", it.ID, before.ID)
		}

		for _, tc := range []struct {
			name, key, query, lastID string
			want                     int
		}{
			{"bad Last-Event-ID", read, "", "x", 400},
			{"snapshot", read, "?snapshot=s", "", 400},
			{"ingest key", ingest, "", "", 403},
			{"no key", "", "", "", 401},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req, _ := http.NewRequest("GET", h.url+"/api/v1/stream"+tc.query, nil)
				if tc.key != "" {
					req.Header.Set("Authorization", "Bearer "+tc.key)
				}
				if tc.lastID != "" {
					req.Header.Set("Last-Event-ID", tc.lastID)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
				}
			})
		}
	})
}

// TestStreamShutdown: an open stream ends when the hub shuts down, so
// that it does not hold the drain.
func TestStreamShutdown(t *testing.T) {
	h := newHub(t, stores[0].open(t), Config{})
	h.srv.streamPoll = 20 * time.Millisecond
	_, ch := openStream(t, h, h.keys["acme/read"], "", "")
	h.srv.closing.Store(true)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("stream still open 5s after shutdown began")
		}
	}
}

// TestStreamTwoHubsOnePostgres: two hub replicas on one PostgreSQL
// database, as the hub grows past one machine, both serve live traffic: a
// record posted to either reaches a stream opened on the other (the
// arrival cursor is the database's, not a replica's memory).
func TestStreamTwoHubsOnePostgres(t *testing.T) {
	dsn := testpg.DSN(t)
	open := func() store.Store {
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := newHub(t, open(), Config{})
	st := open()
	srvB := NewServer(Config{}, st, nil)
	hs := httptest.NewServer(srvB.Handler())
	t.Cleanup(func() { hs.Close(); st.Close() })
	b := &hub{t: t, srv: srvB, url: hs.URL, store: st, keys: a.keys, now: time.Now()}
	for _, h := range []*hub{a, b} {
		h.srv.streamPoll, h.srv.keepAlive = 20*time.Millisecond, time.Second
	}
	read, ingest := a.keys["acme/read"], a.keys["acme/ingest"]
	_, onB := openStream(t, b, read, "", "")
	_, onA := openStream(t, a, read, "", "")
	toA := storetest.Rec(1, "web", "in", "GET", "http://web/posted-to-a", 200)
	if _, resp := a.post(ingest, []*capture.Record{toA}); resp.StatusCode != 200 {
		t.Fatalf("post to a: %d", resp.StatusCode)
	}
	if _, it := nextRecord(t, onB); it.ID != toA.ID {
		t.Errorf("hub b streamed %s, want %s (posted to hub a)", it.ID, toA.ID)
	}
	toB := storetest.Rec(2, "web", "in", "GET", "http://web/posted-to-b", 200)
	if _, resp := b.post(ingest, []*capture.Record{toB}); resp.StatusCode != 200 {
		t.Fatalf("post to b: %d", resp.StatusCode)
	}
	for _, want := range []string{toA.ID, toB.ID} {
		if _, it := nextRecord(t, onA); it.ID != want {
			t.Errorf("hub a streamed %s, want %s", it.ID, want)
		}
	}
}
