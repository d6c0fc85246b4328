package replay

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tapwire/tapwire/internal/content"
)

// maxLiveBody bounds the bytes of a live answer read for the comparison; the rest is read and dropped.
const maxLiveBody = 16 << 20

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// live is what the target answered.
type live struct {
	status     int
	grpcStatus *int
	header     http.Header
	body       []byte
	err        error
}

// send sends one request, reads the answer, compares it and counts it. at is its scheduled send time (the
// start of its latency); zero in the closed loop, where latency starts when it is sent.
func (r *Replay) send(ctx context.Context, it *item, at time.Time) {
	method, path, rawQuery, header, body := it.method, it.path, it.rawQuery, it.header, it.body
	if r.tf != nil {
		path, rawQuery, header, body = r.tf.apply(it)
	}
	u := r.base + path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		r.count(it, at, time.Now(), live{err: err})
		return
	}
	req.Header = header
	rt := r.h1
	if it.grpc {
		rt = r.h2
	}
	start := time.Now()
	if at.IsZero() {
		at = start
	}
	r.sent.Add(1)
	r.mu.Lock()
	if r.first.IsZero() {
		r.first = start
	}
	r.mu.Unlock()
	res, err := rt.RoundTrip(req)
	if err != nil {
		r.count(it, at, time.Now(), live{err: err})
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(res.Body, maxLiveBody))
	if err == nil {
		_, err = io.Copy(io.Discard, res.Body)
	}
	res.Body.Close()
	end := time.Now()
	lv := live{status: res.StatusCode, header: res.Header, body: buf.Bytes(), err: err}
	if it.grpc {
		lv.grpcStatus = grpcStatus(res)
	}
	if r.tf != nil && err == nil {
		r.tf.learn(it, res.Header, lv.body) // before the comparison, which counts chained values as equal
	}
	r.count(it, at, end, lv)
	if buf.Cap() <= 1<<20 {
		bufPool.Put(buf) // nothing holds buf's bytes after count: examples are copies
	}
}

// grpcStatus is the grpc-status of an answer: from the trailers, or the headers of a trailers-only answer.
func grpcStatus(res *http.Response) *int {
	v := res.Trailer.Get("Grpc-Status")
	if v == "" {
		v = res.Header.Get("Grpc-Status")
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil
	}
	return &n
}

// count compares an answer with the recording and adds it to the counts.
func (r *Replay) count(it *item, at, end time.Time, lv live) {
	var ex *Example
	statusOK, bodyOK, headersOK := false, false, true
	var diffs []FieldDiff
	if lv.err == nil {
		noisy := func(f string) bool { return r.noise.Noisy(it.nkey, f) }
		// A difference does not count when the field is noise, when both values are made afresh (UUIDs,
		// timestamps), or when the live value is what chaining put in place of the recorded one.
		skip := func(d FieldDiff) bool {
			return noisy(d.Field) || sameShape(d.Recorded, d.Live) || (r.tf != nil && r.tf.chained(d.Recorded, d.Live))
		}
		statusOK = lv.status == it.status && (!it.grpc || eqIntPtr(lv.grpcStatus, it.grpcStatus))
		if !statusOK && !noisy("status") {
			diffs = append(diffs, FieldDiff{"status", statusText(it.status, it.grpcStatus, it.grpc), statusText(lv.status, lv.grpcStatus, it.grpc)})
		} else {
			statusOK = true
		}
		for _, name := range r.cfg.CompareHeaders {
			f := "header." + strings.ToLower(name)
			rv := strings.Join(it.resHeaders.Values(name), ", ")
			lvv := strings.Join(lv.header.Values(name), ", ")
			if rv != lvv && !noisy(f) {
				headersOK = false
				diffs = append(diffs, FieldDiff{f, rv, lvv})
			}
		}
		if it.resCompare {
			var bd []FieldDiff
			if it.grpc {
				msgs, comp := grpcMessages(lv.body)
				diffJSON(it.resDoc, grpcDoc(msgs, comp), "body", func(d FieldDiff) {
					if len(bd) < maxDiffs && !skip(d) {
						bd = append(bd, d)
					}
				})
			} else {
				bd = compareBody(it.resBody, it.resEnc, lv.body, lv.header.Get("Content-Encoding"), skip)
			}
			bodyOK = len(bd) == 0
			diffs = append(diffs, bd...)
		}
		if len(diffs) > 0 {
			ex = &Example{Record: it.rec.ID, Request: it.method + " " + it.path + query(it.rawQuery), Fields: diffs,
				Recorded: Side{Status: it.status}, Live: Side{Status: lv.status}}
			if !bodyOK {
				ex.Recorded.Body = short(string(it.resBody))
				ex.Live.Body = short(string(lv.body))
			}
		}
	}
	lat := end.Sub(at).Microseconds()

	if lv.err != nil {
		r.failed.Add(1)
	} else {
		r.answered.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ep := it.ep
	for _, s := range []*stats{&r.stats, &ep.stats} {
		s.sent++
		if lv.err != nil {
			s.errors++
			continue
		}
		s.answered++
		if statusOK {
			s.statusMatched++
		}
		if it.resCompare {
			s.bodyCompared++
			if bodyOK {
				s.bodyMatched++
			}
		}
		if len(r.cfg.CompareHeaders) > 0 {
			s.headersCompared++
			if headersOK {
				s.headersMatched++
			}
		}
	}
	if lv.err != nil {
		if len(ep.errs) < maxExamples {
			ep.errs = append(ep.errs, lv.err.Error())
		}
	} else {
		r.hist.add(lat)
		ep.hist.add(lat)
	}
	if end.After(r.last) {
		r.last = end
	}
	r.keepAnswer(it, lv, statusOK, bodyOK, diffs)
	if ex != nil {
		ep.diffs++
		if len(ep.examples) < maxExamples {
			ep.examples = append(ep.examples, *ex)
		}
	}
	if g := r.cfg.Guard; g > 0 && r.stats.answered == g && r.stats.statusMatched == 0 && r.stop != nil {
		r.stop(ErrWrongTarget)
	}
}

func eqIntPtr(a, b *int) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func statusText(status int, grpc *int, isGRPC bool) string {
	s := strconv.Itoa(status)
	if isGRPC {
		if grpc == nil {
			return s + " grpc-status (none)"
		}
		return s + " grpc-status " + strconv.Itoa(*grpc)
	}
	return s
}

func query(raw string) string {
	if raw == "" {
		return ""
	}
	return "?" + raw
}

// keepAnswer sets the item's answer in the report: its first, or the first that differed. The live side
// of one that differed is kept within MaxLiveBody and what is left of MaxLiveBytes. r.mu is held.
func (r *Replay) keepAnswer(it *item, lv live, statusOK, bodyOK bool, diffs []FieldDiff) {
	differs := lv.err != nil || len(diffs) > 0
	if it.answer != nil && (it.answer.Error != "" || it.answer.Fields != nil || !differs) {
		return
	}
	a := &Answer{Record: it.rec.ID, Endpoint: it.ep.name, Request: it.method + " " + it.path + query(it.rawQuery),
		Status: lv.status, StatusMatched: statusOK}
	if lv.err != nil {
		a.Error = lv.err.Error()
		it.answer = a
		return
	}
	if it.resCompare {
		a.BodyMatched = &bodyOK
	}
	if len(diffs) > 0 {
		a.Fields = diffs
		a.Live = r.keepLive(lv)
	}
	it.answer = a
}

// keepLive returns the live side of an answer, bounded. r.mu is held.
func (r *Replay) keepLive(lv live) *LiveAnswer {
	la := &LiveAnswer{Headers: make(map[string][]string, len(lv.header))}
	for k, vs := range lv.header {
		n := len(k)
		for _, v := range vs {
			n += len(v)
		}
		if r.kept+n > MaxLiveBytes {
			continue
		}
		r.kept += n
		la.Headers[k] = vs
	}
	body := lv.body
	if enc := lv.header.Get("Content-Encoding"); enc != "" {
		if b, err := content.Decode(enc, lv.body, maxLearnBody); err == nil {
			body = b
		}
	}
	la.BodySize = len(body)
	keep := min(len(body), MaxLiveBody, max(0, MaxLiveBytes-r.kept))
	if keep < len(body) {
		la.BodyCut = true
		// Cut at a rune's start, so that text stays text.
		for keep > 0 && keep < len(body) && !utf8.RuneStart(body[keep]) {
			keep--
		}
	}
	b := body[:keep]
	if utf8.Valid(b) {
		la.Body = string(b)
	} else {
		la.Body, la.BodyBase64 = base64.StdEncoding.EncodeToString(b), true
	}
	r.kept += len(la.Body)
	return la
}
