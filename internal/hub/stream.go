package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/store"
)

// The live stream (GET /api/v1/stream): each connection polls the store
// for what arrived after its cursor every streamPoll, sends a comment
// every streamKeepAlive that nothing else was sent, and ends after
// streamMaxAge (the browser's EventSource, or speedctl, reconnects with
// Last-Event-ID and loses nothing). At most maxStreams are open at once;
// one more is refused with 503. A connection holds one page of at most
// streamPage records at a time.
const (
	streamPoll      = 500 * time.Millisecond
	streamKeepAlive = 15 * time.Second
	streamMaxAge    = 30 * time.Minute
	streamPage      = 100
	maxStreams      = 256
	// streamWrite bounds each write to a stream's client (the server's
	// WriteTimeout, meant for one answer, is lifted for a stream).
	streamWrite = 30 * time.Second
)

// parseAfter reads an arrival cursor: a seq (0 or more), or "end" for the
// tenant's latest (-1 to the store). def is the value of an empty s.
func parseAfter(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	if s == "end" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "after=%q: want a record's seq (0 or more) or end", s)
	}
	return n, nil
}

// arrivalFilter is the filter of the arrivals and the stream: the list's,
// without snapshot (a snapshot's records have no arrival order).
func (s *Server) arrivalFilter(r *http.Request, key store.Key) (store.Filter, error) {
	if r.URL.Query().Get("snapshot") != "" {
		return store.Filter{}, errorf(http.StatusBadRequest, "snapshot: a snapshot's records have no arrival order; list them")
	}
	return s.parseFilter(r, key, s.now())
}

// arrivals answers GET /api/v1/records/arrivals: the records that arrived
// after the cursor, in arrival order.
func (s *Server) arrivals(r *http.Request, key store.Key) (any, error) {
	f, err := s.arrivalFilter(r, key)
	if err != nil {
		return nil, err
	}
	limit, err := parseLimit(r, store.DefaultLimit, store.MaxLimit)
	if err != nil {
		return nil, err
	}
	after, err := parseAfter(r.URL.Query().Get("after"), 0)
	if err != nil {
		return nil, err
	}
	items, next, err := s.store.Since(r.Context(), key.Tenant, f, after, limit)
	if err != nil {
		return nil, err
	}
	return apitype.Arrivals{Records: items, Next: next}, nil
}

// handleStream answers GET /api/v1/stream with server-sent events: one
// event "record" a record as it arrives (its id the record's seq, its data
// the record's summary as in the list, with seq), from the cursor of
// Last-Event-ID, else of the parameter after, else from now.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	key, err := s.readKey(r)
	var f store.Filter
	var after int64
	if err == nil {
		f, err = s.arrivalFilter(r, key)
	}
	if err == nil {
		if id := r.Header.Get("Last-Event-ID"); id != "" {
			after, err = parseAfter(id, -1)
		} else {
			after, err = parseAfter(r.URL.Query().Get("after"), -1)
		}
	}
	if err == nil && s.closing.Load() {
		err = errorf(http.StatusServiceUnavailable, "hub is shutting down")
	}
	if err == nil {
		select {
		case s.streams <- struct{}{}:
			defer func() { <-s.streams }()
		default:
			err = errorf(http.StatusServiceUnavailable, "too many open streams (%d); try again later", maxStreams)
		}
	}
	ctx := r.Context()
	if err == nil && after < 0 {
		_, after, err = s.store.Since(ctx, key.Tenant, f, -1, 0)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no") // a proxy in front must not hold events
	w.WriteHeader(http.StatusOK)
	// send writes b and flushes it within streamWrite.
	send := func(b []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(streamWrite)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// The first line: how long the client waits before it reconnects, and
	// the cursor it starts from (as a comment).
	if send(fmt.Appendf(nil, "retry: 1000\n: after %d\n\n", after)) != nil {
		return
	}
	end := time.NewTimer(streamMaxAge)
	defer end.Stop()
	poll := time.NewTicker(s.streamPoll)
	defer poll.Stop()
	lastSent := time.Now()
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			return
		case <-poll.C:
		}
		if s.closing.Load() {
			return
		}
		for {
			items, next, err := s.store.Since(ctx, key.Tenant, f, after, streamPage)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("stream", "tenant", key.Tenant, "after", after, "err", err.Error())
				}
				return // the client reconnects from the last id it saw
			}
			if len(items) == 0 {
				break
			}
			buf = buf[:0]
			for i := range items {
				data, err := json.Marshal(&items[i])
				if err != nil {
					s.log.Error("stream: encode", "err", err.Error())
					return
				}
				buf = fmt.Appendf(buf, "id: %d\nevent: record\ndata: %s\n\n", items[i].Seq, data)
			}
			if send(buf) != nil {
				return
			}
			lastSent, after = time.Now(), next
			if len(items) < streamPage {
				break
			}
		}
		if time.Since(lastSent) >= s.keepAlive {
			if send([]byte(": keep-alive\n\n")) != nil {
				return
			}
			lastSent = time.Now()
		}
	}
}
