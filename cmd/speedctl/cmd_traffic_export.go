package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/apitype"
	fmtpkg "github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/format/har"
	"github.com/tapwire/tapwire/internal/hubclient"
)

// exportPageSize is how many whole records export asks the hub for at a
// time: a page is held in memory, and records hold bodies of up to the
// capture cap (1 MiB each side by default).
var exportPageSize = 200

// trafficExportOptions are the flags of traffic export.
type trafficExportOptions struct {
	ff         filterFlags
	filter     apitype.Filter
	format     string
	output     string
	limit      int
	noProgress bool
}

func newTrafficExportCmd(hf *hubFlags) *cobra.Command {
	var o trafficExportOptions
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export records as HAR, our JSONL, the vendor's raw.jsonl or Markdown recordings",
		Long: `Export the records the filters select, newest first (HAR oldest first, as
browsers write it), to -o FILE or standard output:

  --format har    HAR 1.2, one entry per HTTP record (TCP records are left out)
  --format jsonl  our records, one per line: what ` + "`hub import`" + ` and ` + "`traffic import`" + ` read
  --format raw    the vendor's raw.jsonl, one RRPair per line
  --format md     the vendor's Markdown recordings: a directory (-o DIR, required),
                  DIR/<host>/<time>.md, one exchange per file, as the vendor's
                  local tool writes them; every command that reads records reads it

speedctl reads the records page by page (200 at a time) through the hub's
cursors and writes them as the hub's export endpoints do, so an export has no
size limit: all the records the filters select, or the first --limit. A progress
bar (records and their rate) goes to standard error when it is a terminal
(--no-progress turns it off). If the transfer breaks, the file is removed and
speedctl fails, so a partial export is never taken for a whole one.`,
		Example: `  speedctl traffic export --format har --service orders --since 1h -o orders.har
  speedctl traffic export --format jsonl --since 7d > week.jsonl
  speedctl traffic export --format raw --status 5xx --limit 1000 -o failures.raw.jsonl
  speedctl traffic export --format md --direction out --since 1h -o recorded-$(date +%Y-%m-%d_%H-%M-%S)`,
		Args: cobra.NoArgs,
		RunE: hf.runE(&o),
	}
	o.ff.add(cmd)
	cmd.Flags().StringVar(&o.format, "format", "har", "har, jsonl (our records), raw (the vendor's raw.jsonl) or md (the vendor's Markdown recordings, a directory)")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write to this file, or directory for md (default standard output)")
	cmd.Flags().IntVar(&o.limit, "limit", 0, "at most this many records (default 0: all the filters select)")
	cmd.Flags().BoolVar(&o.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	return cmd
}

func (o *trafficExportOptions) prepare([]string) (err error) {
	f, err := fmtpkg.Parse(o.format)
	if err != nil {
		return fmt.Errorf("--format %q: want %s", o.format, fmtpkg.List())
	}
	if !f.Stream() && (o.output == "" || o.output == "-") {
		return fmt.Errorf("--format %s writes a directory, one file per exchange: give it with -o DIR", f)
	}
	if o.limit < 0 {
		return fmt.Errorf("--limit %d: want 0 (all) or more", o.limit)
	}
	o.filter, err = o.ff.filter()
	return err
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (o *trafficExportOptions) run(ctx context.Context, c *hubclient.Client, stdout, stderr io.Writer) (err error) {
	// Ask for the first page before creating the file, so that a bad key
	// or filter leaves nothing behind.
	q := apitype.ListQuery{Filter: o.filter, Full: true, Limit: exportPageSize}
	if o.limit > 0 {
		q.Limit = min(o.limit, exportPageSize)
	}
	page, err := c.List(ctx, q)
	if err != nil {
		return err
	}

	format := fmtpkg.Name(o.format)
	var rw fmtpkg.Writer
	cw := &countingWriter{w: stdout}
	bw := bufio.NewWriterSize(cw, 64<<10)
	switch {
	case !format.Stream():
		// A directory: removed again if the export fails, unless it was
		// there before.
		_, statErr := os.Stat(o.output)
		if rw, err = fmtpkg.NewDirWriter(format, o.output); err != nil {
			return err
		}
		defer func() {
			if err != nil && os.IsNotExist(statErr) {
				os.RemoveAll(o.output)
			}
		}()
	case o.output != "" && o.output != "-":
		f, cerr := os.Create(o.output) // not err: the deferred removal reads the result
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
		cw.w = f
		fallthrough
	default:
		if rw, err = fmtpkg.NewWriter(format, bw, har.Creator{Name: "speedctl", Version: version}); err != nil {
			return err
		}
	}
	var bar *progressbar.ProgressBar
	if !o.noProgress && isTerminal(stderr) {
		total := int64(-1)
		if o.limit > 0 {
			total = int64(o.limit)
		}
		bar = recordsBar(stderr, total, "exporting "+o.format)
	}
	n := 0
	for {
		for _, it := range page.Records {
			if it.Record == nil {
				return fmt.Errorf("hub %s: a page of records without the records (full=true): is it older than this speedctl?", c)
			}
			if err := rw.Write(it.Record); err != nil {
				return fmt.Errorf("write %s: %w", dash(o.output), err)
			}
			n++
		}
		if bar != nil {
			_ = bar.Set(n)
		}
		if page.Next == "" || len(page.Records) == 0 || (o.limit > 0 && n >= o.limit) {
			break
		}
		if o.limit > 0 {
			q.Limit = min(o.limit-n, exportPageSize)
		}
		q.Cursor = page.Next
		if page, err = c.List(ctx, q); err != nil {
			return fmt.Errorf("export cut short after %d records: %w", n, err)
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if err := rw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", dash(o.output), err)
	}
	if o.output != "" && o.output != "-" {
		what := fmt.Sprintf("%d records", n)
		if hw, ok := rw.(*har.Writer); ok && hw.Entries() != n {
			what = fmt.Sprintf("%d entries; %d TCP records left out", hw.Entries(), n-hw.Entries())
		}
		if !format.Stream() {
			fmt.Fprintf(stderr, "wrote %s (%s, one file each)\n", o.output, what)
			return nil
		}
		fmt.Fprintf(stderr, "wrote %s (%s, %d bytes)\n", o.output, what, cw.n)
	}
	return nil
}
