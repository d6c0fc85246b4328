package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/hubclient"
)

// snapshotCreateOptions are the flags of snapshot create.
type snapshotCreateOptions struct {
	ff   filterFlags
	name string
	json bool
	req  apitype.CreateSnapshotRequest
}

func newSnapshotCreateCmd(sf *snapshotFlags) *cobra.Command {
	var o snapshotCreateOptions
	cmd := &cobra.Command{
		Use:   "create --name NAME [filters]",
		Short: "Make a snapshot of the records the filters select",
		Long: `Make a snapshot in the hub of the records the traffic filters select (the same
flags as speedctl traffic list: --service, --direction, --method, --status,
--failed, --host, --path, --search) in the window --from/--to or --since. The
hub copies them at once, so what arrives later, or leaves by retention, does not
change it. It prints the snapshot's id; --json prints the API's snapshot.

Without a window a snapshot holds all the records the hub has that match, up to
1,000,000: narrow the window for more. It needs an ingest key.`,
		Example: `  speedctl snapshot create --name checkout --service orders --since 1h
  speedctl snapshot create --name stripe-calls --direction out --host api.stripe.com --from 2025-03-01T12:00:00Z --to 2025-03-01T13:00:00Z
  speedctl snapshot create --name failures --service orders --failed --since 1d --json`,
		Args: cobra.NoArgs,
		RunE: sf.writeE(&o),
	}
	o.ff.add(cmd)
	cmd.Flags().StringVar(&o.name, "name", "", "the snapshot's name, for people (required; need not be unique)")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the API's snapshot as JSON")
	return cmd
}

func (o *snapshotCreateOptions) prepare([]string) error {
	if o.name == "" {
		return errors.New("--name is required: a snapshot needs a name, as --name checkout")
	}
	f, err := o.ff.filter()
	if err != nil {
		return err
	}
	o.req = apitype.CreateSnapshotRequest{Name: o.name, Filter: f, From: f.From, To: f.To}
	o.req.Filter.From, o.req.Filter.To = "", ""
	return nil
}

func (o *snapshotCreateOptions) run(ctx context.Context, c *hubclient.Client, stdout, stderr io.Writer) error {
	sn, err := c.CreateSnapshot(ctx, o.req)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, sn, true)
	}
	fmt.Fprintln(stdout, sn.ID)
	fmt.Fprintf(stderr, "created %s\n", snapshotLine(sn))
	if sn.Records == 0 {
		fmt.Fprintln(stderr, "it is empty: no record matched; check the filters with `speedctl traffic list` and the same flags")
	}
	fmt.Fprintf(stderr, "next: speedctl snapshot show %s, or speedctl snapshot pull %s -o DIR|FILE\n", sn.ID, sn.ID)
	return nil
}
