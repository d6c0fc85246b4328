package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/tapwire/tapwire/internal/demo"
)

func init() { commands = append(commands, newDemoCmd, newCaptureCmd) }

// stackFlags are the flags demo and capture share.
type stackFlags struct {
	data  string
	for_  time.Duration
	every time.Duration
	ports demo.Ports
}

func (f *stackFlags) add(cmd *cobra.Command, capture bool) {
	d := demo.DefaultPorts()
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "", "`folder` for the hub's database, the forwarder's spool, the CA, the log, and a speedctl config for the hub with its keys (default "+shortHome(demo.DefaultDataDir(capture))+")")
	fl.DurationVar(&f.for_, "for", 0, "stop by itself after this `duration`, e.g. 30s (default: run until Ctrl-C)")
	fl.DurationVar(&f.every, "summary-every", 10*time.Second, "how often to print the summary line when the output is not a terminal (on a terminal it is refreshed every second)")
	fl.IntVar(&f.ports.Hub, "hub-port", d.Hub, "`port` of the hub: its API and traffic viewer")
	fl.IntVar(&f.ports.Forwarder, "forwarder-port", d.Forwarder, "`port` of the forwarder")
	fl.IntVar(&f.ports.In, "in-port", d.In, "`port` of goproxy's inbound proxy (PROXY_IN_PORT)")
	fl.IntVar(&f.ports.Out, "out-port", d.Out, "`port` of goproxy's outbound proxy (PROXY_OUT_PORT)")
	fl.IntVar(&f.ports.Diag, "diag-port", d.Diag, "`port` of goproxy's health and diagnostics (DIAG_HTTP_PORT)")
	if !capture {
		fl.IntVar(&f.ports.App, "app-port", d.App, "`port` of the demo app")
		fl.IntVar(&f.ports.Upstream, "upstream-port", d.Upstream, "`port` of the demo's HTTPS upstream")
	}
}

// config makes the demo's configuration from the flags.
func (f *stackFlags) config(cmd *cobra.Command) demo.Config {
	pinned := map[string]bool{}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if strings.HasSuffix(fl.Name, "-port") {
			pinned["--"+fl.Name] = true
		}
	})
	out := cmd.OutOrStdout()
	live := false
	if fd, ok := out.(interface{ Fd() uintptr }); ok {
		live = term.IsTerminal(int(fd.Fd()))
	}
	return demo.Config{
		DataDir: f.data,
		For:     f.for_,
		Ports:   f.ports,
		Pinned:  pinned,
		Out:     out,
		Live:    live,
		Every:   f.every,
		Self:    self(),
	}
}

// self is how the hints call speedctl: "speedctl" when that is the one on
// $PATH, "go run ./cmd/speedctl" under go run, else the path it was
// started by (bin/speedctl).
func self() string {
	arg0 := os.Args[0]
	if strings.Contains(arg0, "go-build") {
		return "go run ./cmd/speedctl"
	}
	if !strings.ContainsRune(arg0, filepath.Separator) {
		return arg0
	}
	if p, err := exec.LookPath("speedctl"); err == nil {
		a, err1 := filepath.EvalSymlinks(p)
		b, err2 := filepath.EvalSymlinks(arg0)
		if err1 == nil && err2 == nil && a == b {
			return "speedctl"
		}
	}
	return arg0
}

func shortHome(p string) string {
	if h, err := os.UserHomeDir(); err == nil && strings.HasPrefix(p, h+string(filepath.Separator)) {
		return "~" + p[len(h):]
	}
	return p
}

// runStack runs demo and capture; a seam for tests.
var runStack = runUntilSignal

// runUntilSignal runs the demo until Ctrl-C (SIGINT) or SIGTERM. A second
// Ctrl-C quits at once.
func runUntilSignal(cmd *cobra.Command, cfg demo.Config) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // the next Ctrl-C has its default effect
	}()
	return demo.Run(ctx, cfg)
}

func newDemoCmd() *cobra.Command {
	var f stackFlags
	var rate float64
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run all of Tapwire on this machine, with a demo app and traffic",
		Long: `speedctl demo runs the whole of Tapwire on this machine, in one process, with
nothing to install. Every part listens on 127.0.0.1 only:

  a shopper   sends --rate requests/s to goproxy's inbound port (4143)
  goproxy     the capturing sidecar, in dual mode with TLS_OUT_UNWRAP=true
  orders      a small JSON API (the app being captured, port 9090); creating
              an order charges a card at payments over HTTPS through
              goproxy's outbound proxy (4140), which unwraps the TLS with a
              CA it made, and verifies payments' own certificate
  payments    the HTTPS upstream (https://localhost:9443)
  forwarder   receives goproxy's records (8888), redacts credentials,
              spools them on disk and delivers them to the hub
  hub         stores the records in SQLite and serves the API and the
              traffic viewer (http://127.0.0.1:8080)

It prints the viewer's address and the read key to sign in with, the
speedctl commands to try next, and a summary line of records captured,
delivered and stored. Ctrl-C stops the traffic first, lets goproxy and the
forwarder deliver what they hold, and stops the rest.

The records, keys and CA are kept in --data for the next run; --data also
holds "config", a speedctl config for the demo's hub, so that
"speedctl --home DATA traffic list" needs no --hub or --key. A default port
that is busy moves to a free one (the header says so); a port given as a
flag that is busy is an error; 0 means any free port.

What the demo captured is enough to run the orders service without payments:
its outbound records answer its calls through speedctl mock (a test runs the
whole shopper's traffic again on mocks, with payments stopped, every status as
recorded):

  speedctl --home DATA traffic export --format jsonl --direction out -o out.jsonl
  speedctl mock --from out.jsonl -- ./your-orders-build

and to test a build of it: its recorded requests replayed to it, on mocks
(speedctl demo app is the orders service alone):

  speedctl --home DATA traffic export --format jsonl -o orders.jsonl
  speedctl test --from orders.jsonl --target http://127.0.0.1:9090 -- speedctl demo app`,
		Example: `  speedctl demo
  speedctl demo --rate 20 --hub-port 8090
  speedctl demo --for 30s          # stops by itself, for scripts and CI`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := f.config(cmd)
			cfg.Rate = rate
			return runStack(cmd, cfg)
		},
	}
	f.add(cmd, false)
	cmd.Flags().Float64Var(&rate, "rate", 5, "`requests` per second the shopper sends at most, from 0.1 to "+strconv.Itoa(demo.MaxRate))
	cmd.AddCommand(newDemoAppCmd())
	return cmd
}

func newDemoAppCmd() *cobra.Command {
	var cfg demo.AppConfig
	d := demo.DefaultPorts()
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Run the demo's orders service alone, as a build of it would run",
		Long: `speedctl demo app runs the demo's orders service by itself, in the
foreground, until Ctrl-C or SIGTERM: the app speedctl demo captures,
without goproxy, the shopper or payments. It stands for your own build
when you try speedctl mock and speedctl test on what the demo recorded.

Its calls to payments (--payments) go through HTTPS_PROXY and trust
SSL_CERT_FILE, as an app under goproxy or speedctl mock does (localhost
included, unlike Go's default client). --broken-lookup makes
GET /api/orders/{id} answer 500: a build with a bug, to see speedctl test
fail on it.`,
		Example: `  speedctl --home ~/.cache/tapwire/demo traffic export --format jsonl -o orders.jsonl
  speedctl test --from orders.jsonl --target http://127.0.0.1:9090 -- speedctl demo app
  speedctl test --from orders.jsonl --target http://127.0.0.1:9090 -- speedctl demo app --broken-lookup`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demo.RunApp(ctx, cfg, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:"+strconv.Itoa(d.App), "`address` to serve on")
	f.StringVar(&cfg.Payments, "payments", "https://localhost:"+strconv.Itoa(d.Upstream), "the payments upstream's base `URL`, as the demo recorded it")
	f.BoolVar(&cfg.BrokenLookup, "broken-lookup", false, "GET /api/orders/{id} answers 500: a build with a bug")
	return cmd
}

func newCaptureCmd() *cobra.Command {
	var f stackFlags
	var service, upstreamCA string
	cmd := &cobra.Command{
		Use:   "capture PORT",
		Short: "Capture the traffic of your own app on this machine",
		Long: `speedctl capture PORT runs goproxy in front of your app on 127.0.0.1:PORT,
with a forwarder and a hub, on this machine, in one process. Every part
listens on 127.0.0.1 only.

  goproxy     inbound on 4143: send your requests there instead of to PORT;
              outbound on 4140: your app's HTTP_PROXY and HTTPS_PROXY, with
              its HTTPS calls unwrapped by a CA it makes (SSL_CERT_FILE)
  forwarder   8888, delivering to the hub
  hub         http://127.0.0.1:8080: the API and the traffic viewer

It prints the address to send traffic to, the environment to start your app
with so its outbound calls are captured too, the viewer's address and read
key, and a summary line. Ctrl-C stops it; the records stay in --data.

goproxy verifies your app's HTTPS upstreams against the system roots; an
upstream signed by another CA (a company CA, a test server's) needs
--upstream-ca with that CA's PEM file.

A default port that is busy, or that is your app's, moves to a free one (the
header says so); a port given as a flag that is busy is an error.`,
		Example: `  speedctl capture 3000
  curl http://127.0.0.1:4143/             # reaches your app, and is captured
  speedctl capture 8080 --service notifications --hub-port 8090
  speedctl capture 3000 --upstream-ca ./test-ca.pem   # upstreams signed by a test CA`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("want the port your app listens on, e.g. speedctl capture 3000")
			}
			if n, err := strconv.Atoi(args[0]); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("port %q: want a number from 1 to 65535, the port your app listens on", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := f.config(cmd)
			cfg.AppPort, _ = strconv.Atoi(args[0])
			cfg.Service = service
			cfg.UpstreamCA = upstreamCA
			return runStack(cmd, cfg)
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&service, "service", "app", "the service label (APP_LABEL) on the records")
	cmd.Flags().StringVar(&upstreamCA, "upstream-ca", "", "PEM `file` of CAs to trust for your app's HTTPS upstreams besides the system roots, e.g. a company or test CA (goproxy's TLS_OUT_EXTRA_CA_FILE)")
	return cmd
}
