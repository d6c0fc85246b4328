package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/hubclient"
	"github.com/tapwire/tapwire/internal/store"
)

// tailMaxBackfill bounds the records --since or --from prints first.
const tailMaxBackfill = 100_000

// trafficTailOptions are the flags of traffic tail.
type trafficTailOptions struct {
	ff                    filterFlags
	filter                apitype.Filter // without From
	from                  string         // --since or --from: the records to print first
	json, full            bool
	count                 int
	forDur, interval, lag time.Duration // lag: accepted, unused (deprecated)
}

func newTrafficTailCmd(hf *hubFlags) *cobra.Command {
	var o trafficTailOptions
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print records as they reach the hub, until Ctrl-C",
		Long: `Print the records that match the filters as they reach the hub, one table row
(or, with --json, one API summary a line; --full: the whole record) each, until
Ctrl-C, --count records or --for a while. --since or --from first prints the
records of that period, oldest first.

tail follows the hub's arrival order (GET /api/v1/records/arrivals): every
--interval (default 1s) it asks for the records stored since the last it
printed, so each record is printed once, when it reaches the hub, however long
after its start (a long request, a forwarder that was away). --lag, which the
look-back of earlier versions needed, is accepted and ignored.`,
		Example: `  speedctl traffic tail --service orders --failed
  speedctl traffic tail --since 5m --json | jq -r .url
  speedctl traffic tail --host api.stripe.com --count 10 --for 1m`,
		Args: cobra.NoArgs,
		RunE: hf.runE(&o),
	}
	o.ff.add(cmd)
	cmd.Flags().BoolVar(&o.json, "json", false, "print the API's summary of each record, one JSON object a line")
	cmd.Flags().BoolVar(&o.full, "full", false, "print each whole record, one JSON object a line (as show --json)")
	cmd.Flags().IntVar(&o.count, "count", 0, "stop after this many records (default 0: no limit)")
	cmd.Flags().DurationVar(&o.forDur, "for", 0, "stop after this long: 30s, 5m (default 0: until Ctrl-C)")
	cmd.Flags().DurationVar(&o.interval, "interval", time.Second, "how often to ask the hub")
	cmd.Flags().DurationVar(&o.lag, "lag", time.Minute, "ignored: tail follows the arrival order")
	_ = cmd.Flags().MarkDeprecated("lag", "tail follows the hub's arrival order and prints late records without it; it is ignored")
	return cmd
}

func (o *trafficTailOptions) prepare([]string) (err error) {
	switch {
	case o.ff.to != "":
		return errors.New("--to: tail has no end; use list or export for a closed period")
	case o.count < 0:
		return fmt.Errorf("--count %d: want 0 (no limit) or more", o.count)
	case o.interval < 10*time.Millisecond:
		return fmt.Errorf("--interval %s: want at least 10ms", o.interval)
	}
	o.filter, err = o.ff.filter()
	o.from, o.filter.From = o.filter.From, ""
	return err
}

func (o *trafficTailOptions) run(ctx context.Context, c *hubclient.Client, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	if o.forDur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.forDur)
		defer cancel()
	}
	t := &tailer{c: c, filter: o.filter, w: stdout, stderr: stderr, json: o.json || o.full, full: o.full, count: o.count}
	err := t.run(ctx, o.from, o.interval)
	if errors.Is(err, errTailDone) {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || err == nil) {
		return nil // Ctrl-C or --for: the end of a tail
	}
	return err
}

// tailer prints the records that arrive at the hub, following its
// arrival cursor.
type tailer struct {
	c          *hubclient.Client
	filter     apitype.Filter // without From
	w, stderr  io.Writer
	json, full bool
	count      int // stop after this many; 0: no limit
	printed    int
}

var errTailDone = errors.New("tail: --count reached")

func (t *tailer) run(ctx context.Context, from string, interval time.Duration) error {
	// The cursor of what arrives from now on: the records there are now
	// are not new.
	start, err := t.c.Arrivals(ctx, apitype.ArrivalsQuery{Filter: t.filter, After: apitype.AfterEnd})
	if err != nil {
		return err
	}
	after := start.Next
	if !t.json {
		fmt.Fprintf(t.w, "%-36s  %-23s  %-12s  %-3s  %-7s  %-6s  %-9s  %s\n", "ID", "START (UTC)", "SERVICE", "DIR", "METHOD", "STATUS", "DURATION", "URL")
	}
	// backfilled are the records --since printed: asked after the cursor
	// was taken, so that a record arriving between the two is printed
	// here or by the first arrivals, and skipped there if here.
	var backfilled map[string]bool
	if from != "" {
		back, err := t.backfill(ctx, from)
		if err != nil {
			return err
		}
		if err := t.print(ctx, back, nil); err != nil {
			return err
		}
		backfilled = make(map[string]bool, len(back))
		for _, it := range back {
			backfilled[it.ID] = true
		}
	}
	fmt.Fprintf(t.stderr, "following %s every %s, in arrival order; Ctrl-C stops\n", t.c, interval)
	failing := false
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		for {
			page, err := t.c.Arrivals(ctx, apitype.ArrivalsQuery{Filter: t.filter, After: after, Limit: store.MaxLimit})
			switch {
			case err != nil && ctx.Err() != nil:
				return ctx.Err()
			case hubclient.Retryable(err):
				if !failing {
					fmt.Fprintf(t.stderr, "tail: %v; asking again every %s (nothing is missed)\n", readHints.explain(err), interval)
					failing = true
				}
			case err != nil:
				return err
			case failing:
				fmt.Fprintln(t.stderr, "tail: the hub answers again")
				failing = false
			}
			if err != nil {
				break
			}
			// print takes newest first.
			slices.Reverse(page.Records)
			if err := t.print(ctx, page.Records, backfilled); err != nil {
				return err
			}
			after = page.Next
			if len(page.Records) < store.MaxLimit {
				break
			}
		}
	}
}

// backfill returns every record that matches the filters and started at
// or after from, newest first, following the cursors.
func (t *tailer) backfill(ctx context.Context, from string) ([]store.Item, error) {
	q := apitype.ListQuery{Filter: t.filter, Limit: listPageSize}
	q.From = from
	var out []store.Item
	for {
		page, err := t.c.List(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Records...)
		if len(out) > tailMaxBackfill {
			return nil, fmt.Errorf("more than %d records started since %s: narrow the filters or --since", tailMaxBackfill, from)
		}
		if page.Next == "" || len(page.Records) == 0 {
			return out, nil
		}
		q.Cursor = page.Next
	}
}

// print prints the records of recs (newest first) that are not in seen,
// oldest first, and stops with errTailDone at --count.
func (t *tailer) print(ctx context.Context, recs []store.Item, seen map[string]bool) error {
	for i := len(recs) - 1; i >= 0; i-- {
		it := &recs[i]
		if seen[it.ID] {
			continue
		}
		switch {
		case t.full:
			rec, err := t.c.Get(ctx, it.ID)
			if hubclient.StatusOf(err) == 404 {
				continue // deleted meanwhile (retention)
			}
			if err != nil {
				return err
			}
			if err := writeJSON(t.w, rec, false); err != nil {
				return err
			}
		case t.json:
			if err := writeJSON(t.w, &it.Summary, false); err != nil {
				return err
			}
		default:
			c := columns(&it.Summary)
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
