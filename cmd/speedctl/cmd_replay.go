package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/hubclient"
	"github.com/tapwire/tapwire/internal/replay"
)

func init() { commands = append(commands, newReplayCmd) }

// replayOptions are the flags of replay.
type replayOptions struct {
	recordingFlags
	cfg        replay.Config
	timing     string
	transforms string
	failIf     []string
	conds      []replay.Condition
	report     string
	push       bool
	ingestKey  string
	caFile     string
	insecure   bool
	noGuard    bool
	noProgress bool
}

func newReplayCmd() *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:   "replay (--from PATH... | --snapshot ID...) --target URL [options]",
		Short: "Send a service's recorded inbound traffic to a build, compare the answers, and pass or fail",
		Long: `Replay sends every inbound request of a recording to --target (method, path and
query, headers without the hop-by-hop ones, Host set to the target, body), compares
each answer with the recorded one, prints a table per endpoint and exits 0 when
every assertion holds, 1 when one fails, 2 for bad usage or an unreachable target.

The recording (--from, repeatable): a file or directory in any form speedctl reads,
our JSONL (traffic export --format jsonl, the forwarder's directory sink), the
vendor's raw.jsonl, HAR, or the vendor's Markdown recordings; or a hub snapshot
(--snapshot ID, repeatable, read with the read key as traffic commands find it). Only inbound HTTP
records are sent; outbound ones are what a mock answers.

Target: http://HOST:PORT speaks HTTP/1.1 (gRPC calls go over cleartext HTTP/2),
h2c://HOST:PORT cleartext HTTP/2 for everything, https://HOST:PORT TLS with HTTP/2
when the target offers it (--ca FILE to trust a private CA).

Load: by default each recorded request is sent once by --vus 10 users, each
keeping the recorded order of the clients (--session) it is given. --rate R sends
R requests a second whatever the answers (open loop: latency counts from the
scheduled send time, so a slow target shows as slow, not as fewer requests).
--times N and --duration D loop the recording; --ramp D raises the users or the
rate from nothing; --timing recorded[xN] keeps the recorded gaps (N times faster).

Comparison: the status (and grpc-status), the --compare-header headers, and the
body: JSON field by field (key order and 1 vs 1.0 do not count), gRPC messages
field by field. Values that differ between recordings of one endpoint (ids,
timestamps, tokens) are noise, not differences; --ignore PATH adds fields
(body.a.b, $.items[*].id, header.date). The assertion status_match<100% always
holds; --fail-if adds more: status_match<100%, body_match<95%, p99>200ms,
errors>0, error_rate>1%, rps<500.

Transforms (--transforms FILE, YAML or JSON; docs/replay.md has examples): set or
delete headers, query parameters and JSON body fields; shift timestamps by the
recording's age; re-sign JWTs; chain values from live answers into later requests
(the token of a login, the id a POST created).

If none of the first 20 answers has the recorded status, the replay stops: the
target is not the service that was recorded (--no-guard to go on).

--push stores the report in the hub (--hub; with the ingest key, --ingest-key or
$SPEEDSCALE_API_KEY, as snapshot create finds it) and prints its address in the
hub's viewer, where each endpoint and each differing answer can be opened beside
its recording. A push that fails exits 2, after the table.`,
		Example: `  # the recording of orders, once, against a local build
  speedctl replay --from orders.jsonl --target http://localhost:8080

  # as a CI gate: bodies must match too, and p99 stay under 200 ms
  speedctl replay --from recorded/ --target http://localhost:8080 \
      --fail-if 'body_match<100%' --fail-if 'p99>200ms' --report replay.json

  # a load test shaped like production: 500 req/s for 5 minutes after a 30 s ramp
  speedctl replay --from week.jsonl --target https://staging.example.com \
      --rate 500 --duration 5m --ramp 30s --fail-if 'error_rate>0.1%'

  # the recorded pace, twice as fast, with fresh tokens and timestamps
  speedctl replay --from orders.har --target http://localhost:8080 \
      --timing recordedx2 --transforms transforms.yaml

  # a hub snapshot against a build, the report kept in the hub
  speedctl replay --snapshot snap_k2x7q4mzt6a3wbnf --target http://localhost:8080 --push`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.prepare(); err != nil {
				return usageError(err)
			}
			return o.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	o.recordingFlags.add(cmd)
	o.add(cmd.Flags())
	return cmd
}

// add adds the flags of what to send, how, and how to judge it: replay's and test's.
func (o *replayOptions) add(f *pflag.FlagSet) {
	f.StringVar(&o.cfg.Target, "target", "", "where to send: http://, h2c:// or https://HOST:PORT[/prefix]")
	f.IntVar(&o.cfg.VUs, "vus", 0, "virtual users sending at once (default 10); with --rate or --timing the most requests in flight (default 256)")
	f.Float64Var(&o.cfg.Rate, "rate", 0, "requests per second, open loop (default 0: as fast as the users' answers come)")
	f.DurationVar(&o.cfg.Duration, "duration", 0, "loop the recording for this long, e.g. 5m")
	f.IntVar(&o.cfg.Times, "times", 0, "loop the recording this many times (default 1)")
	f.DurationVar(&o.cfg.Ramp, "ramp", 0, "raise the users or the rate from nothing over this long")
	f.StringVar(&o.timing, "timing", "", "recorded: keep the recorded gaps between requests; recordedx2: twice as fast")
	f.StringVar(&o.cfg.Session, "session", "client", "what a recorded client is, whose order a user keeps: client (X-Forwarded-For, else the client IP), conn, header:NAME, none")
	f.StringVar(&o.transforms, "transforms", "", "a YAML or JSON `file` of transforms (docs/replay.md)")
	f.StringArrayVar(&o.cfg.Ignore, "ignore", nil, "a response field never compared: body.a.b, $.items[*].id, header.date (repeatable)")
	f.StringArrayVar(&o.cfg.CompareHeaders, "compare-header", nil, "a response header to compare (repeatable)")
	f.StringArrayVar(&o.failIf, "fail-if", nil, "fail when this holds: status_match<100%, body_match<95%, p99>200ms, errors>0 (repeatable, or comma-separated)")
	f.StringVar(&o.report, "report", "", "write the report as JSON to this `file`")
	f.BoolVar(&o.push, "push", false, "store the report in the hub (with the ingest key) and print its address in the viewer")
	f.StringVar(&o.ingestKey, "ingest-key", "", "an ingest key of the hub, for --push (default $"+ingestKeyKey+", else the config's "+ingestKeyKey+")")
	f.StringVar(&o.cfg.Service, "service", "", "replay this recorded service's records (when the recording has several)")
	f.DurationVar(&o.cfg.Timeout, "timeout", 30*time.Second, "the longest one request may take")
	f.StringVar(&o.caFile, "ca", "", "a PEM `file` of CA certificates the https target's certificate is checked against")
	f.BoolVar(&o.insecure, "insecure", false, "do not check the https target's certificate (a warning is printed)")
	f.BoolVar(&o.noGuard, "no-guard", false, "go on even when none of the first 20 answers has the recorded status")
	f.BoolVar(&o.noProgress, "no-progress", false, "no progress bar, even on a terminal")
}

func (o *replayOptions) prepare() error {
	if o.recordingFlags.empty() {
		return errors.New("no recording: give --from PATH (a file or directory of records) or --snapshot ID (a hub snapshot)")
	}
	if o.cfg.Target == "" {
		return errors.New("--target: give the URL to replay to, e.g. http://localhost:8080")
	}
	if o.timing != "" {
		f, err := parseTiming(o.timing)
		if err != nil {
			return err
		}
		o.cfg.Timing = f
	}
	for _, s := range o.failIf {
		for _, e := range strings.Split(s, ",") {
			c, err := replay.ParseCondition(e)
			if err != nil {
				return err
			}
			o.conds = append(o.conds, c)
		}
	}
	if o.noGuard {
		o.cfg.Guard = -1
	}
	if o.transforms != "" {
		t, err := replay.LoadTransforms(o.transforms)
		if err != nil {
			return err
		}
		o.cfg.Transforms = t
	}
	if o.caFile != "" || o.insecure {
		o.cfg.TLS = &tls.Config{InsecureSkipVerify: o.insecure}
		if o.caFile != "" {
			pem, err := os.ReadFile(o.caFile)
			if err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--ca %s: no PEM certificate in it", o.caFile)
			}
			o.cfg.TLS.RootCAs = pool
		}
	}
	return nil
}

// parseTiming reads --timing: recorded, or recordedxN (N times faster).
func parseTiming(s string) (float64, error) {
	rest, ok := strings.CutPrefix(s, "recorded")
	if !ok {
		return 0, fmt.Errorf("--timing %q: want recorded or recordedxN (N times faster)", s)
	}
	if rest == "" {
		return 1, nil
	}
	n, err := strconv.ParseFloat(strings.TrimPrefix(rest, "x"), 64)
	if err != nil || !strings.HasPrefix(rest, "x") || n <= 0 {
		return 0, fmt.Errorf("--timing %q: want recorded or recordedxN with N above 0, e.g. recordedx2", s)
	}
	return n, nil
}

// loadRecords reads every record of the --from paths and the --snapshot
// ids.
func (o *replayOptions) loadRecords(ctx context.Context) ([]*capture.Record, error) {
	srcs, err := o.recordingFlags.sources(ctx)
	if err != nil {
		return nil, err
	}
	return readSources(srcs, nil)
}

func (o *replayOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	pusher, err := o.pusher()
	if err != nil {
		return err
	}
	_, r, err := o.load(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Probe(ctx); err != nil {
		return &exitError{code: 2, err: err}
	}
	return o.replay(ctx, r, pusher, stdout, stderr)
}

// pusher is the hub client --push stores the report with (nil without
// --push), made before anything is sent so that a missing key fails first.
func (o *replayOptions) pusher() (*hubclient.Client, error) {
	if !o.push {
		return nil, nil
	}
	c, err := o.hubFlags.ingestClient(o.ingestKey)
	if err != nil {
		return nil, usageError(fmt.Errorf("--push: %w", err))
	}
	return c, nil
}

// load reads the recording and prepares the replay of its inbound requests; an error is bad usage (exit
// status 2). It returns the records too: test's mock answers with the outbound ones.
func (o *replayOptions) load(ctx context.Context) ([]*capture.Record, *replay.Replay, error) {
	recs, err := o.loadRecords(ctx)
	if err != nil {
		return nil, nil, usageError(err)
	}
	r, err := replay.New(o.cfg, recs)
	if err != nil {
		return nil, nil, usageError(err)
	}
	return recs, r, nil
}

// replay sends the requests to the target, which answers, prints the report on stdout, writes --report,
// stores it in the hub with pusher (if not nil), and returns an *exitError when an assertion fails or the
// run was cut short (exit status 1).
func (o *replayOptions) replay(ctx context.Context, r *replay.Replay, pusher *hubclient.Client, stdout, stderr io.Writer) error {
	if o.insecure {
		fmt.Fprintln(stderr, "warning: --insecure: the target's certificate is not checked")
	}
	sessions, users := r.Sessions()
	fmt.Fprintf(stderr, "replaying %d requests (%d endpoints, %d recorded clients on %d users) to %s\n",
		r.Requests(), r.Endpoints(), sessions, users, o.cfg.Target)
	for _, s := range r.Skipped() {
		fmt.Fprintf(stderr, "  left out: %s\n", s)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	done := make(chan struct{})
	finished := make(chan struct{})
	if !o.noProgress && isTerminal(stderr) {
		go func() {
			defer close(finished)
			o.progress(r, stderr, done)
		}()
	} else {
		close(finished)
	}
	rep, runErr := r.Run(ctx)
	close(done)
	<-finished

	failed := rep.Check(o.conds)
	if len(o.snapshots) > 0 {
		rep.Snapshot = o.snapshots[0]
		if len(o.snapshots) > 1 {
			rep.Snapshots = o.snapshots
		}
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if o.report != "" {
		if err := writeReport(o.report, rep); err != nil {
			return err
		}
	}
	if pusher != nil {
		if err := pushReport(ctx, pusher, rep, stdout); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--push: %w", reportPushHints.explain(err))}
		}
	}
	if errors.Is(runErr, replay.ErrWrongTarget) {
		return &exitError{code: 1, err: fmt.Errorf("%w: none of the first 20 answers of %s had the recorded status; is it the service that was recorded? (--no-guard goes on)", runErr, o.cfg.Target)}
	}
	if ctx.Err() != nil {
		return &exitError{code: 1, err: errors.New("interrupted: the report covers what was sent")}
	}
	if len(failed) > 0 {
		var what []string
		for _, a := range failed {
			what = append(what, fmt.Sprintf("%s (%s)", a.Expr, strconv.FormatFloat(a.Value, 'f', -1, 64)))
		}
		return &exitError{code: 1, err: fmt.Errorf("failed: %s", strings.Join(what, ", "))}
	}
	fmt.Fprintf(stdout, "passed: %d assertions hold\n", len(rep.Assertions))
	return nil
}

var reportPushHints = keyHints{
	key:      "the ingest key",
	on401:    "check --ingest-key or " + ingestKeyKey + "; it must be a live ingest key of the hub (`hub keys create -tenant T -role ingest`)",
	on403:    "replay --push writes with an ingest key (--ingest-key or " + ingestKeyKey + ", the forwarder's), not a read key",
	checkHub: hubHints.checkHub,
}

// pushReport stores rep in the hub and prints its address in the viewer.
func pushReport(ctx context.Context, c *hubclient.Client, rep *replay.Report, stdout io.Writer) error {
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		return err
	}
	rs, err := c.PushReport(ctx, b.Bytes())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "report %s: %s/#view=reports&report=%s\n", rs.ID, strings.TrimSuffix(c.String(), "/"), rs.ID)
	return nil
}

// progress draws a bar of the requests sent until done is closed.
func (o *replayOptions) progress(r *replay.Replay, w io.Writer, done <-chan struct{}) {
	bar := countBar(w, int64(r.Total()), "replaying", "req")
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		p := r.Progress()
		_ = bar.Set64(p.Answered + p.Errors)
		if p.Errors > 0 {
			bar.Describe(fmt.Sprintf("replaying (%d errors)", p.Errors))
		}
		select {
		case <-done:
			_ = bar.Finish()
			return
		case <-tick.C:
		}
	}
}

// exitError is an error with the exit status speedctl ends with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

// usageError marks err as bad usage: exit status 2.
func usageError(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &exitError{code: 2, err: err}
}
