package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Run starts the stack, prints where everything is and what to try, keeps
// a summary line until ctx is done (Ctrl-C) or cfg.For has passed, then
// stops everything and says how many records the hub holds.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	w := cfg.Out
	s.header(w)

	var deadline <-chan time.Time
	if cfg.For > 0 {
		t := time.NewTimer(cfg.For)
		defer t.Stop()
		deadline = t.C
	}
	every := cfg.Every
	if cfg.Live {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()

	var runErr error
	last, lastAt := Stats{}, time.Now()
	printed := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline:
			break loop
		case runErr = <-s.Failed():
			break loop
		case now := <-tick.C:
			st, err := s.Stats(ctx)
			if err != nil && ctx.Err() != nil {
				break loop
			}
			line := summary(st, last, now.Sub(lastAt))
			last, lastAt = st, now
			if cfg.Live {
				fmt.Fprint(w, "\r\x1b[K"+line)
			} else {
				fmt.Fprintln(w, line)
			}
			printed = true
		}
	}
	// The last state, before stopping: also when no tick came yet.
	if st, err := s.Stats(context.Background()); err == nil {
		line := summary(st, last, time.Since(lastAt))
		if cfg.Live {
			fmt.Fprint(w, "\r\x1b[K"+line)
		} else {
			fmt.Fprintln(w, line)
		}
		printed = true
	}
	if cfg.Live && printed {
		fmt.Fprintln(w)
	}
	if runErr != nil {
		fmt.Fprintf(w, "A part stopped: %v; stopping the rest (details in %s).\n", runErr, s.LogFile)
	} else {
		if cfg.AppPort == 0 {
			fmt.Fprintln(w, "Stopping: the traffic first, then goproxy and the forwarder deliver what they hold to the hub...")
		} else {
			fmt.Fprintln(w, "Stopping: goproxy and the forwarder deliver what they hold to the hub...")
		}
	}
	run, held, err := s.Stop()
	if err != nil {
		return fmt.Errorf("count the hub's records: %w", err)
	}
	fmt.Fprintf(w, "Stopped. The hub holds %s (%d captured in this run) in %s.\n", plural(held, "record"), run, shortPath(cfg.DataDir))
	if cfg.AppPort == 0 {
		fmt.Fprintf(w, "They are kept for the next `%s demo`; delete the folder to start afresh.\n", cfg.Self)
	} else {
		fmt.Fprintf(w, "They are kept for the next `%s capture`; delete the folder to start afresh.\n", cfg.Self)
	}
	return runErr
}

// summary is the live line: what goproxy captured, what the forwarder
// delivered, what the hub stored (and how many failed), and the rate.
func summary(st, last Stats, dt time.Duration) string {
	rate := 0.0
	if dt > 0 {
		rate = float64(st.Captured-last.Captured) / dt.Seconds()
	}
	line := fmt.Sprintf("captured %d · delivered %d · stored %d (%d failed) · %.1f records/s",
		st.Captured, st.Delivered, st.Stored, st.Failed, rate)
	if st.Dropped > 0 {
		line += fmt.Sprintf(" · dropped %d", st.Dropped)
	}
	if st.NoAnswer > 0 {
		line += fmt.Sprintf(" · %d requests unanswered", st.NoAnswer)
	}
	return line
}

// header says what runs where, how to sign in to the viewer and what to
// try next.
func (s *Stack) header(w io.Writer) {
	c := s.cfg
	row := func(name, addr, what string) { fmt.Fprintf(w, "  %-10s %-27s %s\n", name, addr, what) }
	if c.AppPort == 0 {
		fmt.Fprintln(w, "Tapwire demo: capture, forwarding and the hub, all on this machine.")
		fmt.Fprintln(w)
		row("traffic", s.InURL, fmt.Sprintf("%g requests/s from a shopper, into goproxy", c.Rate))
		row("goproxy", s.InURL, "inbound: captures each request and passes it to the app")
		row("orders", s.AppURL, "the app: a small shop's JSON API")
		row("goproxy", s.OutURL, "outbound: the app's HTTPS calls, TLS unwrapped and captured")
		row("payments", s.UpstreamURL, "the HTTPS upstream the app charges cards at")
	} else {
		fmt.Fprintf(w, "Tapwire capture: goproxy in front of your app on 127.0.0.1:%d, the forwarder and the hub, all on this machine.\n", c.AppPort)
		fmt.Fprintln(w)
		row("goproxy", s.InURL, fmt.Sprintf("inbound: send your requests here; it passes them to 127.0.0.1:%d", c.AppPort))
		row("goproxy", s.OutURL, "outbound: your app's own HTTP and HTTPS calls (see below)")
	}
	row("forwarder", s.ForwarderURL, "receives goproxy's records, redacts, spools, delivers")
	row("hub", s.HubURL, "stores the records (SQLite); API and traffic viewer")
	fmt.Fprintf(w, "  data in %s (log: %s)\n", shortPath(c.DataDir), filepath.Base(s.LogFile))
	for _, m := range s.Moved {
		fmt.Fprintf(w, "  note: %s\n", m)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Open the traffic viewer, signed in: %s/#key=%s\n", s.HubURL, s.ReadKey)
	fmt.Fprintf(w, "  (the read key is in the address's fragment, which the browser never sends to the hub)\n")
	fmt.Fprintln(w)
	if c.AppPort != 0 {
		fmt.Fprintln(w, "Send your app's traffic through goproxy:")
		fmt.Fprintf(w, "  curl %s/\n", s.InURL)
		fmt.Fprintln(w, "Capture its outbound calls too: restart it with")
		fmt.Fprintf(w, "  HTTP_PROXY=%s HTTPS_PROXY=%s SSL_CERT_FILE=%s\n", s.OutURL, s.OutURL, s.CAFile)
		fmt.Fprintln(w, "  (Python requests: REQUESTS_CA_BUNDLE; Node: NODE_EXTRA_CA_CERTS; the same file)")
		fmt.Fprintln(w, "  (Go programs skip HTTP_PROXY for localhost and 127.0.0.1.)")
		if !reachable(c.AppPort) {
			fmt.Fprintf(w, "  note: nothing answers on 127.0.0.1:%d yet; goproxy answers 502 until your app is up.\n", c.AppPort)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Then, in another terminal:")
	fmt.Fprintf(w, "  export TAPWIRE_HUB_URL=%s TAPWIRE_READ_KEY=%s\n", s.HubURL, s.ReadKey)
	name := "capture"
	if c.AppPort == 0 {
		name = "demo"
	}
	hints := [][2]string{{c.Self + " traffic list --limit 20", "the newest records"}}
	if c.AppPort == 0 {
		hints = append(hints,
			[2]string{c.Self + " traffic list --direction out", "the app's HTTPS calls to payments, unwrapped"},
			[2]string{c.Self + " traffic list --status 5xx", "the inventory endpoint fails now and then"})
	}
	hints = append(hints, [2]string{c.Self + " traffic export --format har -o " + name + ".har", "for a browser's dev tools"})
	// import needs the ingest key, which the data folder's config holds.
	hints = append(hints, [2]string{c.Self + " --home " + shortPath(c.DataDir) + " traffic import FILE.har", "load a browser's HAR (or JSONL records) into this hub"})
	if c.AppPort == 0 {
		hints = append(hints, [2]string{"curl " + s.InURL + "/api/orders", "your own request, captured too"})
	}
	width := 0
	for _, h := range hints {
		width = max(width, len(h[0]))
	}
	for _, h := range hints {
		fmt.Fprintf(w, "  %-*s  # %s\n", width, h[0], h[1])
	}
	fmt.Fprintln(w)
	if c.For > 0 {
		fmt.Fprintf(w, "Running for %s (or until Ctrl-C).\n", c.For)
	} else {
		fmt.Fprintln(w, "Ctrl-C stops everything.")
	}
}

func reachable(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// shortPath writes a path under the home folder with ~.
func shortPath(p string) string {
	if h, err := os.UserHomeDir(); err == nil && h != "" && strings.HasPrefix(p, h+"/") {
		return "~" + p[len(h):]
	}
	return p
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.FormatInt(n, 10) + " " + noun + "s"
}
