package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/config"
	"github.com/tapwire/tapwire/internal/demo"
	"github.com/tapwire/tapwire/internal/hubclient"
	"github.com/tapwire/tapwire/internal/store"
)

// Environment variables and config keys that name the hub and the read key
// of speedctl traffic, after --hub and --key.
const (
	hubURLKey  = "TAPWIRE_HUB_URL"
	readKeyKey = "TAPWIRE_READ_KEY"
	// ingestKeyKey is the forwarder's key, which traffic import uses.
	ingestKeyKey = "SPEEDSCALE_API_KEY"
)

// listPageSize is the page size list and tail ask for: the API's largest.
var listPageSize = 1000

const trafficExamples = `  speedctl config set TAPWIRE_HUB_URL=http://127.0.0.1:8080 TAPWIRE_READ_KEY=tw_...
  speedctl traffic list --service orders --status 5xx --since 1h
  speedctl traffic show 01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e10
  speedctl traffic tail --service orders --failed
  speedctl traffic export --format har --since 1d -o orders.har
  speedctl traffic import --hub http://other-hub:8080 --ingest-key tw_... orders.har`

func newTrafficCmd() *cobra.Command {
	var hf hubFlags
	cmd := &cobra.Command{
		Use:   "traffic",
		Short: "List, show, tail, export and import the traffic a hub holds",
		Long: `List, show, tail and export the records a Tapwire hub holds, through its query
API (docs/api.md), with a read key; import records into it, with an ingest key.

The hub is --hub, else $` + hubURLKey + `, else the config file's ` + hubURLKey + `, else its
SPEEDSCALE_APP_URL (a bare host means https). The key is --key, else
$` + readKeyKey + `, else the config file's ` + readKeyKey + `. It must be a read key: the
forwarder's ingest key is refused. Make one with
` + "`hub keys create -tenant T -role read`" + `.

The filters are the API's, as flags: --service, --direction, --method, --status,
--failed, --host, --path, --search (the API's q), --since, --from and --to.

import takes an ingest key instead (--ingest-key, else $` + ingestKeyKey + `, else the
config file's ` + ingestKeyKey + `).`,
		Example: trafficExamples,
	}
	hf.add(cmd)
	cmd.AddCommand(newTrafficListCmd(&hf), newTrafficShowCmd(&hf), newTrafficExportCmd(&hf), newTrafficImportCmd(&hf), newTrafficTailCmd(&hf))
	return cmd
}

// hubFlags are the flags every traffic command takes.
type hubFlags struct {
	hub, key string
}

func (h *hubFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&h.hub, "hub", "", "the hub's URL (default $"+hubURLKey+", else the config's "+hubURLKey+", else its SPEEDSCALE_APP_URL)")
	cmd.PersistentFlags().StringVar(&h.key, "key", "", "a read key of the hub, tw_... (default $"+readKeyKey+", else the config's "+readKeyKey+")")
}

// readCommand is a traffic command that reads with a read key: its
// options, checked by prepare (with the arguments) before the client is
// made, and its run over the client.
type readCommand interface {
	prepare(args []string) error
	run(ctx context.Context, c *hubclient.Client, stdout, stderr io.Writer) error
}

// runE runs o with the read client, and says what to do about the hub's
// refusals.
func (h *hubFlags) runE(o readCommand) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.prepare(args); err != nil {
			return err
		}
		c, err := h.client()
		if err != nil {
			return err
		}
		return readHints.explain(o.run(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
}

// client resolves the hub's URL and the read key: the flags, the
// environment, then the config file.
func (h *hubFlags) client() (*hubclient.Client, error) {
	return h.clientWith(h.key, readKeyKey, readKeyKey, func() error {
		return fmt.Errorf("no read key: pass --key tw_..., or run `speedctl config set %s=tw_...` (make one with `hub keys create -tenant T -role read`)%s", readKeyKey, demoHomeHint())
	})
}

// ingestClient resolves the hub's URL and an ingest key: --ingest-key,
// $SPEEDSCALE_API_KEY, then the config file's SPEEDSCALE_API_KEY (the
// forwarder's key).
func (h *hubFlags) ingestClient(flagKey string) (*hubclient.Client, error) {
	return h.clientWith(flagKey, ingestKeyKey, ingestKeyKey, func() error {
		return fmt.Errorf("no ingest key: pass --ingest-key tw_..., set $%s, or run `speedctl config set %s=tw_...` (make one with `hub keys create -tenant T -role ingest`)%s", ingestKeyKey, ingestKeyKey, demoHomeHint())
	})
}

func (h *hubFlags) clientWith(key, envKey, configKey string, noKey func() error) (*hubclient.Client, error) {
	hub := h.hub
	if hub == "" {
		hub = os.Getenv(hubURLKey)
	}
	if key == "" {
		key = os.Getenv(envKey)
	}
	if hub == "" || key == "" {
		dir, err := home()
		if err != nil {
			return nil, err
		}
		f, err := config.Load(dir)
		switch {
		case errors.Is(err, config.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			if hub == "" {
				hub = f.Lookup(hubURLKey)
			}
			if hub == "" {
				hub = f.Lookup("SPEEDSCALE_APP_URL")
			}
			if key == "" {
				key = f.Lookup(configKey)
			}
		}
	}
	if hub == "" {
		return nil, fmt.Errorf("no hub: pass --hub URL, or run `speedctl config set %s=http://127.0.0.1:8080`%s", hubURLKey, demoHomeHint())
	}
	if key == "" {
		return nil, noKey()
	}
	return hubclient.New(hub, key, hubclient.Options{UserAgent: userAgent()})
}

// demoHomeHint ends a missing-setting message: when the demo's (or
// capture's) data folder holds a speedctl config for its hub and it is not
// the home in use, "; or, for the demo's hub, pass --home ~/.cache/tapwire/demo".
func demoHomeHint() string {
	cur, _ := home()
	var hints []string
	for _, c := range []struct {
		capture bool
		name    string
	}{{false, "speedctl demo"}, {true, "speedctl capture"}} {
		dir := demo.DefaultDataDir(c.capture)
		if dir == cur {
			continue
		}
		if _, err := config.Load(dir); err == nil {
			hints = append(hints, fmt.Sprintf("for %s's hub, pass --home %s", c.name, shortHome(dir)))
		}
	}
	if len(hints) == 0 {
		return ""
	}
	return "; or, " + strings.Join(hints, "; or, ")
}

func userAgent() string { return "speedctl/" + version }

// keyHints say what to do about the hub's refusals of a command's key,
// and about a hub that does not answer.
type keyHints struct {
	key      string // the key, as "the key" or "the admin key"
	on401    string // what to check when the key is refused
	on403    string // which key the command needs
	checkHub string // where the hub's URL comes from
	// on404 explains a 404; if nil, the hub's message stands alone (as
	// "no record with id ...").
	on404 func(e *hubclient.Error) string
}

// hubHints say where the hub's URL of speedctl traffic comes from.
var hubHints = keyHints{checkHub: "check --hub or " + hubURLKey}

// readHints are those of the read key of speedctl traffic.
var readHints = keyHints{
	key:      "the key",
	on401:    "check --key or " + readKeyKey + "; it must be a live read key of the hub (`hub keys create -tenant T -role read`)",
	on403:    "speedctl traffic needs a read key, not the forwarder's ingest key",
	checkHub: hubHints.checkHub,
}

// explain rewrites the hub's refusals and an unreachable hub into
// messages that say what to do; the error stays in the chain.
func (k keyHints) explain(err error) error {
	var te *hubclient.TransportError
	if errors.As(err, &te) && te.Unreachable {
		return fmt.Errorf("%w (is it running? %s)", err, k.checkHub)
	}
	var e *hubclient.Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Status {
	case 401:
		return &explained{fmt.Sprintf("hub %s refused %s (401: %s): %s", e.Hub, k.key, e.Message, k.on401), err}
	case 403:
		return &explained{fmt.Sprintf("hub %s: %s (403): %s", e.Hub, e.Message, k.on403), err}
	case 404:
		if k.on404 != nil {
			return &explained{k.on404(e), err}
		}
		return &explained{e.Message, err}
	}
	return err
}

// explained is an error with a message that says what to do.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// filterFlags mirror the API's filter parameters.
type filterFlags struct {
	service, direction, method, status, host, path, search string
	since, from, to                                        string
	failed                                                 bool
}

func (f *filterFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.service, "service", "", "only this service (labels.service), exactly")
	fs.StringVar(&f.direction, "direction", "", "in (calls to the service) or out (the service's calls)")
	fs.StringVar(&f.method, "method", "", "only this request method, any case")
	fs.StringVar(&f.status, "status", "", "a status class or code: 5xx, 404")
	fs.BoolVar(&f.failed, "failed", false, "only failed exchanges: an error, a status >= 500, no response, a gRPC error")
	fs.StringVar(&f.host, "host", "", "only this host, without port, any case")
	fs.StringVar(&f.path, "path", "", "whose URL path contains this, case-sensitive")
	fs.StringVar(&f.search, "search", "", "whose URL or first 4 KiB of a body contains this, any case (the API's q)")
	fs.StringVar(&f.since, "since", "", "records of the last DURATION: 15m, 2h, 7d (the same as --from -DURATION)")
	fs.StringVar(&f.from, "from", "", "records that started at or after this: RFC 3339, Unix ms, now, or -15m, -2h, -7d")
	fs.StringVar(&f.to, "to", "", "records that started before this, as --from")
}

// filter returns the flags as the API's filter.
func (f *filterFlags) filter() (apitype.Filter, error) {
	if f.direction != "" && f.direction != "in" && f.direction != "out" {
		return apitype.Filter{}, fmt.Errorf("--direction %q: want in or out", f.direction)
	}
	from := f.from
	if f.since != "" {
		if f.from != "" {
			return apitype.Filter{}, errors.New("--since and --from: give one of them")
		}
		from = "-" + strings.TrimPrefix(f.since, "-")
	}
	return apitype.Filter{
		Service: f.service, Direction: f.direction, Method: f.method, Status: f.status, Host: f.host,
		Path: f.path, Q: f.search, From: from, To: f.to, Failed: f.failed,
	}, nil
}

// columns are the table's cells of s: id, start (UTC), service,
// direction, method, status, duration, URL.
func columns(s *store.Summary) []string {
	status := "-"
	switch {
	case s.Status != 0:
		status = strconv.Itoa(s.Status)
	case s.Error != "":
		status = "error"
	}
	method := s.Method
	if method == "" {
		method = string(s.Kind)
	}
	return []string{s.ID, s.Start.UTC().Format("2006-01-02 15:04:05.000"), dash(s.Labels.Service), dash(string(s.Direction)),
		dash(method), status, micros(s.DurMicros), s.URL}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// micros formats a duration in µs readably: 850µs, 2.21ms, 1.5s.
func micros(us int64) string {
	d := time.Duration(us) * time.Microsecond
	switch {
	case d < time.Millisecond:
		return d.String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// countBar is a progress bar on w of items (records, requests: unit) and
// their rate; a spinner when total is -1 (unknown). It is cleared when
// finished.
func countBar(w io.Writer, total int64, desc, unit string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total, append(barOptions(w, desc),
		progressbar.OptionSetItsString(unit), progressbar.OptionShowIts())...)
}

// recordsBar is a countBar of records.
func recordsBar(w io.Writer, total int64, desc string) *progressbar.ProgressBar {
	return countBar(w, total, desc, "records")
}

// bytesBar is a progress bar on w of bytes; a spinner when total is -1.
func bytesBar(w io.Writer, total int64, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total, append(barOptions(w, desc), progressbar.OptionShowBytes(true))...)
}

func barOptions(w io.Writer, desc string) []progressbar.Option {
	return []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionClearOnFinish(),
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// writeJSON writes v as the hub writes it (no HTML escaping): indented,
// or on one line.
func writeJSON(w io.Writer, v any, indent bool) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}
