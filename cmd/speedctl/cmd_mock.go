package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/certs"

	"github.com/tapwire/tapwire/internal/mitm"
	"github.com/tapwire/tapwire/internal/mock"
	"github.com/tapwire/tapwire/internal/service"
)

func init() { commands = append(commands, newMockCmd) }

// guideCADir is where the deployment guide mounts goproxy's CA (TLS_CERT_DIR).
const guideCADir = "/etc/ssl/speedscale"

// mockOptions are the flags of mock.
type mockOptions struct {
	recordingFlags
	mockFlags
	listen       string
	reverse      []string
	recordMisses string
	timing       string
	report       string
	logLevel     string
	child        []string
}

func newMockCmd() *cobra.Command {
	var o mockOptions
	cmd := &cobra.Command{
		Use:   "mock (--from PATH... | --snapshot ID...) [flags] [-- COMMAND ARGS...]",
		Short: "Answer an app's outbound calls from recorded traffic",
		Long: `Answer an app's outbound HTTP, HTTPS and gRPC calls from the outbound records
(direction out) of recorded traffic, so the app runs with none of its
dependencies: no payment provider, no partner API, no database behind an API.

speedctl mock listens (--listen) as goproxy's outbound port does: a forward
proxy for HTTP_PROXY and HTTPS_PROXY, unwrapping TLS with the CA in --ca-dir
(tls.crt and tls.key, as goproxy's TLS_CERT_DIR), so the app needs only
HTTP_PROXY, HTTPS_PROXY and SSL_CERT_FILE, as under goproxy. --reverse
HOST=ADDR also listens on ADDR for an app configured with a base URL.

Matching: a request is answered by a recording with the same host, method and
path template (/users/{} for ids), and the same X-Amz-Target or SOAPAction.
Among those, every query parameter and body field must be equal, except the
volatile ones: values that differ between the endpoint's recordings, and
values shaped like UUIDs, timestamps, random tokens, IPs, emails or JWTs.
Those, and headers, only pick the closest recording. A request recorded
several times is answered in recorded order per client session
(Authorization or Cookie), then with the last. --rules FILE ignores or
requires fields per endpoint. docs/mock.md has the details.

A miss answers 404 (--on-miss) with X-Tapwire-Mock-Miss naming the closest
recording and what differed; --on-miss passthrough calls the real upstream
instead (its certificate verified), and --record-misses FILE keeps what it got.

A status line on standard error counts requests; on Ctrl-C, SIGTERM or the
child's exit, a table per endpoint and, with --report FILE, JSON (requests,
matched, missed, misses with method, url, closest, why). The exit status is
0, or the child's when one ran (128+N when signal N ended it).

After --, the command runs as a child with HTTP_PROXY, HTTPS_PROXY,
SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS and CURL_CA_BUNDLE set;
signals are passed to it, and mock stops when it exits.`,
		Example: `  # capture, then run the service on its recordings
  speedctl traffic export --format jsonl --service orders --direction out --since 1h -o orders.jsonl
  speedctl mock --from orders.jsonl -- ./orders-service

  # any format, several sources: our JSONL, raw.jsonl, HAR, a Markdown recording
  speedctl mock --from recorded-2026-06-25_18-18-27 --from dynamodb.raw.jsonl
  speedctl mock --snapshot snap_k2x7q4mzt6a3wbnf -- ./orders-service   # a hub snapshot (read key)

  # a mock for an app started elsewhere, with a CI report
  speedctl mock --from snap/ --listen 0.0.0.0:4140 --report mock-report.json
  HTTPS_PROXY=http://127.0.0.1:4140 SSL_CERT_FILE=~/.speedctl/ca/tls.crt ./app

  # an app with a base URL (http://127.0.0.1:8081) instead of a proxy
  speedctl mock --from snap.jsonl --reverse api.stripe.com=127.0.0.1:8081

  # learn what misses: forward them and keep what came back
  speedctl mock --from snap.jsonl --on-miss passthrough --record-misses more.jsonl`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				o.child = args[n:]
				args = args[:n]
			}
			if len(args) > 0 {
				return fmt.Errorf("unexpected argument %q: give recordings with --from or --snapshot, and the app after --", args[0])
			}
			if o.recordingFlags.empty() {
				return errors.New("no recordings: give --from PATH (files or folders in any format) or --snapshot ID (a hub snapshot)")
			}
			return o.run(cmd.Context(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.recordingFlags.add(cmd)
	f.StringVar(&o.listen, "listen", "127.0.0.1:4140", "`address` of the forward proxy (HTTP_PROXY, HTTPS_PROXY)")
	o.mockFlags.add(f)
	f.StringArrayVar(&o.reverse, "reverse", nil, "`HOST=ADDR`: also listen on ADDR, answering as HOST (plain HTTP/1.1 and h2c); repeatable")
	f.StringVar(&o.recordMisses, "record-misses", "", "with --on-miss passthrough, append what the upstream answered to this JSONL `file`")
	f.StringVar(&o.timing, "timing", "none", "answer at once (none), after the recorded latency (recorded), or scaled (x0.5, x2)")
	f.StringVar(&o.report, "report", "", "write the report as JSON to this `file` when mock stops")
	f.StringVar(&o.logLevel, "log-level", "info", "debug logs every request and its choice; info, warn, error")
	return cmd
}

func (o *mockOptions) run(ctx context.Context, stderr io.Writer) error {
	timing, err := mock.ParseTiming(o.timing)
	if err != nil {
		return fmt.Errorf("--timing: %w", err)
	}
	reverse := map[string]string{}
	for _, r := range o.reverse {
		host, addr, ok := strings.Cut(r, "=")
		if !ok || host == "" || addr == "" {
			return fmt.Errorf("--reverse %q: want HOST=ADDR, e.g. api.stripe.com=127.0.0.1:8081", r)
		}
		reverse[addr] = host
	}
	setup, err := o.mockFlags.setup()
	if err != nil {
		return err
	}
	if o.recordMisses != "" && setup.opt.OnMiss != mock.MissPassthrough {
		return errors.New("--record-misses keeps what passthrough got: add --on-miss passthrough")
	}
	setup.opt.Timing, setup.listen, setup.reverse = timing, o.listen, reverse
	setup.opt.Logger = service.NewLogger(stderr, o.logLevel)
	srcs, err := o.recordingFlags.sources(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	recs, err := readSources(srcs, isMockable)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return errors.New("no outbound HTTP records to answer with: mock serves the records of direction out (what the app called)")
	}
	setup.opt.Index = mock.NewIndex(recs, setup.rules)
	recs = nil
	fmt.Fprintf(stderr, "speedctl mock: %d recordings over %d endpoints, read and indexed in %s\n", setup.opt.Index.Records(), setup.opt.Index.Endpoints(), time.Since(start).Round(time.Millisecond))
	if o.recordMisses != "" {
		f, err := os.OpenFile(o.recordMisses, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--record-misses: %w", err)
		}
		defer f.Close()
		setup.opt.RecordMisses = f
	}
	m, err := startMock(setup, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "speedctl mock: proxy %s; apps use HTTPS_PROXY=%s HTTP_PROXY=%s SSL_CERT_FILE=%s\n", m.proxyURL, m.proxyURL, m.proxyURL, m.caFile)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	stopStatus := statusLine(stderr, m.srv.Report())
	code := 0
	var runErr error
	if len(o.child) > 0 {
		code, runErr = mock.RunChild(context.Background(), o.child, m.childEnv(os.Environ()), sigs)
	} else {
		select {
		case <-sigs:
		case runErr = <-m.errc:
		}
	}
	stopStatus()
	sum := m.stop()
	sum.WriteTable(stderr)
	if o.report != "" {
		if err := writeReport(o.report, sum); err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr != nil {
		return runErr
	}
	if len(o.child) > 0 && code != 0 {
		return exitStatus(code)
	}
	return nil
}

// mockFlags are the flags of how the mock answers, which mock and test share.
type mockFlags struct {
	caDir  string
	onMiss string
	rules  string
}

func (m *mockFlags) add(f *pflag.FlagSet) {
	f.StringVar(&m.caDir, "ca-dir", "", "`folder` with tls.crt and tls.key to unwrap TLS (default "+guideCADir+" when it holds them, else ~/.speedctl/ca, made if missing)")
	f.StringVar(&m.onMiss, "on-miss", "404", "a request no recording matches: 404, 502 or passthrough (to the real upstream)")
	f.StringVar(&m.rules, "rules", "", "YAML or JSON `file` of fields to ignore or require per endpoint (docs/mock.md)")
}

// setup checks the flags and reads the rules file: the mock's setup but for its index and listeners.
func (m *mockFlags) setup() (mockSetup, error) {
	onMiss, err := mock.ParseOnMiss(m.onMiss)
	if err != nil {
		return mockSetup{}, fmt.Errorf("--on-miss: %w", err)
	}
	s := mockSetup{caDir: m.caDir, opt: mock.Options{OnMiss: onMiss}}
	if m.rules != "" {
		if s.rules, err = mock.LoadRules(m.rules); err != nil {
			return mockSetup{}, err
		}
	}
	return s, nil
}

// mockSetup is what startMock starts a mock from.
type mockSetup struct {
	opt     mock.Options      // with its Index; its Minter is made from caDir
	rules   *mock.Rules       // the rules the index was made with
	caDir   string            // --ca-dir; if empty, mockCADir's default
	listen  string            // the forward proxy's address
	reverse map[string]string // listen address → the host it answers as
}

// runningMock is a mock serving: its forward proxy and its reverse listeners.
type runningMock struct {
	srv      *mock.Server
	proxyURL string // http://ADDR, the apps' HTTP_PROXY and HTTPS_PROXY
	caFile   string // the CA certificate, the apps' SSL_CERT_FILE
	errc     chan error
}

// startMock loads the CA, makes the server and serves it on its listeners, each in a goroutine that stop
// ends.
func startMock(s mockSetup, stderr io.Writer) (*runningMock, error) {
	caDir, err := mockCADir(s.caDir)
	if err != nil {
		return nil, err
	}
	ca, err := mitm.LoadCA(caDir)
	if err != nil {
		return nil, fmt.Errorf("--ca-dir %s: %w", caDir, err)
	}
	if s.opt.Minter, err = mitm.NewMinter(ca, mitm.Options{}); err != nil {
		return nil, err
	}
	caFile, err := filepath.Abs(filepath.Join(caDir, "tls.crt"))
	if err != nil {
		return nil, err
	}
	srv, err := mock.New(s.opt)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	if host, _, _ := net.SplitHostPort(s.listen); host != "127.0.0.1" && host != "localhost" && host != "::1" && s.opt.Logger != nil {
		s.opt.Logger.Warn("the mock listens beyond loopback: anyone who reaches it can read the recorded answers", "listen", s.listen)
	}
	m := &runningMock{srv: srv, proxyURL: "http://" + ln.Addr().String(), caFile: caFile, errc: make(chan error, 1+len(s.reverse))}
	go func() { m.errc <- srv.Serve(ln) }()
	for addr, host := range s.reverse {
		rl, err := net.Listen("tcp", addr)
		if err != nil {
			m.stop()
			return nil, fmt.Errorf("--reverse %s=%s: %w", host, addr, err)
		}
		go func() { m.errc <- srv.ServeReverse(rl, host) }()
		fmt.Fprintf(stderr, "speedctl mock: http://%s answers as %s\n", rl.Addr(), host)
	}
	return m, nil
}

// childEnv is env with the variables that send an app's calls to the mock, trusting its CA.
func (m *runningMock) childEnv(env []string) []string {
	return mock.ChildEnv(env, m.proxyURL, m.caFile)
}

// stop shuts the server down, within 5 seconds, and returns its report's summary.
func (m *runningMock) stop() mock.Summary {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.srv.Shutdown(ctx)
	return m.srv.Report().Summary()
}

// isMockable reports whether mock answers with r: an outbound HTTP exchange with its response.
func isMockable(r *capture.Record) bool {
	return r.Direction == capture.DirOut && r.HTTP != nil && r.HTTP.Res != nil
}

// mockCADir is --ca-dir, or its default: the guide's folder when it holds a CA, else speedctl's own,
// made when missing.
func mockCADir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if _, err := os.Stat(filepath.Join(guideCADir, "tls.crt")); err == nil {
		return guideCADir, nil
	}
	h, err := home()
	if err != nil {
		return "", err
	}
	dir = filepath.Join(h, "ca")
	if _, err := certs.Check(dir, time.Now().Add(24*time.Hour)); err == nil {
		return dir, nil
	}
	if _, err := certs.Create(certs.Options{Dir: dir, KeyType: certs.KeyECDSA, CommonName: "Tapwire speedctl CA", Days: 365, Force: true}); err != nil {
		return "", fmt.Errorf("make speedctl's CA in %s: %w", dir, err)
	}
	return dir, nil
}

// statusLine refreshes the report's one-line status on w: in place each second on a terminal, else a line
// every 10 seconds when the counts changed. The returned function stops it.
func statusLine(w io.Writer, rep *mock.Report) func() {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	every := 10 * time.Second
	if tty {
		every = time.Second
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		last := ""
		for {
			select {
			case <-done:
				if tty && last != "" {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-t.C:
			}
			line := rep.Line()
			if line == last {
				continue
			}
			last = line
			if tty {
				fmt.Fprintf(w, "\r\033[Kmock: %s", line)
			} else {
				fmt.Fprintf(w, "mock: %s\n", line)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// writeReport writes a report (mock's, replay's) as JSON to the file
// --report names.
func writeReport(path string, rep interface{ WriteJSON(io.Writer) error }) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("--report %s: %w", path, err)
	}
	return f.Close()
}

// exitStatus is an exit code passed on from a child: main exits with it and prints nothing.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
