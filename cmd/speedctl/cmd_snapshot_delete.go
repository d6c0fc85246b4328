package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/hubclient"
)

// snapshotDeleteOptions are the arguments of snapshot delete.
type snapshotDeleteOptions struct {
	id string
}

func newSnapshotDeleteCmd(sf *snapshotFlags) *cobra.Command {
	var o snapshotDeleteOptions
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a snapshot and its records",
		Long: `Delete a snapshot and the copies of its records from the hub. The traffic it was
cut from is not touched. It needs an ingest key.`,
		Example: `  speedctl snapshot delete snap_k2x7q4mzt6a3wbnf`,
		Args:    cobra.ExactArgs(1),
		RunE:    sf.writeE(&o),
	}
}

func (o *snapshotDeleteOptions) prepare(args []string) error {
	o.id = args[0]
	return nil
}

func (o *snapshotDeleteOptions) run(ctx context.Context, c *hubclient.Client, _, stderr io.Writer) error {
	sn, err := c.DeleteSnapshot(ctx, o.id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "deleted %s\n", snapshotLine(sn))
	return nil
}
