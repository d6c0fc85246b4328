package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/hubclient"
	"github.com/tapwire/tapwire/internal/store"
)

// snapshotShowOptions are the flags of snapshot show.
type snapshotShowOptions struct {
	id   string
	json bool
}

func newSnapshotShowCmd(sf *snapshotFlags) *cobra.Command {
	var o snapshotShowOptions
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a snapshot: what it was cut from, and its records counted",
		Long: `Show one snapshot: its name, when and from what it was made (the filter and
window, or an upload), and its records counted by direction, service, host and
endpoint (direction, method, host and route: the path with ids as {id}), most
first. --json prints the API's snapshot with its counts.`,
		Example: `  speedctl snapshot show snap_k2x7q4mzt6a3wbnf
  speedctl snapshot show snap_k2x7q4mzt6a3wbnf --json | jq '.counts.endpoints[] | select(.direction == "out")'`,
		Args: cobra.ExactArgs(1),
		RunE: sf.readE(&o),
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the API's snapshot as JSON")
	return cmd
}

func (o *snapshotShowOptions) prepare(args []string) error {
	o.id = args[0]
	return nil
}

func (o *snapshotShowOptions) run(ctx context.Context, c *hubclient.Client, stdout, stderr io.Writer) error {
	sn, err := c.Snapshot(ctx, o.id)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, sn, true)
	}
	fmt.Fprintf(stdout, "%s\ncreated %s UTC, %s", snapshotLine(sn), sn.Created.UTC().Format("2006-01-02 15:04:05"), sn.Source)
	if sn.Filter != nil {
		if q := filterValues(*sn.Filter); q != "" {
			fmt.Fprintf(stdout, " of %s", q)
		} else {
			fmt.Fprint(stdout, " of all records")
		}
	}
	fmt.Fprintln(stdout)
	if sn.Counts == nil {
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, t := range []struct {
		title string
		rows  []store.Count
	}{{"DIRECTION", sn.Counts.Directions}, {"SERVICE", sn.Counts.Services}, {"HOST", sn.Counts.Hosts}} {
		fmt.Fprintf(tw, "\n%s\tRECORDS\n", t.title)
		for _, r := range t.rows {
			fmt.Fprintf(tw, "%s\t%d\n", dash(r.Name), r.Count)
		}
	}
	fmt.Fprintf(tw, "\nDIR\tMETHOD\tHOST\tROUTE\tRECORDS\n")
	for _, e := range sn.Counts.Endpoints {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", e.Direction, dash(e.Method), dash(e.Host), dash(e.Route), e.Count)
	}
	return tw.Flush()
}

// filterValues writes a filter as its query parameters, a=b&c=d, in the
// API's order; "" for none.
func filterValues(f apitype.Filter) string {
	q := url.Values{}
	f.Encode(q)
	var parts []string
	for _, k := range []string{"service", "direction", "method", "status", "failed", "host", "path", "q"} {
		if v := q.Get(k); v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}
