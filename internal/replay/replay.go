// Package replay sends a service's recorded inbound requests to a target build at a chosen load (users, an
// open-loop rate, loops, a ramp, the recorded timing), with transforms for what must change, compares every
// answer with the recorded one (values that vary between recordings counted as noise), and reports.
package replay

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

// Config is a replay's settings. Zero values are the defaults named in each field's comment.
type Config struct {
	// Target is where the requests go: http://host:port (HTTP/1.1; gRPC calls over cleartext HTTP/2),
	// h2c://host:port (cleartext HTTP/2 with prior knowledge for every request) or https://host:port (TLS,
	// HTTP/2 when the target offers it). A path is a prefix of every request's path.
	Target string
	// VUs is how many virtual users send at once, each sending one request at a time. If zero, 10. With
	// Rate or Timing it is instead the most requests in flight at once; if zero then, 256.
	VUs int
	// Rate paces the requests open-loop at this many per second: send times are scheduled and do not wait
	// for answers, and latency is measured from the scheduled time. If zero, each user sends as fast as its
	// answers come (closed loop).
	Rate float64
	// Timing, when positive, keeps the recorded gaps between requests, divided by it (2: twice as fast).
	Timing float64
	// Duration loops the recording until it has passed (in-flight requests finish). If zero, the recording
	// is sent Times times.
	Duration time.Duration
	// Times loops the recording this many times. If zero, once (or, with Duration, as often as fits).
	Times int
	// Ramp raises the load linearly from nothing over this long: users start one by one, or the rate
	// climbs to Rate.
	Ramp time.Duration
	// Session tells which recorded requests belong to one client, whose order a user keeps: "client" (the
	// first X-Forwarded-For address, else the client's IP; the default), "conn" (the connection),
	// "header:NAME" (a header's value, such as a session cookie) or "none" (every request on its own).
	Session string
	// CompareHeaders names response headers compared besides status and body.
	CompareHeaders []string
	// Ignore lists response fields that are never compared (body.a.b, $.a[*].b, header.date).
	Ignore []string
	// Noise says which response fields vary by nature. If nil, a Learner learns them from the records.
	Noise Noise
	// Transforms change the requests before they are sent; nil changes nothing.
	Transforms *Transforms
	// Timeout bounds one request, from sending to the last byte of the answer. If zero, 30s.
	Timeout time.Duration
	// TLS is the client's TLS configuration for an https target. If nil, the system's roots.
	TLS *tls.Config
	// Guard is how many first answers must include one with the recorded status, or the replay stops with
	// ErrWrongTarget (a recording replayed against another service). If zero, 20; negative turns it off.
	Guard int
	// Service picks the recorded service whose records are replayed, when the recording holds several.
	Service string
}

// Replay is one run of a recording against a target. New prepares it; Run runs it once.
type Replay struct {
	cfg    Config
	base   string // scheme://host[:port][/prefix] of the requests
	h1, h2 http.RoundTripper
	items  []*item      // in recorded order
	users  [][]*item    // closed loop: each user's requests, sessions one after another
	eps    []*endpoint  // in order of first recording
	tf     *transformer // nil without transforms
	noise  Noise
	skip   []string // why records were left out, one line per kind

	sent, answered, failed atomic.Int64

	mu    sync.Mutex // guards what follows
	hist  histogram
	stats stats
	first time.Time // first send
	last  time.Time // last answer
	stop  context.CancelCauseFunc
	kept  int // bytes of live answers kept (Answer.Live), at most MaxLiveBytes
}

// stats are the counts of a replay or of one endpoint.
type stats struct {
	sent, answered, errors                   int
	statusMatched, bodyCompared, bodyMatched int
	headersCompared, headersMatched          int
}

// endpoint is the requests of one method and path template.
type endpoint struct {
	name     string
	stats    stats
	hist     histogram
	diffs    int
	examples []Example
	errs     []string
}

// maxExamples bounds the examples of differences kept per endpoint.
const maxExamples = 3

// item is one recorded request, prepared to be sent.
type item struct {
	rec      *capture.Record
	ep       *endpoint
	method   string
	path     string // as recorded, escaped
	rawQuery string
	header   http.Header
	body     []byte
	grpc     bool
	session  string
	nkey     string        // noiseKey
	offset   time.Duration // since the recording's first request

	status     int  // recorded
	grpcStatus *int // recorded, for gRPC
	resHeaders capture.Headers
	resBody    []byte
	answer     *Answer // its answer in the report; guarded by Replay.mu
	resEnc     string
	resCompare bool // the recorded body is whole
	resDoc     any  // gRPC: the recorded messages as a document
}

// Progress is what a running replay has done so far.
type Progress struct {
	Sent, Answered, Errors int64
}

// New prepares a replay of the inbound HTTP records of recs against cfg.Target. It sends nothing.
func New(cfg Config, recs []*capture.Record) (*Replay, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &Replay{cfg: cfg}
	u, err := url.Parse(cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("%w: --target %q: %w", ErrUsage, cfg.Target, err)
	}
	if err := r.transports(u); err != nil {
		return nil, err
	}
	if err := r.prepare(recs); err != nil {
		return nil, err
	}
	if cfg.Transforms != nil {
		r.tf = newTransformer(cfg.Transforms, r.items)
	}
	return r, nil
}

func (c *Config) setDefaults() error {
	scheduled := c.Rate > 0 || c.Timing > 0
	switch {
	case c.VUs < 0:
		return fmt.Errorf("%w: --vus %d: want 1 or more", ErrUsage, c.VUs)
	case c.Rate < 0:
		return fmt.Errorf("%w: --rate %g: want more than 0", ErrUsage, c.Rate)
	case c.Timing < 0:
		return fmt.Errorf("%w: --timing recordedx%g: want a factor above 0", ErrUsage, c.Timing)
	case c.Rate > 0 && c.Timing > 0:
		return fmt.Errorf("%w: --rate and --timing recorded both set the send times: choose one", ErrUsage)
	case c.Times < 0:
		return fmt.Errorf("%w: --times %d: want 1 or more", ErrUsage, c.Times)
	case c.Duration < 0, c.Ramp < 0, c.Timeout < 0:
		return fmt.Errorf("%w: a negative duration", ErrUsage)
	case c.Ramp > 0 && c.Timing > 0:
		return fmt.Errorf("%w: --ramp shapes users or a rate, not the recorded timing", ErrUsage)
	}
	if c.VUs == 0 {
		c.VUs = 10
		if scheduled {
			c.VUs = 256
		}
	}
	if c.Times == 0 && c.Duration == 0 {
		c.Times = 1
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Guard == 0 {
		c.Guard = 20
	}
	switch s := c.Session; {
	case s == "":
		c.Session = "client"
	case s == "client", s == "conn", s == "none":
	case strings.HasPrefix(s, "header:") && len(s) > len("header:"):
	default:
		return fmt.Errorf("%w: --session %q: want client, conn, header:NAME or none", ErrUsage, s)
	}
	return nil
}

// transports makes the clients for the target's scheme.
func (r *Replay) transports(u *url.URL) error {
	if u.Host == "" {
		return fmt.Errorf("%w: --target %q: want a URL such as http://localhost:8080", ErrUsage, r.cfg.Target)
	}
	newTr := func(p func(*http.Protocols)) *http.Transport {
		tr := &http.Transport{
			Proxy:               nil, // the target, never a proxy from the environment
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: r.cfg.VUs + 16,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true, // bodies arrive as the recording has them
			TLSClientConfig:     r.cfg.TLS,
			Protocols:           new(http.Protocols),
		}
		p(tr.Protocols)
		return tr
	}
	h2c := func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }
	switch u.Scheme {
	case "http":
		r.h1 = newTr(func(p *http.Protocols) { p.SetHTTP1(true) })
		r.h2 = newTr(h2c)
	case "h2c":
		r.h1 = newTr(h2c)
		r.h2 = r.h1
		u.Scheme = "http"
	case "https":
		r.h1 = newTr(func(p *http.Protocols) { p.SetHTTP1(true); p.SetHTTP2(true) })
		r.h2 = newTr(func(p *http.Protocols) { p.SetHTTP2(true) })
	default:
		return fmt.Errorf("%w: --target %q: the scheme must be http, h2c or https", ErrUsage, r.cfg.Target)
	}
	r.base = u.Scheme + "://" + u.Host + strings.TrimSuffix(u.EscapedPath(), "/")
	return nil
}

// Close releases the idle connections to the target.
func (r *Replay) Close() {
	for _, t := range []http.RoundTripper{r.h1, r.h2} {
		if tr, ok := t.(*http.Transport); ok {
			tr.CloseIdleConnections()
		}
	}
}

// Requests is how many recorded requests one pass sends.
func (r *Replay) Requests() int { return len(r.items) }

// Total is how many requests the whole replay sends, or -1 when a duration decides it.
func (r *Replay) Total() int {
	if r.cfg.Duration > 0 {
		return -1
	}
	return len(r.items) * r.cfg.Times
}

// Skipped says which records were left out and why, one line per reason.
func (r *Replay) Skipped() []string { return r.skip }

// Endpoints is how many endpoints the recording has.
func (r *Replay) Endpoints() int { return len(r.eps) }

// Sessions is how many recorded client sessions the requests fall in, and how many users send them.
func (r *Replay) Sessions() (sessions, users int) {
	seen := map[string]bool{}
	for _, it := range r.items {
		seen[it.session] = true
	}
	return len(seen), len(r.users)
}

// Progress returns the counts so far; safe to call while Run runs.
func (r *Replay) Progress() Progress {
	return Progress{Sent: r.sent.Load(), Answered: r.answered.Load(), Errors: r.failed.Load()}
}

// Probe checks that the target accepts connections, so that an unreachable target is told apart from a
// target that answers wrongly.
func (r *Replay) Probe(ctx context.Context) error {
	u, _ := url.Parse(r.base)
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, r.cfg.Target, err)
	}
	return c.Close()
}

// Run sends the requests as the config says, and returns the report. It returns early, with the report so
// far, when ctx ends. The error is ErrWrongTarget when the guard stopped it.
func (r *Replay) Run(ctx context.Context) (*Report, error) {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r.mu.Lock()
	r.stop = stop
	r.mu.Unlock()
	start := time.Now()
	var deadline time.Time
	if r.cfg.Duration > 0 {
		deadline = start.Add(r.cfg.Duration)
	}
	if r.cfg.Rate > 0 || r.cfg.Timing > 0 {
		r.runScheduled(ctx, start, deadline)
	} else {
		r.runUsers(ctx, start, deadline)
	}
	var err error
	if errors.Is(context.Cause(ctx), ErrWrongTarget) {
		err = ErrWrongTarget
	}
	return r.report(start), err
}

// runUsers is the closed loop: each user sends its requests one after another, Times times or until the
// deadline; user k starts k/VUs of the ramp late.
func (r *Replay) runUsers(ctx context.Context, start, deadline time.Time) {
	var wg sync.WaitGroup
	for k, list := range r.users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.cfg.Ramp > 0 {
				delay := time.Duration(int64(r.cfg.Ramp) * int64(k) / int64(len(r.users)))
				if !sleepUntil(ctx, start.Add(delay)) {
					return
				}
			}
			for loop := 0; r.cfg.Times == 0 || loop < r.cfg.Times; loop++ {
				for _, it := range list {
					if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
						return
					}
					r.send(ctx, it, time.Time{})
				}
			}
		}()
	}
	wg.Wait()
}

// job is one scheduled send.
type job struct {
	it    *item
	at    time.Time
	after chan struct{} // closed when the previous request of the session is answered; nil if none
	done  chan struct{} // closed when this one is; nil if no later request waits
}

// runScheduled is the open loop: a dispatcher hands each request to a free worker at its send time, never
// waiting for answers, so a slow target makes requests late (which their latency, measured from the send
// time, shows) but never fewer. A request waits for the answer to the previous one of its session.
func (r *Replay) runScheduled(ctx context.Context, start, deadline time.Time) {
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range r.cfg.VUs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if j.after != nil {
					select {
					case <-j.after:
					case <-ctx.Done():
					}
				}
				if ctx.Err() == nil {
					r.send(ctx, j.it, j.at)
				}
				if j.done != nil {
					close(j.done)
				}
			}
		}()
	}
	defer func() { close(jobs); wg.Wait() }()

	sched := newSchedule(r.cfg, r.items)
	ordered := r.cfg.Session != "none"
	prev := map[string]chan struct{}{} // session → its last job's done
	n := len(r.items)
	for i := 0; r.cfg.Times == 0 || i < n*r.cfg.Times; i++ {
		at := start.Add(sched.at(i))
		if !deadline.IsZero() && !at.Before(deadline) {
			return
		}
		if !sleepUntil(ctx, at) {
			return
		}
		j := job{it: r.items[i%n], at: at}
		if ordered {
			j.after = prev[j.it.session]
			j.done = make(chan struct{})
			prev[j.it.session] = j.done
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			return
		}
	}
}

// schedule gives the send time of the i-th request, from the start.
type schedule struct {
	rate   float64         // per second; 0 with timing
	ramp   float64         // seconds
	timing float64         // the speed-up of recorded timing
	offs   []time.Duration // recorded offsets, with timing
	loop   time.Duration   // one pass of the recording, with timing
}

func newSchedule(cfg Config, items []*item) schedule {
	s := schedule{rate: cfg.Rate, ramp: cfg.Ramp.Seconds(), timing: cfg.Timing}
	if cfg.Timing > 0 {
		s.offs = make([]time.Duration, len(items))
		for i, it := range items {
			s.offs[i] = time.Duration(float64(it.offset) / cfg.Timing)
		}
		span := s.offs[len(s.offs)-1]
		gap := time.Second
		if len(items) > 1 {
			gap = span / time.Duration(len(items)-1) // the mean gap, between the last of a pass and the next
		}
		s.loop = span + gap
	}
	return s
}

// at returns the i-th send time. With a ramp the rate grows linearly from 0 to rate over the ramp, so the
// count sent by t ≤ ramp is rate·t²/(2·ramp); after it, rate per second.
func (s schedule) at(i int) time.Duration {
	if s.timing > 0 {
		n := len(s.offs)
		return time.Duration(i/n)*s.loop + s.offs[i%n]
	}
	x := float64(i)
	rampCount := s.rate * s.ramp / 2
	var sec float64
	if x < rampCount {
		sec = math.Sqrt(2 * x * s.ramp / s.rate)
	} else {
		sec = s.ramp + (x-rampCount)/s.rate
	}
	return time.Duration(sec * float64(time.Second))
}

// sleepUntil waits until t or the end of ctx; it reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// prepare turns the inbound HTTP records into items, in recorded order, grouped by endpoint and session.
func (r *Replay) prepare(recs []*capture.Record) error {
	services := map[string]int{}
	var in []*capture.Record
	skipped := map[string]int{}
	for _, rec := range recs {
		switch {
		case rec.Direction != capture.DirIn:
			skipped["outbound (what mocks answer)"]++
			continue
		case rec.Kind != capture.KindHTTP || rec.HTTP == nil:
			skipped["not HTTP"]++
			continue
		case rec.HTTP.Res == nil:
			skipped["without a recorded response"]++
			continue
		case r.cfg.Service != "" && rec.Labels.Service != r.cfg.Service:
			skipped["of another service"]++
			continue
		}
		services[rec.Labels.Service]++
		in = append(in, rec)
	}
	if len(services) > 1 {
		var names []string
		for s, n := range services {
			names = append(names, fmt.Sprintf("%q (%d)", s, n))
		}
		slices.Sort(names)
		return fmt.Errorf("%w: the recording holds inbound requests of %d services, %s: choose one with --service", ErrUsage, len(names), strings.Join(names, ", "))
	}
	slices.SortStableFunc(in, func(a, b *capture.Record) int { return a.Start.Compare(b.Start) })
	noise := r.cfg.Noise
	var learner *Learner
	if noise == nil {
		var err error
		if learner, err = NewLearner(r.cfg.Ignore); err != nil {
			return err
		}
		noise = learner
	}
	r.noise = noise
	byName := map[string]*endpoint{}
	for _, rec := range in {
		it, why := r.newItem(rec)
		if why != "" {
			skipped[why]++
			continue
		}
		name := endpointName(it.method, it.path, it.grpc)
		ep := byName[name]
		if ep == nil {
			ep = &endpoint{name: name}
			byName[name] = ep
			r.eps = append(r.eps, ep)
		}
		it.ep = ep
		it.nkey = it.noiseKey()
		if len(r.items) > 0 {
			it.offset = rec.Start.Sub(r.items[0].rec.Start)
		}
		r.items = append(r.items, it)
		if learner != nil {
			learner.Observe(it.nkey, rec)
		}
	}
	for why, n := range skipped {
		r.skip = append(r.skip, fmt.Sprintf("%d %s", n, why))
	}
	slices.Sort(r.skip)
	if len(r.items) == 0 {
		return fmt.Errorf("%w: no inbound HTTP request to replay among %d records", ErrUsage, len(recs))
	}
	r.assignUsers()
	return nil
}

// assignUsers gives each session to the user with the fewest requests so far, sessions in order of their
// first request.
func (r *Replay) assignUsers() {
	var order []string
	bySession := map[string][]*item{}
	for _, it := range r.items {
		if _, ok := bySession[it.session]; !ok {
			order = append(order, it.session)
		}
		bySession[it.session] = append(bySession[it.session], it)
	}
	n := min(r.cfg.VUs, len(order))
	r.users = make([][]*item, n)
	for _, s := range order {
		k := 0
		for u := range r.users {
			if len(r.users[u]) < len(r.users[k]) {
				k = u
			}
		}
		r.users[k] = append(r.users[k], bySession[s]...)
	}
}

// hopHeaders are not forwarded: they are about one connection, or set again by the client.
var hopHeaders = map[string]bool{
	"connection": true, "proxy-connection": true, "keep-alive": true, "transfer-encoding": true,
	"upgrade": true, "proxy-authorization": true, "proxy-authenticate": true, "trailer": true,
	"content-length": true, "host": true, "http2-settings": true,
}

// newItem prepares rec's request; why says why it cannot be replayed.
func (r *Replay) newItem(rec *capture.Record) (it *item, why string) {
	req, res := &rec.HTTP.Req, rec.HTTP.Res
	u, err := url.Parse(req.URL)
	if err != nil {
		return nil, "with a URL that does not parse"
	}
	it = &item{
		rec:        rec,
		method:     req.Method,
		path:       u.EscapedPath(),
		rawQuery:   u.RawQuery,
		header:     make(http.Header, len(req.Headers)),
		grpc:       isGRPC(req.Headers),
		status:     res.Status,
		resHeaders: res.Headers,
		resEnc:     res.Headers.Get("Content-Encoding"),
	}
	if it.path == "" {
		it.path = "/"
	}
	for _, h := range req.Headers {
		name := strings.ToLower(h.Name)
		if hopHeaders[name] || strings.HasPrefix(name, ":") || (name == "te" && !strings.EqualFold(h.Value, "trailers")) {
			continue
		}
		k := http.CanonicalHeaderKey(h.Name)
		it.header[k] = append(it.header[k], h.Value)
	}
	if it.grpc {
		body, ok := grpcBody(rec.HTTP.Messages, true)
		if !ok || rec.HTTP.MessagesTruncated {
			return nil, "gRPC calls whose request messages were not captured whole"
		}
		it.body = body
		if rec.HTTP.GRPC != nil {
			it.grpcStatus = rec.HTTP.GRPC.Status
		}
		it.resDoc, it.resCompare = recordedGRPCDoc(rec.HTTP.Messages)
	} else {
		if req.Body.Truncated {
			return nil, "with a request body cut at the capture cap"
		}
		it.body = req.Body.Data
		it.resBody, it.resCompare = res.Body.Data, !res.Body.Truncated
	}
	it.session = r.sessionOf(rec)
	return it, ""
}

// noiseKey is what noise is learned and asked by: the request (method, path and query) and the recorded
// status. Recordings of one request that answer differently show what varies by nature (the id a POST made,
// a timestamp); recordings of one endpoint template do not (/orders/1 and /orders/2 rightly differ), nor do
// answers of different statuses.
func (it *item) noiseKey() string {
	return it.method + " " + it.path + query(it.rawQuery) + " " + statusText(it.status, it.grpcStatus, it.grpc)
}

// sessionOf returns the recorded client session of rec, by the Session setting.
func (r *Replay) sessionOf(rec *capture.Record) string {
	s := r.cfg.Session
	switch {
	case s == "none":
		return rec.ID
	case s == "conn":
		return cmp.Or(rec.Net.ConnID, rec.Net.ClientAddr, rec.ID)
	case strings.HasPrefix(s, "header:"):
		name := strings.TrimPrefix(s, "header:")
		if v := rec.HTTP.Req.Headers.Get(name); v != "" {
			return "h:" + v
		}
		return "none"
	}
	if xff := rec.HTTP.Req.Headers.Get("X-Forwarded-For"); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		return "ip:" + strings.TrimSpace(first)
	}
	if host, _, err := net.SplitHostPort(rec.Net.ClientAddr); err == nil {
		return "ip:" + host
	}
	return cmp.Or(rec.Net.ClientAddr, "none")
}

// endpointName is METHOD and the path with its identifiers (numbers, UUIDs, long hex or mixed tokens) as {}.
func endpointName(method, path string, grpc bool) string {
	if grpc {
		return "gRPC " + path
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if isIdentifier(s) {
			segs[i] = "{}"
		}
	}
	return method + " " + strings.Join(segs, "/")
}

// isIdentifier reports whether a path segment names one of many: all digits, a UUID, or a long run of hex.
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	digits, hex := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
			hex++
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			hex++
		case c == '-':
		default:
			return false
		}
	}
	return digits == len(s) || (hex >= 16 && digits > 0)
}
