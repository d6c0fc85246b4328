package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/wire"
)

// Snapshot uploads: the largest decompressed body, and the records and
// estimated bytes stored per transaction.
const (
	MaxSnapshotUploadBytes = 1 << 30
	uploadChunkRecords     = 512
	uploadChunkBytes       = 16 << 20
	maxUploads             = 2 // uploads at once; more are answered 429
)

func (s *Server) routeSnapshots() {
	write := func(h func(*http.Request, store.Key) (int, any, error)) http.HandlerFunc {
		return s.serveJSON(s.ingestKey, "  ", h)
	}
	s.mux.HandleFunc("POST /api/v1/snapshots", write(s.createSnapshot))
	s.mux.HandleFunc("POST /api/v1/snapshots/upload", write(s.uploadSnapshot))
	s.mux.HandleFunc("DELETE /api/v1/snapshots/{id}", write(s.deleteSnapshot))
	s.mux.HandleFunc("GET /api/v1/snapshots", s.api(s.listSnapshots))
	s.mux.HandleFunc("GET /api/v1/snapshots/{id}", s.api(s.showSnapshot))
	s.mux.HandleFunc("GET /api/v1/snapshots/{id}/records/{format}", s.handleExport)
}

// ingestKey authenticates a request that writes into a tenant's data
// other than the query API's reads: an ingest key (docs/api.md, "Keys and
// tenants").
func (s *Server) ingestKey(r *http.Request) (store.Key, error) {
	return s.roleKey(r, store.RoleIngest, "snapshots are made, pushed and deleted with an ingest key (the forwarder's SPEEDSCALE_API_KEY), and read with a read key")
}

// snapshot returns the tenant's snapshot id, or 404.
func (s *Server) snapshot(r *http.Request, key store.Key, id string) (store.Snapshot, error) {
	sn, err := s.store.Snapshot(r.Context(), key.Tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return sn, errorf(http.StatusNotFound, "no snapshot with id %q", id)
	}
	return sn, err
}

// snapshotOf returns the API's form of sn.
func snapshotOf(sn store.Snapshot) apitype.Snapshot {
	out := apitype.Snapshot{ID: sn.ID, Name: sn.Name, Created: sn.Created, Source: sn.Source, From: sn.From, To: sn.To, Records: sn.Records}
	if len(sn.Spec) > 0 {
		var f apitype.Filter
		if json.Unmarshal(sn.Spec, &f) == nil {
			out.Filter = &f
		}
	}
	return out
}

// checkSnapshotName refuses an empty name and what checkName refuses.
func checkSnapshotName(name string) error {
	if name == "" {
		return errorf(http.StatusBadRequest, "name: a snapshot needs a name")
	}
	return checkName("name", name)
}

func (s *Server) createSnapshot(r *http.Request, key store.Key) (int, any, error) {
	var req apitype.CreateSnapshotRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	if err := checkSnapshotName(req.Name); err != nil {
		return 0, nil, err
	}
	spec := req.Filter
	for _, w := range []struct{ name, top, in string }{{"from", req.From, spec.From}, {"to", req.To, spec.To}} {
		if w.top != "" && w.in != "" {
			return 0, nil, errorf(http.StatusBadRequest, "%s is given twice, in the body and in its filter: give it once", w.name)
		}
	}
	if req.From != "" {
		spec.From = req.From
	}
	if req.To != "" {
		spec.To = req.To
	}
	now := s.now()
	f, err := filterOf(spec, now)
	if err != nil {
		return 0, nil, err
	}
	// The window is kept as absolute times; the filter without it.
	spec.From, spec.To = "", ""
	b, err := json.Marshal(spec)
	if err != nil {
		return 0, nil, err
	}
	sn := store.Snapshot{ID: store.NewSnapshotID(), Tenant: key.Tenant, Name: req.Name, Created: now.UTC(),
		Source: store.SourceFilter, Spec: b, From: f.From, To: f.To}
	if sn, err = s.store.CreateSnapshot(r.Context(), sn, f); err != nil {
		if errors.Is(err, store.ErrTooMany) {
			return 0, nil, errorf(http.StatusBadRequest, "the filter selects more than %d records: narrow it or the time window", store.MaxSnapshotRecords)
		}
		return 0, nil, err
	}
	s.log.Info("snapshot created", "tenant", key.Tenant, "snapshot", sn.ID, "records", sn.Records, "key", key.ID)
	return http.StatusCreated, snapshotOf(sn), nil
}

// uploadSnapshot stores a snapshot from a body of our JSONL records
// (zstd, gzip or identity), streamed: records are stored a chunk at a
// time into a hidden snapshot, shown once the body is read whole, and
// deleted if anything fails.
func (s *Server) uploadSnapshot(r *http.Request, key store.Key) (int, any, error) {
	name := r.URL.Query().Get("name")
	if err := checkSnapshotName(name); err != nil {
		return 0, nil, err
	}
	select {
	case s.uploads <- struct{}{}:
		defer func() { <-s.uploads }()
	default:
		return 0, nil, errorf(http.StatusTooManyRequests, "%d snapshot uploads are being stored: try again in a minute", maxUploads)
	}
	ctx := r.Context()
	sn := store.Snapshot{ID: store.NewSnapshotID(), Tenant: key.Tenant, Name: name, Created: s.now().UTC(), Source: store.SourceUpload}
	if err := s.store.BeginSnapshot(ctx, sn); err != nil {
		return 0, nil, err
	}
	done := false
	defer func() {
		if !done {
			if err := s.store.DeleteSnapshot(context.WithoutCancel(ctx), key.Tenant, sn.ID); err != nil {
				s.log.Error("delete failed snapshot upload", "tenant", key.Tenant, "snapshot", sn.ID, "err", err.Error())
			}
		}
	}()
	var chunk []*capture.Record
	var chunkBytes int64
	n := 0
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		_, err := s.store.AddSnapshotRecords(ctx, key.Tenant, sn.ID, chunk)
		clear(chunk)
		chunk, chunkBytes = chunk[:0], 0
		return err
	}
	var storeErr error
	err := wire.DecodeBatch(r.Body, r.Header.Get("Content-Encoding"), MaxSnapshotUploadBytes, func(rec *capture.Record) error {
		if n++; n > store.MaxSnapshotRecords {
			return errorf(http.StatusRequestEntityTooLarge, "more than %d records: push them as several snapshots", store.MaxSnapshotRecords)
		}
		rec.Labels.Tenant = key.Tenant
		chunk = append(chunk, rec)
		if chunkBytes += wire.EstimateSize(rec); len(chunk) == uploadChunkRecords || chunkBytes >= uploadChunkBytes {
			if storeErr = flush(); storeErr != nil {
				return storeErr
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	} else if storeErr == nil && !isHTTPError(err) {
		se := wire.StatusOf(err)
		if se.Status == http.StatusInternalServerError {
			return 0, nil, fmt.Errorf("read snapshot upload: %w", err)
		}
		return 0, nil, errorf(se.Status, "%s", se.Message)
	}
	if err != nil {
		return 0, nil, err
	}
	if sn, err = s.store.FinishSnapshot(ctx, key.Tenant, sn.ID); err != nil {
		return 0, nil, err
	}
	done = true
	s.log.Info("snapshot uploaded", "tenant", key.Tenant, "snapshot", sn.ID, "records", sn.Records, "key", key.ID)
	return http.StatusCreated, snapshotOf(sn), nil
}

func isHTTPError(err error) bool {
	var he *httpError
	return errors.As(err, &he)
}

func (s *Server) deleteSnapshot(r *http.Request, key store.Key) (int, any, error) {
	sn, err := s.snapshot(r, key, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	if err := s.store.DeleteSnapshot(r.Context(), key.Tenant, sn.ID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil, errorf(http.StatusNotFound, "no snapshot with id %q", sn.ID)
		}
		return 0, nil, err
	}
	s.log.Info("snapshot deleted", "tenant", key.Tenant, "snapshot", sn.ID, "key", key.ID)
	return http.StatusOK, snapshotOf(sn), nil
}

func (s *Server) listSnapshots(r *http.Request, key store.Key) (any, error) {
	list, err := s.store.Snapshots(r.Context(), key.Tenant)
	if err != nil {
		return nil, err
	}
	out := apitype.Snapshots{Snapshots: make([]apitype.Snapshot, 0, len(list))}
	for _, sn := range list {
		out.Snapshots = append(out.Snapshots, snapshotOf(sn))
	}
	return out, nil
}

func (s *Server) showSnapshot(r *http.Request, key store.Key) (any, error) {
	sn, err := s.snapshot(r, key, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	c, err := store.CountRecords(r.Context(), s.store, key.Tenant, store.Filter{Snapshot: sn.ID})
	if err != nil {
		return nil, err
	}
	out := snapshotOf(sn)
	out.Counts = c
	return out, nil
}
