package hub

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/raw"
	"github.com/tapwire/tapwire/internal/har"
	"github.com/tapwire/tapwire/internal/store"
)

// Export limits: records per export, and per page read from the store.
const (
	DefaultExportLimit = 10_000
	MaxExportLimit     = 100_000
	exportPage         = 500
)

// handleExport streams the records a filter selects, newest first, as HAR
// (http records only), the vendor's raw.jsonl, or our JSONL. A store error
// in the middle aborts the response, so that a client never takes a cut
// file for a whole one.
func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	key, err := s.readKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	format := r.PathValue("format")
	var ext, ctype string
	switch format {
	case "har":
		ext, ctype = "har", "application/json"
	case "raw.jsonl":
		ext, ctype = "raw.jsonl", "application/x-ndjson"
	case "records.jsonl":
		ext, ctype = "jsonl", "application/x-ndjson"
	default:
		s.writeError(w, r, errorf(http.StatusNotFound, "export format %q: want har, raw.jsonl or records.jsonl", format))
		return
	}
	f, err := parseFilter(r, s.now())
	if err == nil {
		var limit int
		limit, err = parseLimit(r, DefaultExportLimit, MaxExportLimit)
		if err == nil {
			err = s.export(w, r, key, format, ext, ctype, f, limit)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

// export writes the export; it returns an error only before the first
// byte is written.
//
// An export that stops at limit while more records match ends with the
// trailer Tapwire-Next-Cursor: the cursor parameter that exports the rest
// (HTTP/1.1 chunked or HTTP/2 trailers; a client that ignores trailers
// sees the same body).
func (s *Server) export(w http.ResponseWriter, r *http.Request, key store.Key, format, ext, ctype string, f store.Filter, limit int) error {
	q := store.Query{Filter: f, Limit: min(limit, exportPage), Full: true, Cursor: r.URL.Query().Get("cursor")}
	page, err := s.store.List(r.Context(), key.Tenant, q)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("tapwire-%s-%s.%s", key.Tenant, s.now().UTC().Format("20060102-150405"), ext)
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Trailer", ExportNextCursor)
	bw := bufio.NewWriterSize(w, 64<<10)
	var enc exporter
	switch format {
	case "har":
		enc = newHARWriter(bw)
	case "raw.jsonl":
		enc = rawWriter{bw}
	default:
		enc = jsonlWriter{bw}
	}
	n := 0
	for {
		for _, it := range page.Items {
			if n == limit {
				break
			}
			n++
			if err := enc.write(it.Record); err != nil {
				s.log.Warn("export cut short", "format", format, "tenant", key.Tenant, "err", err.Error())
				panic(http.ErrAbortHandler)
			}
		}
		if page.Next == "" || n == limit {
			break
		}
		q.Cursor, q.Limit = page.Next, min(limit-n, exportPage)
		if page, err = s.store.List(r.Context(), key.Tenant, q); err != nil {
			s.log.Error("export cut short", "format", format, "tenant", key.Tenant, "err", err.Error())
			panic(http.ErrAbortHandler)
		}
	}
	if err := enc.close(); err != nil {
		panic(http.ErrAbortHandler)
	}
	if err := bw.Flush(); err != nil {
		panic(http.ErrAbortHandler)
	}
	// The pages stop at limit exactly (q.Limit above), so a page's Next
	// is where the rest begins.
	if n == limit && page.Next != "" {
		w.Header().Set(ExportNextCursor, page.Next)
	}
	return nil
}

// ExportNextCursor is the trailer of an export cut at its limit: the
// cursor of the rest.
const ExportNextCursor = "Tapwire-Next-Cursor"

type exporter interface {
	write(*capture.Record) error
	close() error
}

type jsonlWriter struct{ w *bufio.Writer }

func (j jsonlWriter) write(r *capture.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode record %s: %w", r.ID, err)
	}
	j.w.Write(b)
	return j.w.WriteByte('\n')
}
func (j jsonlWriter) close() error { return nil }

type rawWriter struct{ w *bufio.Writer }

func (j rawWriter) write(r *capture.Record) error {
	return raw.Write(j.w, []*capture.Record{r})
}
func (j rawWriter) close() error { return nil }

// harWriter is the export's HAR: internal/har's writer.
type harWriter struct{ *har.Writer }

func newHARWriter(w *bufio.Writer) harWriter {
	return harWriter{har.NewWriter(w, har.Creator{Name: "tapwire hub", Version: "1"})}
}

func (h harWriter) write(r *capture.Record) error { return h.Write(r) }
func (h harWriter) close() error                  { return h.Close() }
