package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/capture"
	fmtpkg "github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/hubclient"
	"github.com/tapwire/tapwire/internal/retry"
	"github.com/tapwire/tapwire/internal/wire"
)

// Import bounds: records and estimated bytes per batch. The hub takes
// batches of up to HUB_MAX_BATCH_BYTES (default 32 MiB) decoded.
const (
	importBatchRecords = 500
	importBatchBytes   = 8 << 20
	importTries        = 6 // per batch, for 429, 503 and an unreachable hub
)

// importSummary is what import did; --json prints it.
type importSummary struct {
	Files    int            `json:"files"`
	Formats  map[string]int `json:"formats"` // files per format
	Read     int            `json:"read"`    // records read
	Sent     int            `json:"sent"`    // records the hub accepted
	Batches  int            `json:"batches"`
	New      *int           `json:"new,omitempty"` // of Sent, not stored before; when the hub says
	Hub      string         `json:"hub"`
	Duration string         `json:"duration"`
}

func newTrafficImportCmd(hf *hubFlags) *cobra.Command {
	var ingestKey string
	var batchSize int
	var noProgress, asJSON bool
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Import records from HAR, our JSONL or the vendor's raw.jsonl into the hub",
		Long: `Import records into the hub from files in any of the export formats, told
apart by their content: HAR (1.2, ours or a browser's), our JSONL (records.jsonl,
the file sink's files; a folder of records-*.jsonl) and the vendor's raw.jsonl.
- reads standard input.

The records go to the hub as a forwarder sends them: batches of at most 500
records (--batch) on POST /v1/batches, with an ingest key: --ingest-key, else
$` + ingestKeyKey + `, else the config file's ` + ingestKeyKey + ` (the forwarder's key;
make one with ` + "`hub keys create -tenant T -role ingest`" + `). The hub puts the
records in the key's tenant. Records are idempotent by id, so importing a file
twice stores nothing new; entries of other tools' HAR files get ids made from
their content for that.

A progress bar goes to standard error when it is a terminal (--no-progress
turns it off); at the end one line says what was read and sent (--json: as
JSON on standard output). A bad file stops the import with its name and line;
the batches sent before it stay stored, and importing again is safe.`,
		Example: `  speedctl traffic import traffic.har
  speedctl traffic import --ingest-key tw_... week.jsonl snapshot/raw.jsonl
  speedctl traffic export --format jsonl --hub https://old-hub:8080 | speedctl traffic import -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if batchSize < 1 || batchSize > 10000 {
				return fmt.Errorf("--batch %d: want 1 to 10000", batchSize)
			}
			c, err := hf.ingestClient(ingestKey)
			if err != nil {
				return err
			}
			files, err := importFiles(args)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			wc, err := wire.NewClientURL(c.String(), wire.ClientOptions{Token: c.Key(), UserAgent: userAgent(), Transport: hubTransport{c}, Timeout: time.Minute})
			if err != nil {
				return err
			}
			defer wc.Close()
			im := &importer{c: c, wc: wc, ctx: cmd.Context(), max: batchSize, sum: importSummary{Formats: map[string]int{}, Hub: c.String()}}
			if !noProgress && isTerminal(stderr) {
				var total int64
				for _, f := range files {
					if f.Path == "-" || f.Format == fmtpkg.Markdown { // sizes unknown: a spinner
						total = -1
						break
					}
					if fi, err := os.Stat(f.Path); err == nil {
						total += fi.Size()
					}
				}
				im.bar = bytesBar(stderr, total, "importing")
			}
			began := time.Now()
			// The batches' refusals are the batch protocol's (im.refused);
			// only an unreachable hub needs a hint here.
			err = hubHints.explain(im.run(files, cmd.InOrStdin()))
			if im.bar != nil {
				_ = im.bar.Finish()
			}
			if err != nil {
				if im.sum.Sent > 0 {
					err = fmt.Errorf("%w\n(%d records of earlier batches are stored; importing again is safe: records are idempotent by id)", err, im.sum.Sent)
				}
				return err
			}
			im.sum.Duration = time.Since(began).Round(time.Millisecond).String()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(im.sum)
			}
			fmt.Fprintln(stderr, im.sum.String())
			return nil
		},
	}
	cmd.Flags().StringVar(&ingestKey, "ingest-key", "", "an ingest key of the hub, tw_... (default $"+ingestKeyKey+", else the config's "+ingestKeyKey+")")
	cmd.Flags().IntVar(&batchSize, "batch", importBatchRecords, "records per batch (the batch is also kept under 8 MiB)")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "no progress bar, even on a terminal")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON on standard output")
	return cmd
}

func (s *importSummary) String() string {
	var formats []string
	for _, n := range fmtpkg.Names {
		f := string(n)
		if n := s.Formats[f]; n > 0 {
			formats = append(formats, fmt.Sprintf("%d %s", n, f))
		}
	}
	line := fmt.Sprintf("imported %d records from %d %s (%s) into %s: %d sent in %d %s",
		s.Read, s.Files, plural(s.Files, "file", "files"), strings.Join(formats, ", "), s.Hub, s.Sent, s.Batches, plural(s.Batches, "batch", "batches"))
	if s.New != nil {
		return line + fmt.Sprintf(", %d new, %d already there", *s.New, s.Sent-*s.New)
	}
	return line + ", all accepted (the hub's answer does not say how many were already there; records are idempotent by id)"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// importFiles expands the arguments into what to read (internal/format's
// Sources): a file in any format, a folder of record files (the file sink's
// records-*.jsonl, as hub import reads it), a Markdown recording; - is
// standard input.
func importFiles(args []string) ([]fmtpkg.Source, error) {
	var srcs []fmtpkg.Source
	for _, a := range args {
		if a == "-" {
			srcs = append(srcs, fmtpkg.Source{Path: a})
			continue
		}
		s, err := fmtpkg.Sources(a)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, s...)
	}
	return srcs, nil
}

// importer reads files and posts their records in batches.
type importer struct {
	c     *hubclient.Client
	wc    *wire.Client // posts batches to c's hub
	ctx   context.Context
	max   int
	bar   *progressbar.ProgressBar
	batch []*capture.Record
	size  int64
	sum   importSummary
	news  int
	said  bool // every answer said how many were new
}

func (im *importer) run(files []fmtpkg.Source, stdin io.Reader) error {
	im.said = true
	for _, name := range files {
		if err := im.file(name, stdin); err != nil {
			return err
		}
	}
	if err := im.flush(); err != nil {
		return err
	}
	if im.said {
		im.sum.New = &im.news
	}
	return nil
}

// file imports one source, - for stdin.
func (im *importer) file(src fmtpkg.Source, stdin io.Reader) error {
	name := src.Path
	var got fmtpkg.Name
	var err error
	if src.Format == fmtpkg.Markdown || strings.EqualFold(filepath.Ext(name), ".md") {
		got, err = src.Read(im.add) // a recording: files of their own, no byte count
	} else {
		var r io.Reader = stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		} else {
			name = "standard input"
		}
		if im.bar != nil {
			pr := progressbar.NewReader(r, im.bar)
			r = &pr
		}
		got, err = fmtpkg.ReadRecords(r, im.add)
	}
	if err != nil {
		var se *sendError
		if errors.As(err, &se) {
			return se.err
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	im.sum.Files++
	im.sum.Formats[string(got)]++
	return nil
}

// sendError is a failure to send, passed through the readers unchanged.
type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }

func (im *importer) add(r *capture.Record) error {
	im.sum.Read++
	n := wire.EstimateSize(r)
	if len(im.batch) > 0 && (len(im.batch) >= im.max || im.size+n > importBatchBytes) {
		if err := im.flush(); err != nil {
			return &sendError{err}
		}
	}
	im.batch = append(im.batch, r)
	im.size += n
	return nil
}

func (im *importer) flush() error {
	if len(im.batch) == 0 {
		return nil
	}
	if err := im.send(im.batch); err != nil {
		return err
	}
	im.batch, im.size = im.batch[:0], 0
	return nil
}

// send posts one batch with the batch client (which splits a batch the hub
// finds too large), retrying what may pass (429, 5xx, an unreachable hub)
// by internal/retry: the hub's Retry-After or a growing wait.
func (im *importer) send(recs []*capture.Record) error {
	backoff := retry.Backoff{Min: time.Second, Max: 30 * time.Second}
	for try := 1; ; try++ {
		a, err := im.wc.Post(im.ctx, recs)
		if err == nil {
			im.sum.Batches++
			im.sum.Sent += a.Accepted
			if a.New == nil {
				im.said = false
			} else {
				im.news += *a.New
			}
			return nil
		}
		if im.ctx.Err() != nil {
			return im.ctx.Err()
		}
		var se *wire.ServerError
		isServer := errors.As(err, &se)
		switch {
		case isServer && se.TooLarge():
			return fmt.Errorf("a record is larger than the hub takes in one batch (HUB_MAX_BATCH_BYTES): %s", se.Message)
		case isServer && retry.Permanent(err):
			return im.refused(se)
		case !isServer && im.sum.Batches == 0:
			return err // the first batch: a wrong --hub, not an outage
		case try == importTries:
			return fmt.Errorf("%w (gave up after %d tries)", im.describe(err), try)
		}
		t := time.NewTimer(backoff.Wait(try, err))
		select {
		case <-t.C:
		case <-im.ctx.Done():
			t.Stop()
			return im.ctx.Err()
		}
	}
}

// hubTransport sends the batch client's requests through the hub client,
// which says why a hub cannot be reached (a plain-HTTP hub, a refused
// connection) as every other command does.
type hubTransport struct{ c *hubclient.Client }

func (t hubTransport) RoundTrip(req *http.Request) (*http.Response, error) { return t.c.Do(req) }

// refused says what to do about a batch the hub will not take.
func (im *importer) refused(se *wire.ServerError) error {
	c := im.c
	switch se.Status {
	case http.StatusUnauthorized:
		return fmt.Errorf("hub %s refused the ingest key (401: %s): check --ingest-key or %s; import needs a live ingest key of the hub (`hub keys create -tenant T -role ingest`)", c, se.Message, ingestKeyKey)
	case http.StatusForbidden:
		return fmt.Errorf("hub %s: %s (403): import needs an ingest key (role ingest), as a forwarder has; pass it with --ingest-key or %s", c, se.Message, ingestKeyKey)
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fmt.Errorf("hub %s answered %d to POST %s: is this a Tapwire hub? (check --hub or %s)", c, se.Status, wire.Path, hubURLKey)
	}
	return fmt.Errorf("hub %s refused a batch (%d %s): %s", c, se.Status, http.StatusText(se.Status), se.Message)
}

func (im *importer) describe(err error) error {
	var se *wire.ServerError
	if errors.As(err, &se) {
		return fmt.Errorf("hub %s answered %d %s: %s", im.c, se.Status, http.StatusText(se.Status), se.Message)
	}
	return err
}
