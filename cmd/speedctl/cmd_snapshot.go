package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/hubclient"
)

func init() { commands = append(commands, newSnapshotCmd) }

func newSnapshotCmd() *cobra.Command {
	var sf snapshotFlags
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Make, list, show, pull, push and delete snapshots: named, immutable sets of records",
		Long: `A snapshot is a named, immutable set of a tenant's records in the hub: cut from
its traffic by the traffic filters and a time window (create), or pushed from
files (push). It keeps copies of its records, so the hub's retention does not
touch it; it stays until it is deleted. Mocks and replays read snapshots
(speedctl mock --snapshot ID), or the files that pull writes.

list, show and pull read with a read key: --key, else $` + readKeyKey + `, else the
config file's ` + readKeyKey + `. create, push and delete write with an ingest key:
--ingest-key, else $` + ingestKeyKey + `, else the config file's ` + ingestKeyKey + ` (the
forwarder's key; speedctl init writes both). The hub is --hub, else
$` + hubURLKey + `, else the config file's ` + hubURLKey + ` or SPEEDSCALE_APP_URL.`,
		Example: `  speedctl snapshot create --name checkout --service orders --since 1h
  speedctl snapshot list
  speedctl snapshot show snap_k2x7q4mzt6a3wbnf
  speedctl snapshot pull snap_k2x7q4mzt6a3wbnf -o checkout.jsonl
  speedctl snapshot pull snap_k2x7q4mzt6a3wbnf --format md -o recorded-checkout
  speedctl snapshot push --name from-laptop recorded-2025-03-01/ traffic.har
  speedctl snapshot delete snap_k2x7q4mzt6a3wbnf`,
	}
	sf.add(cmd)
	cmd.AddCommand(newSnapshotCreateCmd(&sf), newSnapshotListCmd(&sf), newSnapshotShowCmd(&sf),
		newSnapshotPullCmd(&sf), newSnapshotPushCmd(&sf), newSnapshotDeleteCmd(&sf))
	return cmd
}

// snapshotFlags are the flags every snapshot command takes: the hub, the
// read key and the ingest key.
type snapshotFlags struct {
	hubFlags
	ingestKey string
}

func (s *snapshotFlags) add(cmd *cobra.Command) {
	s.hubFlags.add(cmd)
	cmd.PersistentFlags().StringVar(&s.ingestKey, "ingest-key", "", "an ingest key of the hub, for create, push and delete (default $"+ingestKeyKey+", else the config's "+ingestKeyKey+")")
}

// readE runs a command that reads snapshots, with the read key.
func (s *snapshotFlags) readE(o readCommand) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.prepare(args); err != nil {
			return err
		}
		c, err := s.client()
		if err != nil {
			return err
		}
		return snapshotReadHints.explain(o.run(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
}

// writeE runs a command that writes snapshots, with the ingest key.
func (s *snapshotFlags) writeE(o readCommand) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.prepare(args); err != nil {
			return err
		}
		c, err := s.ingestClient(s.ingestKey)
		if err != nil {
			return err
		}
		return snapshotWriteHints.explain(o.run(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr()))
	}
}

// noSnapshot explains a 404 of a snapshot command.
func noSnapshot(e *hubclient.Error) string {
	return e.Message + ": `speedctl snapshot list` shows the tenant's snapshots (each key sees its own tenant's only)"
}

var (
	snapshotReadHints = keyHints{
		key:      "the key",
		on401:    "check --key or " + readKeyKey + "; it must be a live read key of the hub (`hub keys create -tenant T -role read`)",
		on403:    "snapshot list, show and pull read with a read key (--key or " + readKeyKey + "), not the ingest key",
		checkHub: hubHints.checkHub,
		on404:    noSnapshot,
	}
	snapshotWriteHints = keyHints{
		key:      "the ingest key",
		on401:    "check --ingest-key or " + ingestKeyKey + "; it must be a live ingest key of the hub (`hub keys create -tenant T -role ingest`)",
		on403:    "snapshot create, push and delete write with an ingest key (--ingest-key or " + ingestKeyKey + ", the forwarder's), not a read key",
		checkHub: hubHints.checkHub,
		on404:    noSnapshot,
	}
)

// snapshotLine is one line about a snapshot: its id, name, records and
// window.
func snapshotLine(sn *apitype.Snapshot) string {
	return fmt.Sprintf("%s %q: %d %s%s", sn.ID, sn.Name, sn.Records, plural(int(sn.Records), "record", "records"), window(sn))
}

// window is a snapshot's time window as " from T to T", or "".
func window(sn *apitype.Snapshot) string {
	const layout = "2006-01-02 15:04:05"
	switch {
	case sn.From.IsZero() && sn.To.IsZero():
		return ""
	case sn.To.IsZero():
		return ", from " + sn.From.UTC().Format(layout)
	case sn.From.IsZero():
		return ", to " + sn.To.UTC().Format(layout)
	}
	return ", " + sn.From.UTC().Format(layout) + " to " + sn.To.UTC().Format(layout) + " UTC"
}
