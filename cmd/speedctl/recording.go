package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/hubclient"
)

// recordingFlags are --from and --snapshot: the recording that mock, replay and test read.
type recordingFlags struct {
	hubFlags
	from      []string
	snapshots []string
}

func (r *recordingFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&r.from, "from", nil, "recorded traffic: a file or directory in any format (our JSONL, raw.jsonl, HAR, Markdown recordings); repeatable")
	f.StringArrayVar(&r.snapshots, "snapshot", nil, "a hub snapshot's `ID` (read with --hub and --key, as traffic commands do); repeatable")
	r.hubFlags.add(cmd)
}

// empty reports whether neither --from nor --snapshot was given.
func (r *recordingFlags) empty() bool { return len(r.from) == 0 && len(r.snapshots) == 0 }

// recordSource calls fn with each record of one source: a file or directory (--from), or a hub
// snapshot's JSONL stream (--snapshot; format.ReadRecords over the response body).
type recordSource struct {
	name string
	read func(fn func(*capture.Record) error) error
}

// sources returns a source for each --from and each --snapshot, in that order. The hub's client is made
// only when there is a snapshot to read.
func (r *recordingFlags) sources(ctx context.Context) ([]recordSource, error) {
	srcs := make([]recordSource, 0, len(r.from)+len(r.snapshots))
	for _, p := range r.from {
		srcs = append(srcs, recordSource{name: "--from " + p, read: func(fn func(*capture.Record) error) error { return format.ReadPath(p, fn) }})
	}
	if len(r.snapshots) > 0 {
		c, err := r.hubFlags.client()
		if err != nil {
			return nil, err
		}
		for _, id := range r.snapshots {
			srcs = append(srcs, recordSource{name: "--snapshot " + id, read: func(fn func(*capture.Record) error) error {
				return readHints.explain(readSnapshot(ctx, c, id, fn))
			}})
		}
	}
	return srcs, nil
}

// readSources reads every source, keeping the records keep accepts (every record when keep is nil). A
// source without a record is an error: a wrong path or an empty snapshot.
func readSources(srcs []recordSource, keep func(*capture.Record) bool) ([]*capture.Record, error) {
	var recs []*capture.Record
	for _, s := range srcs {
		n := 0
		err := s.read(func(r *capture.Record) error {
			n++
			if keep == nil || keep(r) {
				recs = append(recs, r)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no records", s.name)
		}
	}
	return recs, nil
}

// readSnapshot reads a hub snapshot's records: its JSONL, streamed.
func readSnapshot(ctx context.Context, c *hubclient.Client, id string, fn func(*capture.Record) error) error {
	ex, err := c.SnapshotRecords(ctx, id, string(format.JSONL))
	if err != nil {
		return err
	}
	defer ex.Close()
	_, err = format.ReadRecords(ex, fn)
	return err
}
