package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/capture"
	fmtpkg "github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/hubclient"
)

// snapshotPullOptions are the flags of snapshot pull.
type snapshotPullOptions struct {
	id         string
	output     string
	format     string
	noProgress bool
}

func newSnapshotPullCmd(sf *snapshotFlags) *cobra.Command {
	var o snapshotPullOptions
	cmd := &cobra.Command{
		Use:   "pull ID [-o DIR|FILE] [--format har|jsonl|raw|md]",
		Short: "Write a snapshot's records to a file or a directory",
		Long: `Write all the records of a snapshot, newest first, in one of the formats every
command reads:

  --format jsonl  our records, one per line (the default: nothing is lost)
  --format har    HAR 1.2, one entry per HTTP record (TCP records are left out)
  --format raw    the vendor's raw.jsonl, one RRPair per line
  --format md     the vendor's Markdown recordings: a directory, DIR/<host>/<time>.md

-o FILE writes the file; -o DIR, a directory that exists, writes DIR/ID.EXT
(md: the recordings into DIR); without -o, or with -o -, the records go to
standard output (md needs -o). The hub streams the file as it reads the
snapshot; a progress bar goes to standard error when it is a terminal
(--no-progress turns it off). If the transfer breaks, what was written is
removed and pull fails, so a partial file is never taken for a whole one.`,
		Example: `  speedctl snapshot pull snap_k2x7q4mzt6a3wbnf -o checkout.jsonl
  speedctl snapshot pull snap_k2x7q4mzt6a3wbnf --format har -o checkout.har
  speedctl snapshot pull snap_k2x7q4mzt6a3wbnf --format md -o recorded-checkout
  speedctl snapshot pull snap_k2x7q4mzt6a3wbnf | speedctl traffic import --hub http://other-hub:8080 -`,
		Args: cobra.ExactArgs(1),
		RunE: sf.readE(&o),
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write to this file, or into this directory (default standard output)")
	cmd.Flags().StringVar(&o.format, "format", "jsonl", "jsonl (our records), har, raw (the vendor's raw.jsonl) or md (the vendor's Markdown recordings, a directory)")
	cmd.Flags().BoolVar(&o.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	return cmd
}

func (o *snapshotPullOptions) prepare(args []string) error {
	o.id = args[0]
	f, err := fmtpkg.Parse(o.format)
	if err != nil {
		return fmt.Errorf("--format %q: want %s", o.format, fmtpkg.List())
	}
	o.format = string(f)
	if !f.Stream() && (o.output == "" || o.output == "-") {
		return fmt.Errorf("--format %s writes a directory, one file per exchange: give it with -o DIR", f)
	}
	if fi, err := os.Stat(o.output); err == nil && fi.IsDir() && f.Stream() {
		o.output = filepath.Join(o.output, o.id+"."+f.Ext())
	}
	return nil
}

func (o *snapshotPullOptions) run(ctx context.Context, c *hubclient.Client, stdout, stderr io.Writer) (err error) {
	// The snapshot first: an unknown id or a bad key leaves no file.
	sn, err := c.Snapshot(ctx, o.id)
	if err != nil {
		return err
	}
	format := fmtpkg.Name(o.format)
	wire := format
	if !format.Stream() {
		wire = fmtpkg.JSONL // decoded here into the recordings
	}
	e, err := c.SnapshotRecords(ctx, sn.ID, string(wire))
	if err != nil {
		return err
	}
	defer e.Close()

	var bar *progressbar.ProgressBar
	if !o.noProgress && isTerminal(stderr) {
		bar = bytesBar(stderr, -1, fmt.Sprintf("pulling %s (%d records)", sn.ID, sn.Records))
		defer bar.Finish()
	}
	var in io.Reader = e
	if bar != nil {
		pr := progressbar.NewReader(e, bar)
		in = &pr
	}

	toFile := o.output != "" && o.output != "-"
	if !format.Stream() {
		_, statErr := os.Stat(o.output)
		dw, err := fmtpkg.NewDirWriter(format, o.output)
		if err != nil {
			return err
		}
		n := 0
		_, err = fmtpkg.ReadRecords(in, func(r *capture.Record) error { n++; return dw.Write(r) })
		if cerr := dw.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if os.IsNotExist(statErr) {
				os.RemoveAll(o.output)
			}
			return fmt.Errorf("pull cut short after %d records: %w", n, err)
		}
		fmt.Fprintf(stderr, "wrote %s (%d records, one file each)\n", o.output, n)
		return nil
	}
	out := stdout
	if toFile {
		f, cerr := os.Create(o.output)
		if cerr != nil {
			return cerr
		}
		defer func() {
			if cerr := f.Close(); err == nil && cerr != nil {
				err = cerr
			}
			if err != nil {
				os.Remove(o.output)
			}
		}()
		out = f
	}
	n, err := io.Copy(out, in)
	if err != nil {
		return fmt.Errorf("pull cut short after %d bytes: %w", n, err)
	}
	if toFile {
		what := fmt.Sprintf("%d records", sn.Records)
		if format == fmtpkg.HAR {
			what = "HAR of " + what + ", TCP records left out"
		}
		fmt.Fprintf(stderr, "wrote %s (%s, %d bytes)\n", o.output, what, n)
	}
	return nil
}
