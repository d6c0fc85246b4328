package hub

import (
	"bufio"
	"fmt"
	"net/http"

	"github.com/tapwire/tapwire/internal/apitype"
	fmtpkg "github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/format/har"
	"github.com/tapwire/tapwire/internal/store"
)

// Export limits: records per export, and per page read from the store.
const (
	DefaultExportLimit = 10_000
	MaxExportLimit     = 100_000
	exportPage         = 500
)

// handleExport streams the records a filter selects, newest first, as the
// vendor's raw.jsonl or our JSONL, or as HAR (http records only, oldest
// first as browsers write it, sent once the last is read): of the
// traffic, or of the snapshot of the path's {id}. A store error
// in the middle aborts the response, so that a client never takes a cut
// file for a whole one.
func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	key, err := s.readKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	format, err := fmtpkg.Parse(r.PathValue("format"))
	if err != nil || !format.Stream() {
		s.writeError(w, r, errorf(http.StatusNotFound, "export format %q: want har, jsonl or raw (md is a directory: speedctl traffic export --format md -o DIR writes one)", r.PathValue("format")))
		return
	}
	f, err := s.parseFilter(r, key, s.now())
	def, most := DefaultExportLimit, MaxExportLimit
	if id := r.PathValue("id"); id != "" && err == nil {
		// GET /api/v1/snapshots/{id}/records/{format}: the snapshot's,
		// all of them unless limit says otherwise.
		f.Snapshot = id
		def, most = store.MaxSnapshotRecords, store.MaxSnapshotRecords
		_, err = s.snapshot(r, key, id)
	}
	if err == nil {
		var limit int
		limit, err = parseLimit(r, def, most)
		if err == nil {
			err = s.export(w, r, key, format, f, limit)
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
func (s *Server) export(w http.ResponseWriter, r *http.Request, key store.Key, format fmtpkg.Name, f store.Filter, limit int) error {
	q := store.Query{Filter: f, Limit: min(limit, exportPage), Full: true, Cursor: r.URL.Query().Get("cursor")}
	page, err := s.store.List(r.Context(), key.Tenant, q)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("tapwire-%s-%s.%s", key.Tenant, s.now().UTC().Format("20060102-150405"), format.Ext())
	if f.Snapshot != "" {
		name = fmt.Sprintf("tapwire-%s.%s", f.Snapshot, format.Ext())
	}
	w.Header().Set("Content-Type", format.ContentType())
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Trailer", apitype.ExportNextCursor)
	bw := bufio.NewWriterSize(w, 64<<10)
	enc, err := fmtpkg.NewWriter(format, bw, har.Creator{Name: "tapwire hub", Version: "1"})
	if err != nil {
		return err
	}
	n := 0
	for {
		for _, it := range page.Items {
			if n == limit {
				break
			}
			n++
			if err := enc.Write(it.Record); err != nil {
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
	if err := enc.Close(); err != nil {
		panic(http.ErrAbortHandler)
	}
	if err := bw.Flush(); err != nil {
		panic(http.ErrAbortHandler)
	}
	// The pages stop at limit exactly (q.Limit above), so a page's Next
	// is where the rest begins.
	if n == limit && page.Next != "" {
		w.Header().Set(apitype.ExportNextCursor, page.Next)
	}
	return nil
}
