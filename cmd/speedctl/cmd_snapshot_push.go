package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/capture"
	fmtpkg "github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/format/har"
	"github.com/tapwire/tapwire/internal/hubclient"
)

// snapshotPushOptions are the flags of snapshot push.
type snapshotPushOptions struct {
	name       string
	files      []fmtpkg.Source
	noProgress bool
	json       bool
	stdin      io.Reader
}

func newSnapshotPushCmd(sf *snapshotFlags) *cobra.Command {
	var o snapshotPushOptions
	cmd := &cobra.Command{
		Use:   "push PATH... --name NAME",
		Short: "Make a snapshot of the records in files or directories",
		Long: `Read records from files and directories in any format speedctl reads, told
apart by their content: our JSONL (a file, or a folder of the file sink's
records-*.jsonl), the vendor's raw.jsonl, HAR (ours or a browser's), the
vendor's Markdown recordings (a recorded-<time> directory, or one .md file);
- reads standard input. The records go to the hub as one stream, compressed,
and become one snapshot: it appears only once every record is stored, and if
anything fails nothing is kept. A record id that appears twice is kept once.

It prints the snapshot's id. A progress bar (records read) goes to standard
error when it is a terminal (--no-progress turns it off). It needs an ingest
key.`,
		Example: `  speedctl snapshot push --name checkout checkout.har
  speedctl snapshot push --name laptop recorded-2025-03-01_12-00-00/ raw.jsonl
  speedctl traffic export --format jsonl --hub http://old-hub:8080 --since 1h | speedctl snapshot push --name from-old-hub -`,
		Args: cobra.MinimumNArgs(1),
		RunE: sf.writeE(&o),
	}
	cmd.Flags().StringVar(&o.name, "name", "", "the snapshot's name, for people (required; need not be unique)")
	cmd.Flags().BoolVar(&o.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the API's snapshot as JSON")
	cmd.PreRun = func(cmd *cobra.Command, _ []string) { o.stdin = cmd.InOrStdin() }
	return cmd
}

func (o *snapshotPushOptions) prepare(args []string) (err error) {
	if o.name == "" {
		return errors.New("--name is required: a snapshot needs a name, as --name checkout")
	}
	o.files, err = importFiles(args)
	return err
}

func (o *snapshotPushOptions) run(ctx context.Context, c *hubclient.Client, stdout, stderr io.Writer) error {
	var bar *progressbar.ProgressBar
	if !o.noProgress && isTerminal(stderr) {
		bar = recordsBar(stderr, -1, "pushing")
	}
	// One goroutine reads the files into our JSONL; the upload reads
	// what it writes. Whichever fails first stops the other.
	pr, pw := io.Pipe()
	n := 0
	read := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		w, err := fmtpkg.NewWriter(fmtpkg.JSONL, bw, har.Creator{Name: "speedctl", Version: version})
		if err == nil {
			err = o.read(func(r *capture.Record) error {
				n++
				if bar != nil {
					_ = bar.Add(1)
				}
				return w.Write(r)
			})
		}
		if err == nil {
			if err = w.Close(); err == nil {
				err = bw.Flush()
			}
		}
		pw.CloseWithError(err)
		read <- err
	}()
	sn, err := c.UploadSnapshot(ctx, o.name, pr)
	pr.CloseWithError(errUploadEnded)
	rerr := <-read
	if bar != nil {
		_ = bar.Finish()
	}
	if rerr != nil && !errors.Is(rerr, errUploadEnded) {
		return fmt.Errorf("%w (nothing was kept in the hub)", rerr)
	}
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(stdout, sn, true)
	}
	fmt.Fprintln(stdout, sn.ID)
	fmt.Fprintf(stderr, "pushed %d records from %d %s: %s\n", n, len(o.files), plural(len(o.files), "source", "sources"), snapshotLine(sn))
	return nil
}

// errUploadEnded stops the reading of files when the upload ended first.
var errUploadEnded = errors.New("the upload ended")

// read reads every source and calls fn with each record; errors name the
// file.
func (o *snapshotPushOptions) read(fn func(*capture.Record) error) error {
	for _, src := range o.files {
		if src.Path == "-" {
			if _, err := fmtpkg.ReadRecords(o.stdin, fn); err != nil {
				return fmt.Errorf("standard input: %w", err)
			}
			continue
		}
		if _, err := src.Read(fn); err != nil {
			if src.Format == fmtpkg.Markdown {
				return err // Markdown names its files
			}
			return fmt.Errorf("%s: %w", src.Path, err)
		}
	}
	return nil
}
