package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/config"
	fmtpkg "github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/format/har"
	"github.com/tapwire/tapwire/internal/sink/file"
	"github.com/tapwire/tapwire/internal/wire"
)

// Environment variables and config keys that name the hub and the read key
// of speedctl traffic, after --hub and --key.
const (
	hubURLKey  = "TAPWIRE_HUB_URL"
	readKeyKey = "TAPWIRE_READ_KEY"
	// ingestKeyKey is the forwarder's key, which traffic import uses.
	ingestKeyKey = "SPEEDSCALE_API_KEY"
)

// listPageSize is the page size list asks for: the API's largest.
var listPageSize = 1000

// hubFlags are the flags every traffic command takes.
type hubFlags struct {
	hub, key string
}

func (h *hubFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&h.hub, "hub", "", "the hub's URL (default $"+hubURLKey+", else the config's "+hubURLKey+", else its SPEEDSCALE_APP_URL)")
	cmd.PersistentFlags().StringVar(&h.key, "key", "", "a read key of the hub, tw_... (default $"+readKeyKey+", else the config's "+readKeyKey+")")
}

// hubClient asks the hub's query API (docs/api.md) with a read key.
type hubClient struct {
	base *url.URL
	key  string
	http *http.Client
}

// client resolves the hub's URL and the read key: the flags, the
// environment, then the config file.
func (h *hubFlags) client() (*hubClient, error) {
	return h.clientWith(h.key, readKeyKey, readKeyKey, func() error {
		return fmt.Errorf("no read key: pass --key tw_..., or run `speedctl config set %s=tw_...` (make one with `hub keys create -tenant T -role read`)", readKeyKey)
	})
}

// ingestClient resolves the hub's URL and an ingest key: --ingest-key,
// $SPEEDSCALE_API_KEY, then the config file's SPEEDSCALE_API_KEY (the
// forwarder's key).
func (h *hubFlags) ingestClient(flagKey string) (*hubClient, error) {
	return h.clientWith(flagKey, ingestKeyKey, ingestKeyKey, func() error {
		return fmt.Errorf("no ingest key: pass --ingest-key tw_..., set $%s, or run `speedctl config set %s=tw_...` (make one with `hub keys create -tenant T -role ingest`)", ingestKeyKey, ingestKeyKey)
	})
}

func (h *hubFlags) clientWith(key, envKey, configKey string, noKey func() error) (*hubClient, error) {
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
		return nil, fmt.Errorf("no hub: pass --hub URL, or run `speedctl config set %s=http://127.0.0.1:8080`", hubURLKey)
	}
	if key == "" {
		return nil, noKey()
	}
	base, err := hubURL(hub)
	if err != nil {
		return nil, err
	}
	return &hubClient{base: base, key: key, http: &http.Client{Transport: http.DefaultTransport}}, nil
}

// hubURL reads the hub's address: a full URL, or host[:port], which means
// https (as SPEEDSCALE_APP_URL does).
func hubURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("hub URL %q: want http://host[:port] or https://host[:port]", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// get GETs path?q from the hub and returns the response when it is 200;
// other answers become errors that say what to do.
func (c *hubClient) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("User-Agent", "speedctl/"+version)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(body))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("hub %s refused the key (401: %s): check --key or %s; it must be a live read key of the hub (`hub keys create -tenant T -role read`)", c.base, msg, readKeyKey)
	case http.StatusForbidden:
		return nil, fmt.Errorf("hub %s: %s (403): speedctl traffic needs a read key, not the forwarder's ingest key", c.base, msg)
	case http.StatusNotFound:
		return nil, notFoundError(msg)
	default:
		err := fmt.Errorf("hub %s answered %s: %s", c.base, resp.Status, msg)
		if resp.StatusCode >= 500 {
			return nil, &transientError{err}
		}
		return nil, err
	}
}

// transportError says what to do when the hub could not be asked. It is a
// *transientError: tail polls again.
func (c *hubClient) transportError(err error) error {
	var op *net.OpError
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &op) || errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("hub %s unreachable: %v (is it running? check --hub or %s)", c.base, unwrapURLError(err), hubURLKey)
	case strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		return fmt.Errorf("hub %s speaks plain HTTP: give its URL as http://%s (a bare host means https)", c.base, c.base.Host)
	default:
		err = fmt.Errorf("hub %s: %v", c.base, unwrapURLError(err))
	}
	return &transientError{err}
}

// transientError is a failure that may pass: the hub unreachable, or its
// 5xx answer.
type transientError struct{ error }

func (e *transientError) Unwrap() error { return e.error }

type notFoundError string

func (e notFoundError) Error() string { return string(e) }

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// getJSON GETs path and decodes the answer into v.
func (c *hubClient) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	resp, err := c.get(ctx, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("hub %s: reading %s: %w", c.base, path, err)
	}
	return nil
}

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

func (f *filterFlags) values() (url.Values, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.direction != "" && f.direction != "in" && f.direction != "out" {
		return nil, fmt.Errorf("--direction %q: want in or out", f.direction)
	}
	from := f.from
	if f.since != "" {
		if f.from != "" {
			return nil, errors.New("--since and --from: give one of them")
		}
		from = "-" + strings.TrimPrefix(f.since, "-")
	}
	set("service", f.service)
	set("direction", f.direction)
	set("method", f.method)
	set("status", f.status)
	set("host", f.host)
	set("path", f.path)
	set("q", f.search)
	set("from", from)
	set("to", f.to)
	if f.failed {
		q.Set("failed", "true")
	}
	return q, nil
}

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

// summary is what the list shows of a record (the API's summary).
type summary struct {
	ID        string         `json:"id"`
	Start     time.Time      `json:"start"`
	DurMicros int64          `json:"durationUs"`
	Kind      string         `json:"kind"`
	Direction string         `json:"direction"`
	Labels    capture.Labels `json:"labels"`
	Method    string         `json:"method"`
	URL       string         `json:"url"`
	Status    int            `json:"status"`
	Error     string         `json:"error"`
	Failed    bool           `json:"failed"`
}

// columns are the table's cells of s: id, start (UTC), service,
// direction, method, status, duration, URL.
func (s *summary) columns() []string {
	status := "-"
	switch {
	case s.Status != 0:
		status = strconv.Itoa(s.Status)
	case s.Error != "":
		status = "error"
	}
	method := s.Method
	if method == "" {
		method = s.Kind
	}
	return []string{s.ID, s.Start.UTC().Format("2006-01-02 15:04:05.000"), dash(s.Labels.Service), dash(s.Direction),
		dash(method), status, micros(s.DurMicros), s.URL}
}

func newTrafficListCmd(hf *hubFlags) *cobra.Command {
	var ff filterFlags
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List records, newest first",
		Long: `List the records the filters select, newest first, as a table: id, start (UTC),
service, direction, method, status, duration and URL. --limit says how many
(default 50); speedctl follows the hub's cursors past its 1000 a page.
--json prints {"records": [...], "next": CURSOR} with the API's summaries.`,
		Example: `  speedctl traffic list
  speedctl traffic list --service orders --direction out --failed --since 15m
  speedctl traffic list --host api.stripe.com --method POST --limit 500 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 {
				return fmt.Errorf("--limit %d: want at least 1", limit)
			}
			q, err := ff.values()
			if err != nil {
				return err
			}
			c, err := hf.client()
			if err != nil {
				return err
			}
			var recs []json.RawMessage
			next := ""
			for len(recs) < limit {
				q.Set("limit", strconv.Itoa(min(limit-len(recs), listPageSize)))
				if next != "" {
					q.Set("cursor", next)
				}
				var page struct {
					Records []json.RawMessage `json:"records"`
					Next    string            `json:"next"`
				}
				if err := c.getJSON(cmd.Context(), "/api/v1/records", q, &page); err != nil {
					return err
				}
				recs = append(recs, page.Records...)
				next = page.Next
				if next == "" || len(page.Records) == 0 {
					break
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if recs == nil {
					recs = []json.RawMessage{}
				}
				out := struct {
					Records []json.RawMessage `json:"records"`
					Next    string            `json:"next,omitempty"`
				}{recs, next}
				enc := json.NewEncoder(w)
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if len(recs) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no records")
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTART (UTC)\tSERVICE\tDIR\tMETHOD\tSTATUS\tDURATION\tURL")
			for _, raw := range recs {
				var s summary
				if err := json.Unmarshal(raw, &s); err != nil {
					return fmt.Errorf("hub %s: a record summary: %w", c.base, err)
				}
				fmt.Fprintln(tw, strings.Join(s.columns(), "\t"))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "(more records: raise --limit, or narrow the filters)\n")
			}
			return nil
		},
	}
	ff.add(cmd)
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many records")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's summaries as JSON")
	return cmd
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

// bodyView is the hub's readable body (GET /api/v1/records/{id}/body/{side}).
type bodyView struct {
	ContentType string `json:"contentType"`
	Kind        string `json:"kind"`
	Text        string `json:"text"`
	Bytes       int64  `json:"bytes"`
	Size        int64  `json:"size"`
	Truncated   bool   `json:"truncated"`
	Note        string `json:"note"`
}

func newTrafficShowCmd(hf *hubFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one record: request, response, bodies",
		Long: `Show one record: its identity and timing, the request and response with their
headers, and the bodies made readable by the hub (Content-Encoding undone, JSON
indented; binary bodies are only sized). --json prints the whole record as the
hub stores it (docs/record.md).`,
		Example: `  speedctl traffic show 01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e10
  speedctl traffic show 01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e10 --json | jq .http.res.status`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			c, err := hf.client()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			path := "/api/v1/records/" + url.PathEscape(id)
			if err := c.getJSON(cmd.Context(), path, nil, &raw); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				return enc.Encode(raw)
			}
			var r capture.Record
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("hub %s: record %s: %w", c.base, id, err)
			}
			fmt.Fprintf(w, "id:        %s\n", r.ID)
			fmt.Fprintf(w, "start:     %s\n", r.Start.UTC().Format(time.RFC3339Nano))
			fmt.Fprintf(w, "duration:  %s\n", micros(r.DurMicros))
			fmt.Fprintf(w, "kind:      %s, direction %s\n", r.Kind, r.Direction)
			l := r.Labels
			fmt.Fprintf(w, "service:   %s (cluster %s, namespace %s, pod %s)\n", dash(l.Service), dash(l.Cluster), dash(l.Namespace), dash(l.Pod))
			if r.Net.ClientAddr != "" || r.Net.ServerAddr != "" {
				fmt.Fprintf(w, "net:       %s -> %s\n", dash(r.Net.ClientAddr), dash(r.Net.ServerAddr))
			}
			if r.Error != "" {
				fmt.Fprintf(w, "error:     %s\n", r.Error)
			}
			switch {
			case r.HTTP != nil:
				req := r.HTTP.Req
				fmt.Fprintf(w, "\n> %s %s %s\n", req.Method, req.URL, req.Proto)
				for _, h := range req.Headers {
					fmt.Fprintf(w, "> %s: %s\n", h.Name, h.Value)
				}
				if err := showBody(cmd.Context(), w, c, path, "req", req.Body.Size); err != nil {
					return err
				}
				if res := r.HTTP.Res; res != nil {
					fmt.Fprintf(w, "\n< %s %d %s\n", res.Proto, res.Status, res.StatusText)
					for _, h := range res.Headers {
						fmt.Fprintf(w, "< %s: %s\n", h.Name, h.Value)
					}
					if err := showBody(cmd.Context(), w, c, path, "res", res.Body.Size); err != nil {
						return err
					}
				} else {
					fmt.Fprintln(w, "\n(no response)")
				}
			case r.TCP != nil:
				fmt.Fprintf(w, "\ntcp:       %d bytes up, %d bytes down, %d chunks captured\n", r.TCP.BytesUp, r.TCP.BytesDown, len(r.TCP.Chunks))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the whole record as JSON")
	return cmd
}

func showBody(ctx context.Context, w io.Writer, c *hubClient, path, side string, size int64) error {
	if size == 0 {
		return nil
	}
	var b bodyView
	if err := c.getJSON(ctx, path+"/body/"+side, nil, &b); err != nil {
		return err
	}
	fmt.Fprintln(w)
	switch b.Kind {
	case "json", "text":
		fmt.Fprintln(w, strings.TrimSuffix(b.Text, "\n"))
	case "binary":
		fmt.Fprintf(w, "(binary body, %d bytes, %s)\n", b.Bytes, dash(b.ContentType))
	}
	if b.Truncated {
		fmt.Fprintf(w, "(captured only the first bytes of %d)\n", b.Size)
	}
	if b.Note != "" {
		fmt.Fprintf(w, "(%s)\n", b.Note)
	}
	return nil
}

// exportPageSize is how many whole records export asks the hub for at a
// time: a page is held in memory, and records hold bodies of up to the
// capture cap (1 MiB each side by default).
var exportPageSize = 200

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newTrafficExportCmd(hf *hubFlags) *cobra.Command {
	var ff filterFlags
	var fmtName, output string
	var limit int
	var noProgress bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export records as HAR, our JSONL or the vendor's raw.jsonl",
		Long: `Export the records the filters select, newest first, to -o FILE or standard
output:

  --format har    HAR 1.2, one entry per HTTP record (TCP records are left out)
  --format jsonl  our records, one per line: what ` + "`hub import`" + ` and ` + "`traffic import`" + ` read
  --format raw    the vendor's raw.jsonl, one RRPair per line

speedctl reads the records page by page (200 at a time) through the hub's
cursors and writes them as the hub's export endpoints do, so an export has no
size limit: all the records the filters select, or the first --limit. A progress
bar (records and their rate) goes to standard error when it is a terminal
(--no-progress turns it off). If the transfer breaks, the file is removed and
speedctl fails, so a partial export is never taken for a whole one.`,
		Example: `  speedctl traffic export --format har --service orders --since 1h -o orders.har
  speedctl traffic export --format jsonl --since 7d > week.jsonl
  speedctl traffic export --format raw --status 5xx --limit 1000 -o failures.raw.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if _, err := fmtpkg.Parse(fmtName); err != nil {
				return fmt.Errorf("--format %q: want %s", fmtName, fmtpkg.List())
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (all) or more", limit)
			}
			q, err := ff.values()
			if err != nil {
				return err
			}
			c, err := hf.client()
			if err != nil {
				return err
			}
			// Ask for the first page before creating the file, so that a
			// bad key or filter leaves nothing behind.
			q.Set("full", "true")
			pageSize := exportPageSize
			if limit > 0 {
				pageSize = min(limit, pageSize)
			}
			q.Set("limit", strconv.Itoa(pageSize))
			var page struct {
				Records []struct {
					Record *capture.Record `json:"record"`
				} `json:"records"`
				Next string `json:"next"`
			}
			if err := c.getJSON(cmd.Context(), "/api/v1/records", q, &page); err != nil {
				return err
			}

			var out io.Writer = cmd.OutOrStdout()
			if output != "" && output != "-" {
				f, err := os.Create(output)
				if err != nil {
					return err
				}
				defer func() {
					if cerr := f.Close(); err == nil && cerr != nil {
						err = cerr
					}
					if err != nil {
						os.Remove(output)
					}
				}()
				out = f
			}
			cw := &countingWriter{w: out}
			bw := bufio.NewWriterSize(cw, 64<<10)
			rw, err := fmtpkg.NewWriter(fmtpkg.Name(fmtName), bw, har.Creator{Name: "speedctl", Version: version})
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			var bar *progressbar.ProgressBar
			if !noProgress && isTerminal(stderr) {
				total := int64(-1)
				if limit > 0 {
					total = int64(limit)
				}
				bar = progressbar.NewOptions64(total,
					progressbar.OptionSetWriter(stderr),
					progressbar.OptionSetDescription("exporting "+fmtName),
					progressbar.OptionSetItsString("records"),
					progressbar.OptionShowIts(),
					progressbar.OptionShowCount(),
					progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionSpinnerType(14),
					progressbar.OptionClearOnFinish(),
				)
			}
			n := 0
			for {
				for _, it := range page.Records {
					if it.Record == nil {
						return fmt.Errorf("hub %s: a page of records without the records (full=true): is it older than this speedctl?", c.base)
					}
					if err := rw.Write(it.Record); err != nil {
						return fmt.Errorf("write %s: %w", dash(output), err)
					}
					n++
				}
				if bar != nil {
					_ = bar.Set(n)
				}
				if page.Next == "" || len(page.Records) == 0 || (limit > 0 && n >= limit) {
					break
				}
				if limit > 0 {
					q.Set("limit", strconv.Itoa(min(limit-n, exportPageSize)))
				}
				q.Set("cursor", page.Next)
				page.Records, page.Next = nil, ""
				if err := c.getJSON(cmd.Context(), "/api/v1/records", q, &page); err != nil {
					return fmt.Errorf("export cut short after %d records: %w", n, err)
				}
			}
			if bar != nil {
				_ = bar.Finish()
			}
			if err := rw.Close(); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("write %s: %w", dash(output), err)
			}
			if output != "" && output != "-" {
				what := fmt.Sprintf("%d records", n)
				if hw, ok := rw.(*har.Writer); ok && hw.Entries() != n {
					what = fmt.Sprintf("%d entries; %d TCP records left out", hw.Entries(), n-hw.Entries())
				}
				fmt.Fprintf(stderr, "wrote %s (%s, %d bytes)\n", output, what, cw.n)
			}
			return nil
		},
	}
	ff.add(cmd)
	cmd.Flags().StringVar(&fmtName, "format", "har", "har, jsonl (our records) or raw (the vendor's raw.jsonl)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file (default standard output)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many records (default 0: all the filters select)")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "no progress bar, even on a terminal")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Import bounds: records and estimated bytes per batch. The hub takes
// batches of up to HUB_MAX_BATCH_BYTES (default 32 MiB) decoded.
const (
	importBatchRecords = 500
	importBatchBytes   = 8 << 20
	importTries        = 6 // per batch, for 429, 503 and an unreachable hub
)

// importSummary is what import did; --json prints it.
type importSummary struct {
	Files    int            `json:"files"`
	Formats  map[string]int `json:"formats"` // files per format
	Read     int            `json:"read"`    // records read
	Sent     int            `json:"sent"`    // records the hub accepted
	Batches  int            `json:"batches"`
	New      *int           `json:"new,omitempty"` // of Sent, not stored before; when the hub says
	Hub      string         `json:"hub"`
	Duration string         `json:"duration"`
}

func newTrafficImportCmd(hf *hubFlags) *cobra.Command {
	var ingestKey string
	var batchSize int
	var noProgress, asJSON bool
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Import records from HAR, our JSONL or the vendor's raw.jsonl into the hub",
		Long: `Import records into the hub from files in any of the export formats, told
apart by their content: HAR (1.2, ours or a browser's), our JSONL (records.jsonl,
the file sink's files; a folder of records-*.jsonl) and the vendor's raw.jsonl.
- reads standard input.

The records go to the hub as a forwarder sends them: batches of at most 500
records (--batch) on POST /v1/batches, with an ingest key: --ingest-key, else
$` + ingestKeyKey + `, else the config file's ` + ingestKeyKey + ` (the forwarder's key;
make one with ` + "`hub keys create -tenant T -role ingest`" + `). The hub puts the
records in the key's tenant. Records are idempotent by id, so importing a file
twice stores nothing new; entries of other tools' HAR files get ids made from
their content for that.

A progress bar goes to standard error when it is a terminal (--no-progress
turns it off); at the end one line says what was read and sent (--json: as
JSON on standard output). A bad file stops the import with its name and line;
the batches sent before it stay stored, and importing again is safe.`,
		Example: `  speedctl traffic import traffic.har
  speedctl traffic import --ingest-key tw_... week.jsonl snapshot/raw.jsonl
  speedctl traffic export --format jsonl --hub https://old-hub:8080 | speedctl traffic import -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if batchSize < 1 || batchSize > 10000 {
				return fmt.Errorf("--batch %d: want 1 to 10000", batchSize)
			}
			c, err := hf.ingestClient(ingestKey)
			if err != nil {
				return err
			}
			files, err := importFiles(args)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			im := &importer{c: c, ctx: cmd.Context(), max: batchSize, sum: importSummary{Formats: map[string]int{}, Hub: c.base.String()}}
			if !noProgress && isTerminal(stderr) {
				var total int64
				for _, f := range files {
					if f == "-" {
						total = -1
						break
					}
					if fi, err := os.Stat(f); err == nil {
						total += fi.Size()
					}
				}
				im.bar = progressbar.NewOptions64(total,
					progressbar.OptionSetWriter(stderr),
					progressbar.OptionSetDescription("importing"),
					progressbar.OptionShowBytes(true),
					progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionShowCount(),
					progressbar.OptionSpinnerType(14),
					progressbar.OptionClearOnFinish(),
				)
			}
			began := time.Now()
			err = im.run(files, cmd.InOrStdin())
			if im.bar != nil {
				_ = im.bar.Finish()
			}
			if err != nil {
				if im.sum.Sent > 0 {
					err = fmt.Errorf("%w\n(%d records of earlier batches are stored; importing again is safe: records are idempotent by id)", err, im.sum.Sent)
				}
				return err
			}
			im.sum.Duration = time.Since(began).Round(time.Millisecond).String()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(im.sum)
			}
			fmt.Fprintln(stderr, im.sum.String())
			return nil
		},
	}
	cmd.Flags().StringVar(&ingestKey, "ingest-key", "", "an ingest key of the hub, tw_... (default $"+ingestKeyKey+", else the config's "+ingestKeyKey+")")
	cmd.Flags().IntVar(&batchSize, "batch", importBatchRecords, "records per batch (the batch is also kept under 8 MiB)")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "no progress bar, even on a terminal")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON on standard output")
	return cmd
}

func (s *importSummary) String() string {
	var formats []string
	for _, f := range []string{"har", "jsonl", "raw"} {
		if n := s.Formats[f]; n > 0 {
			formats = append(formats, fmt.Sprintf("%d %s", n, f))
		}
	}
	line := fmt.Sprintf("imported %d records from %d %s (%s) into %s: %d sent in %d %s",
		s.Read, s.Files, plural(s.Files, "file", "files"), strings.Join(formats, ", "), s.Hub, s.Sent, s.Batches, plural(s.Batches, "batch", "batches"))
	if s.New != nil {
		return line + fmt.Sprintf(", %d new, %d already there", *s.New, s.Sent-*s.New)
	}
	return line + ", all accepted (the hub's answer does not say how many were already there; records are idempotent by id)"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// importFiles expands the arguments: a folder gives its record files
// (records-*.jsonl, as hub import reads it), - is standard input.
func importFiles(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		if a == "-" {
			files = append(files, a)
			continue
		}
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, a)
			continue
		}
		fs, err := file.Files(a)
		if err != nil {
			return nil, err
		}
		if len(fs) == 0 {
			return nil, fmt.Errorf("%s: no record files (records-*.jsonl) in this folder", a)
		}
		files = append(files, fs...)
	}
	return files, nil
}

// importer reads files and posts their records in batches.
type importer struct {
	c     *hubClient
	ctx   context.Context
	max   int
	bar   *progressbar.ProgressBar
	batch []*capture.Record
	size  int64
	sum   importSummary
	news  int
	said  bool // every answer said how many were new
}

func (im *importer) run(files []string, stdin io.Reader) error {
	im.said = true
	for _, name := range files {
		if err := im.file(name, stdin); err != nil {
			return err
		}
	}
	if err := im.flush(); err != nil {
		return err
	}
	if im.said {
		im.sum.New = &im.news
	}
	return nil
}

// file imports one file, - for stdin.
func (im *importer) file(name string, stdin io.Reader) error {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	} else {
		name = "standard input"
	}
	if im.bar != nil {
		pr := progressbar.NewReader(r, im.bar)
		r = &pr
	}
	got, err := fmtpkg.ReadRecords(r, im.add)
	if err != nil {
		var se *sendError
		if errors.As(err, &se) {
			return se.err
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	im.sum.Files++
	im.sum.Formats[string(got)]++
	return nil
}

// sendError is a failure to send, passed through the readers unchanged.
type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }

func (im *importer) add(r *capture.Record) error {
	im.sum.Read++
	n := wire.EstimateSize(r)
	if len(im.batch) > 0 && (len(im.batch) >= im.max || im.size+n > importBatchBytes) {
		if err := im.flush(); err != nil {
			return &sendError{err}
		}
	}
	im.batch = append(im.batch, r)
	im.size += n
	return nil
}

func (im *importer) flush() error {
	if len(im.batch) == 0 {
		return nil
	}
	if err := im.send(im.batch); err != nil {
		return err
	}
	im.batch, im.size = im.batch[:0], 0
	return nil
}

// send posts one batch, retrying what may pass (429, 5xx, an unreachable
// hub) with the hub's Retry-After or a growing wait, and splitting a batch
// the hub finds too large.
func (im *importer) send(recs []*capture.Record) error {
	var body bytes.Buffer
	if err := wire.EncodeBatch(&body, recs); err != nil {
		return err
	}
	wait := time.Second
	for try := 1; ; try++ {
		accepted, news, err := im.post(body.Bytes(), recs)
		if err == nil {
			im.sum.Batches++
			im.sum.Sent += accepted
			if news < 0 {
				im.said = false
			} else {
				im.news += news
			}
			return nil
		}
		var se *wire.ServerError
		switch {
		case errors.As(err, &se) && se.TooLarge() && len(recs) > 1:
			half := len(recs) / 2
			if err := im.send(recs[:half]); err != nil {
				return err
			}
			return im.send(recs[half:])
		case errors.As(err, &se) && se.TooLarge():
			return fmt.Errorf("record %s is larger than the hub takes in one batch (HUB_MAX_BATCH_BYTES): %s", recs[0].ID, se.Message)
		case errors.As(err, &se) && se.Permanent():
			return im.refused(se)
		}
		if im.sum.Batches == 0 && !errors.As(err, &se) {
			return err // the first batch: a wrong --hub, not an outage
		}
		if try == importTries {
			return fmt.Errorf("%w (gave up after %d tries)", im.describe(err), try)
		}
		d := wait
		if errors.As(err, &se) && se.Wait > 0 {
			d = se.Wait
		}
		wait = min(2*wait, 30*time.Second)
		select {
		case <-time.After(d):
		case <-im.ctx.Done():
			return im.ctx.Err()
		}
	}
}

// post sends an encoded batch once. news is -1 when the hub's answer does
// not say how many records were new.
func (im *importer) post(body []byte, recs []*capture.Record) (accepted, news int, err error) {
	c := im.c
	req, err := wire.NewRequest(im.ctx, c.base.String()+wire.Path, body, wire.BatchID(recs), len(recs), c.key)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("User-Agent", "speedctl/"+version)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, 0, c.transportError(err)
	}
	defer resp.Body.Close()
	a, err := wire.ParseResponse(resp)
	if err != nil {
		return 0, 0, err
	}
	accepted, news = a.Accepted, -1
	if accepted < 0 {
		accepted = len(recs) // 200 means all of them
	}
	if a.New != nil {
		news = *a.New
	}
	return accepted, news, nil
}

// refused says what to do about a batch the hub will not take.
func (im *importer) refused(se *wire.ServerError) error {
	c := im.c
	switch se.Status {
	case http.StatusUnauthorized:
		return fmt.Errorf("hub %s refused the ingest key (401: %s): check --ingest-key or %s; import needs a live ingest key of the hub (`hub keys create -tenant T -role ingest`)", c.base, se.Message, ingestKeyKey)
	case http.StatusForbidden:
		return fmt.Errorf("hub %s: %s (403): import needs an ingest key (role ingest), as a forwarder has; pass it with --ingest-key or %s", c.base, se.Message, ingestKeyKey)
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fmt.Errorf("hub %s answered %d to POST %s: is this a Tapwire hub? (check --hub or %s)", c.base, se.Status, wire.Path, hubURLKey)
	}
	return fmt.Errorf("hub %s refused a batch (%d %s): %s", c.base, se.Status, http.StatusText(se.Status), se.Message)
}

func (im *importer) describe(err error) error {
	var se *wire.ServerError
	if errors.As(err, &se) {
		return fmt.Errorf("hub %s answered %d %s: %s", im.c.base, se.Status, http.StatusText(se.Status), se.Message)
	}
	return err
}

// tailMaxWindow bounds the records tail holds from one poll: those of the
// last --lag that match the filters.
const tailMaxWindow = 100_000

// tailItem is a record summary as the API gave it, and decoded.
type tailItem struct {
	raw json.RawMessage
	s   summary
}

func newTrafficTailCmd(hf *hubFlags) *cobra.Command {
	var ff filterFlags
	var asJSON, full bool
	var count int
	var forDur, interval, lag time.Duration
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print records as they reach the hub, until Ctrl-C",
		Long: `Print the records that match the filters as they reach the hub, one table row
(or, with --json, one API summary a line; --full: the whole record) each, until
Ctrl-C, --count records or --for a while. --since or --from first prints the
records of that period, oldest first.

The hub's API lists records by their start time, not by when they arrived, so
tail asks every --interval (default 1s) for the records that started in the
last --lag (default 1m) and prints those it has not printed. A record is
printed once, when it has arrived; a record that reaches the hub more than
--lag after it started (a request longer than that, a forwarder that was
away) is missed: raise --lag for those, at the cost of a larger poll.`,
		Example: `  speedctl traffic tail --service orders --failed
  speedctl traffic tail --since 5m --json | jq -r .url
  speedctl traffic tail --host api.stripe.com --count 10 --for 1m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case ff.to != "":
				return errors.New("--to: tail has no end; use list or export for a closed period")
			case count < 0:
				return fmt.Errorf("--count %d: want 0 (no limit) or more", count)
			case interval < 10*time.Millisecond:
				return fmt.Errorf("--interval %s: want at least 10ms", interval)
			case lag < time.Second:
				return fmt.Errorf("--lag %s: want at least 1s", lag)
			}
			q, err := ff.values()
			if err != nil {
				return err
			}
			from := q.Get("from")
			q.Del("from")
			c, err := hf.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			if forDur > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, forDur)
				defer cancel()
			}
			t := &tailer{c: c, q: q, w: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), json: asJSON || full, full: full, count: count}
			err = t.run(ctx, from, lag, interval)
			if errors.Is(err, errTailDone) {
				return nil
			}
			if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || err == nil) {
				return nil // Ctrl-C or --for: the end of a tail
			}
			return err
		},
	}
	ff.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's summary of each record, one JSON object a line")
	cmd.Flags().BoolVar(&full, "full", false, "print each whole record, one JSON object a line (as show --json)")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many records (default 0: no limit)")
	cmd.Flags().DurationVar(&forDur, "for", 0, "stop after this long: 30s, 5m (default 0: until Ctrl-C)")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often to ask the hub")
	cmd.Flags().DurationVar(&lag, "lag", time.Minute, "how late after its start a record may reach the hub and still be printed")
	return cmd
}

// tailer prints new records of successive polls.
type tailer struct {
	c          *hubClient
	q          url.Values // the filters, without from
	w, stderr  io.Writer
	json, full bool
	count      int // stop after this many; 0: no limit
	printed    int
}

var errTailDone = errors.New("tail: --count reached")

func (t *tailer) run(ctx context.Context, from string, lag, interval time.Duration) error {
	window := "-" + lag.String()
	// The records there are now are not new: remember them, print none.
	base, err := t.poll(ctx, window)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(base))
	for _, it := range base {
		seen[it.s.ID] = true
	}
	if !t.json {
		fmt.Fprintf(t.w, "%-36s  %-23s  %-12s  %-3s  %-7s  %-6s  %-9s  %s\n", "ID", "START (UTC)", "SERVICE", "DIR", "METHOD", "STATUS", "DURATION", "URL")
	}
	if from != "" {
		// Asked after the baseline, so that a record arriving between the
		// two is printed here or by the first poll, not lost.
		back, err := t.poll(ctx, from)
		if err != nil {
			return err
		}
		if err := t.print(ctx, back, nil); err != nil {
			return err
		}
		for _, it := range back {
			seen[it.s.ID] = true
		}
	}
	fmt.Fprintf(t.stderr, "following %s every %s (records that reach it up to %s after they started); Ctrl-C stops\n", t.c.base, interval, lag)
	failing := false
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		recs, err := t.poll(ctx, window)
		var te *transientError
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &te):
			if !failing {
				fmt.Fprintf(t.stderr, "tail: %v; asking again every %s (records older than %s when it answers again are missed)\n", err, interval, lag)
				failing = true
			}
			continue
		case err != nil:
			return err
		case failing:
			fmt.Fprintln(t.stderr, "tail: the hub answers again")
			failing = false
		}
		if err := t.print(ctx, recs, seen); err != nil {
			return err
		}
		// What the next poll can return again is in this one: the
		// window only moves forward, and what is new next time is not here.
		seen = make(map[string]bool, len(recs))
		for _, it := range recs {
			seen[it.s.ID] = true
		}
	}
}

// poll returns every record that matches the filters and started at or
// after from, newest first, following the cursors.
func (t *tailer) poll(ctx context.Context, from string) ([]tailItem, error) {
	q := url.Values{}
	for k, v := range t.q {
		q[k] = v
	}
	q.Set("from", from)
	q.Set("limit", strconv.Itoa(listPageSize))
	var out []tailItem
	for {
		var page struct {
			Records []json.RawMessage `json:"records"`
			Next    string            `json:"next"`
		}
		if err := t.c.getJSON(ctx, "/api/v1/records", q, &page); err != nil {
			return nil, err
		}
		for _, raw := range page.Records {
			it := tailItem{raw: raw}
			if err := json.Unmarshal(raw, &it.s); err != nil {
				return nil, fmt.Errorf("hub %s: a record summary: %w", t.c.base, err)
			}
			out = append(out, it)
		}
		if len(out) > tailMaxWindow {
			return nil, fmt.Errorf("more than %d records started in the period asked (from=%s): narrow the filters, or lower --lag or --since", tailMaxWindow, from)
		}
		if page.Next == "" || len(page.Records) == 0 {
			return out, nil
		}
		q.Set("cursor", page.Next)
	}
}

// print prints the records of recs (newest first) that are not in seen,
// oldest first, and stops with errTailDone at --count.
func (t *tailer) print(ctx context.Context, recs []tailItem, seen map[string]bool) error {
	for i := len(recs) - 1; i >= 0; i-- {
		it := recs[i]
		if seen[it.s.ID] {
			continue
		}
		switch {
		case t.full:
			var raw json.RawMessage
			err := t.c.getJSON(ctx, "/api/v1/records/"+url.PathEscape(it.s.ID), nil, &raw)
			var nf notFoundError
			if errors.As(err, &nf) {
				continue // deleted meanwhile (retention)
			}
			if err != nil {
				return err
			}
			if err := t.line(raw); err != nil {
				return err
			}
		case t.json:
			if err := t.line(it.raw); err != nil {
				return err
			}
		default:
			c := it.s.columns()
			if _, err := fmt.Fprintf(t.w, "%-36s  %-23s  %-12s  %-3s  %-7s  %-6s  %-9s  %s\n", c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]); err != nil {
				return err
			}
		}
		t.printed++
		if t.count > 0 && t.printed >= t.count {
			return errTailDone
		}
	}
	return nil
}

func (t *tailer) line(raw json.RawMessage) error {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := t.w.Write(b.Bytes())
	return err
}
