package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/mock"
	"github.com/tapwire/tapwire/internal/replay"
	"github.com/tapwire/tapwire/internal/service"
)

func init() { commands = append(commands, newTestCmd) }

// testOptions are the flags of test: replay's, how the mock answers, and the app's command.
type testOptions struct {
	replayOptions
	mockFlags
	mockReport string
	wait       time.Duration
	grace      time.Duration
	child      []string
}

// appTail is how much of the app's last output an error shows.
const appTail = 4 << 10

func newTestCmd() *cobra.Command {
	var o testOptions
	cmd := &cobra.Command{
		Use:   "test (--from PATH... | --snapshot ID...) --target URL [replay options] -- COMMAND ARGS...",
		Short: "Run a build on the mocks of a recording, replay its inbound traffic, and pass or fail: one line in CI",
		Long: `speedctl test is speedctl mock and speedctl replay together, for CI: it runs
your build with its dependencies answered from a recording, sends it the
recording's inbound requests, compares every answer with the recorded one,
and exits 0 when every assertion holds, 1 when one fails, 2 for bad usage or
an app that never answers.

In order:
  1. it reads the recording (--from, --snapshot: the same sources as mock
     and replay) and starts a mock of its outbound records on a free
     loopback port, unwrapping TLS with speedctl's CA (--ca-dir), as mock does;
  2. it runs COMMAND, the app, with HTTP_PROXY, HTTPS_PROXY, SSL_CERT_FILE,
     REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS, CURL_CA_BUNDLE and
     GRPC_DEFAULT_SSL_ROOTS_FILE_PATH pointing at the mock, its output
     passed to standard error;
  3. it waits until --target answers (at most --wait); if the app exits
     first, it says so with the app's exit status and its last output;
  4. it replays the recording's inbound requests to --target, as replay
     does, with every replay option (--fail-if, --report, --rate, ...), and
     prints the report on standard output;
  5. it stops the app (SIGTERM to its process group, SIGKILL after --grace)
     and the mock, and prints what the mock answered: a table per endpoint
     and every miss with the closest recording and what differed.

The app must listen where --target points, and make its outbound calls
through HTTP_PROXY/HTTPS_PROXY (most HTTP clients do; Go's skips localhost
and 127.0.0.1: give such a client the proxy explicitly). The recording
needs both directions: the inbound requests to replay, and the outbound
calls the app makes while answering them (export without --direction).`,
		Example: `  # a CI job's step: the orders service, built, on its recording
  speedctl test --from orders.jsonl --target http://127.0.0.1:8080 -- ./bin/orders --port 8080

  # the same as a GitHub Actions step, after the build
  - run: speedctl test --from testdata/orders.jsonl --target http://127.0.0.1:8080 --report replay.json -- ./bin/orders

  # from a hub snapshot, bodies compared too, reports kept as CI artifacts
  speedctl test --snapshot snap_k2x7q4mzt6a3wbnf --target http://127.0.0.1:8080 \
      --fail-if 'body_match<100%' --report replay.json --mock-report mock.json -- ./bin/orders

  # try it on the demo: export what it captured while it runs, stop it, then
  # test its orders service alone (and a build of it with a bug: exit 1)
  speedctl demo --data /tmp/shop                     # in another terminal
  speedctl --home /tmp/shop traffic export --format jsonl -o orders.jsonl
  speedctl test --from orders.jsonl --target http://127.0.0.1:9090 -- speedctl demo app
  speedctl test --from orders.jsonl --target http://127.0.0.1:9090 -- speedctl demo app --broken-lookup`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				o.child = args[n:]
				args = args[:n]
			}
			if len(args) > 0 {
				return usageError(fmt.Errorf("unexpected argument %q: give the app's command after --", args[0]))
			}
			if len(o.child) == 0 {
				return usageError(errors.New("no app: give the command that starts it after --, e.g. -- ./bin/orders --port 8080"))
			}
			if err := o.replayOptions.prepare(); err != nil {
				return usageError(err)
			}
			return o.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	o.recordingFlags.add(cmd)
	f := cmd.Flags()
	o.replayOptions.add(f)
	o.mockFlags.add(f)
	f.StringVar(&o.mockReport, "mock-report", "", "write the mock's report (requests, matched, missed, misses) as JSON to this `file`")
	f.DurationVar(&o.wait, "wait", time.Minute, "the longest to wait for --target to answer after the app starts")
	f.DurationVar(&o.grace, "grace", 10*time.Second, "after the replay, how long the app has to exit on SIGTERM before SIGKILL")
	return cmd
}

func (o *testOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	if _, ok := stderr.(*os.File); !ok {
		stderr = &lockedWriter{w: stderr} // the app's output and ours, into one buffer
	}
	setup, err := o.mockFlags.setup()
	if err != nil {
		return usageError(err)
	}
	pusher, err := o.replayOptions.pusher()
	if err != nil {
		return err
	}
	recs, r, err := o.load(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	setup.opt.Index = mock.NewIndex(recs, setup.rules)
	setup.opt.Logger = service.NewLogger(stderr, "info")
	setup.listen = "127.0.0.1:0"
	m, err := startMock(setup, stderr)
	if err != nil {
		return usageError(err)
	}
	if setup.opt.Index.Records() == 0 {
		fmt.Fprintln(stderr, "speedctl test: the recording has no outbound HTTP records: every call the app makes will miss")
	}
	fmt.Fprintf(stderr, "speedctl test: mock %s answers the app's outbound calls (%d recordings over %d endpoints); starting %s\n",
		m.proxyURL, setup.opt.Index.Records(), setup.opt.Index.Endpoints(), strings.Join(o.child, " "))
	app, err := mock.StartChild(o.child, mock.ChildOptions{Env: m.childEnv(os.Environ()), Stdout: stderr, Stderr: stderr, Tail: appTail, Group: true})
	if err != nil {
		m.stop()
		return usageError(fmt.Errorf("start the app: %w", err))
	}

	runErr := waitTarget(ctx, r, o.cfg, app, o.wait)
	answered := runErr == nil
	if answered {
		runErr = o.replayOptions.replay(ctx, r, pusher, stdout, stderr)
	}
	select {
	case <-app.Done():
		if code, _ := app.Status(); answered {
			fmt.Fprintf(stderr, "speedctl test: the app exited with status %d during the replay; its last output:\n%s", code, indent(app.Tail()))
		}
	default:
		code, _ := app.Stop(o.grace)
		fmt.Fprintf(stderr, "speedctl test: the app stopped (exit status %d)\n", code)
	}
	// Printed whatever happened: an app that failed to start may have missed a call it needed.
	sum := m.stop()
	fmt.Fprintln(stdout, "\nthe app's outbound calls, answered by the mock:")
	if err := sum.WriteTable(stdout); err != nil {
		return err
	}
	if o.mockReport != "" {
		if err := writeReport(o.mockReport, sum); err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// waitTarget waits until the target answers, polling every 100 ms: it accepts a connection and, over
// http:// or https://, answers a GET of its URL with any status. It returns an *exitError when the app
// exits first or wait passes (exit status 2), or when ctx ends (1).
func waitTarget(ctx context.Context, r *replay.Replay, cfg replay.Config, app *mock.Child, wait time.Duration) error {
	u, err := url.Parse(cfg.Target)
	if err != nil {
		return usageError(fmt.Errorf("--target: %w", err))
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: cfg.TLS, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	start := time.Now()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = answers(ctx, r, client, u); last == nil {
			return nil
		}
		select {
		case <-app.Done():
			code, err := app.Status()
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("the app did not run: %w", err)}
			}
			return &exitError{code: 2, err: fmt.Errorf("the app exited with status %d before %s answered; its last output:\n%s", code, cfg.Target, indent(app.Tail()))}
		case <-deadline.C:
			return &exitError{code: 2, err: fmt.Errorf("%s did not answer within %s of the app's start (--wait): %w; the app's last output:\n%s",
				cfg.Target, time.Since(start).Round(time.Second), last, indent(app.Tail()))}
		case <-ctx.Done():
			return &exitError{code: 1, err: errors.New("interrupted before the app answered")}
		case <-tick.C:
		}
	}
}

// answers checks once that the target answers: a GET of its URL answered with any status over http:// and
// https://, a connection accepted over h2c://.
func answers(ctx context.Context, r *replay.Replay, client *http.Client, u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return r.Probe(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	return res.Body.Close()
}

// indent prefixes every line of the app's output, so that it reads apart from speedctl's.
func indent(s string) string {
	if s == "" {
		return "  (nothing)\n"
	}
	s = strings.TrimSuffix(s, "\n")
	return "  | " + strings.ReplaceAll(s, "\n", "\n  | ") + "\n"
}

// lockedWriter serializes the writes of several goroutines: the app's output copiers and speedctl's own.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
