package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/hubclient"
	"github.com/tapwire/tapwire/internal/store"
)

// trafficListOptions are the flags of traffic list.
type trafficListOptions struct {
	ff     filterFlags
	filter apitype.Filter
	limit  int
	json   bool
}

func newTrafficListCmd(hf *hubFlags) *cobra.Command {
	var o trafficListOptions
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
		RunE: hf.runE(&o),
	}
	o.ff.add(cmd)
	cmd.Flags().IntVar(&o.limit, "limit", 50, "at most this many records")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the API's summaries as JSON")
	return cmd
}

func (o *trafficListOptions) prepare([]string) (err error) {
	if o.limit < 1 {
		return fmt.Errorf("--limit %d: want at least 1", o.limit)
	}
	o.filter, err = o.ff.filter()
	return err
}

func (o *trafficListOptions) run(ctx context.Context, c *hubclient.Client, stdout, stderr io.Writer) error {
	recs := []store.Item{}
	q := apitype.ListQuery{Filter: o.filter}
	for len(recs) < o.limit {
		q.Limit = min(o.limit-len(recs), listPageSize)
		page, err := c.List(ctx, q)
		if err != nil {
			return err
		}
		recs = append(recs, page.Records...)
		q.Cursor = page.Next
		if page.Next == "" || len(page.Records) == 0 {
			break
		}
	}
	if o.json {
		return writeJSON(stdout, apitype.RecordList{Records: recs, Next: q.Cursor}, true)
	}
	if len(recs) == 0 {
		fmt.Fprintln(stderr, "no records")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTART (UTC)\tSERVICE\tDIR\tMETHOD\tSTATUS\tDURATION\tURL")
	for i := range recs {
		fmt.Fprintln(tw, strings.Join(columns(&recs[i].Summary), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if q.Cursor != "" {
		fmt.Fprintf(stderr, "(more records: raise --limit, or narrow the filters)\n")
	}
	return nil
}
