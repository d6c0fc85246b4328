package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/hubclient"
)

// snapshotListOptions are the flags of snapshot list.
type snapshotListOptions struct {
	json bool
}

func newSnapshotListCmd(sf *snapshotFlags) *cobra.Command {
	var o snapshotListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tenant's snapshots, newest first",
		Long: `List the snapshots of the key's tenant, newest first, as a table: id, name,
when it was made, whether it was cut from the traffic (filter) or pushed from
files (upload), how many records it holds. --json prints {"snapshots": [...]}.`,
		Example: `  speedctl snapshot list
  speedctl snapshot list --json`,
		Args: cobra.NoArgs,
		RunE: sf.readE(&o),
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the API's snapshots as JSON")
	return cmd
}

func (o *snapshotListOptions) prepare([]string) error { return nil }

func (o *snapshotListOptions) run(ctx context.Context, c *hubclient.Client, stdout, stderr io.Writer) error {
	list, err := c.Snapshots(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, apitype.Snapshots{Snapshots: list}, true)
	}
	if len(list) == 0 {
		fmt.Fprintln(stderr, "no snapshots: make one with `speedctl snapshot create --name N [filters]` or `speedctl snapshot push --name N FILE...`")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCREATED (UTC)\tSOURCE\tRECORDS")
	for _, sn := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", sn.ID, strconv.Quote(sn.Name), sn.Created.UTC().Format("2006-01-02 15:04:05"), sn.Source, strconv.FormatInt(sn.Records, 10))
	}
	return tw.Flush()
}
