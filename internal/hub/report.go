package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/store"
)

// MaxReportBytes bounds the body of POST /api/v1/reports: a replay's
// report, its live bodies included (internal/replay bounds them well
// below this).
const MaxReportBytes = 16 << 20

func (s *Server) routeReports() {
	write := func(h func(*http.Request, store.Key) (int, any, error)) http.HandlerFunc {
		return s.serveJSON(s.reportWriteKey, "  ", h)
	}
	s.mux.HandleFunc("POST /api/v1/reports", write(s.createReport))
	s.mux.HandleFunc("DELETE /api/v1/reports/{id}", write(s.deleteReport))
	s.mux.HandleFunc("GET /api/v1/reports", s.api(s.listReports))
	s.mux.HandleFunc("GET /api/v1/reports/{id}", s.api(s.showReport))
}

// reportWriteKey authenticates a push or a delete of a report: an ingest
// key, as for snapshots.
func (s *Server) reportWriteKey(r *http.Request) (store.Key, error) {
	return s.roleKey(r, store.RoleIngest, "reports are pushed and deleted with an ingest key (speedctl's SPEEDSCALE_API_KEY), and read with a read key")
}

// reportOf returns the API's summary of rep.
func reportOf(rep store.Report) apitype.ReportSummary {
	rate := func(n, of int64) float64 {
		if of == 0 {
			return 1
		}
		return float64(n) / float64(of)
	}
	return apitype.ReportSummary{ID: rep.ID, Created: rep.Created, Target: rep.Target, Snapshot: rep.Snapshot, Sent: rep.Sent,
		StatusMatched: rep.StatusMatched, BodyCompared: rep.BodyCompared, BodyMatched: rep.BodyMatched,
		StatusMatchRate: rate(rep.StatusMatched, rep.Sent), BodyMatchRate: rate(rep.BodyMatched, rep.BodyCompared), Passed: rep.Passed}
}

// createReport stores the body, a replay's report, as it is; it reads the
// members a list shows from it.
func (s *Server) createReport(r *http.Request, key store.Key) (int, any, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReportBytes+1))
	if err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "reading the body: %s", err)
	}
	if len(body) > MaxReportBytes {
		return 0, nil, errorf(http.StatusRequestEntityTooLarge, "the report is larger than %d bytes", MaxReportBytes)
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "identity" {
		return 0, nil, errorf(http.StatusUnsupportedMediaType, "Content-Encoding %q: send the report as it is", enc)
	}
	var head apitype.PushedReport
	if !json.Valid(body) || !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
		return 0, nil, errorf(http.StatusBadRequest, "the body is not a JSON object: send a replay's report (speedctl replay --report)")
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "the body is not a replay's report: %s", err)
	}
	if head.Target == "" {
		return 0, nil, errorf(http.StatusBadRequest, "target: a replay's report names its target")
	}
	if err := checkName("target", head.Target); err != nil {
		return 0, nil, err
	}
	if head.Snapshot != "" && store.ValidSnapshotID(head.Snapshot) != nil {
		return 0, nil, errorf(http.StatusBadRequest, "snapshot %q: want snap_ and 16 of a-z 2-7", head.Snapshot)
	}
	if head.Sent < 0 || head.StatusMatched < 0 || head.BodyCompared < 0 || head.BodyMatched < 0 {
		return 0, nil, errorf(http.StatusBadRequest, "sent, status_matched, body_compared and body_matched are counts: want 0 or more")
	}
	rep := store.Report{ID: store.NewReportID(), Tenant: key.Tenant, Created: s.now().UTC().Truncate(time.Microsecond), Target: head.Target,
		Snapshot: head.Snapshot, Sent: head.Sent, StatusMatched: head.StatusMatched, BodyCompared: head.BodyCompared,
		BodyMatched: head.BodyMatched, Passed: head.Passed, Data: body}
	if err := s.store.CreateReport(r.Context(), rep); err != nil {
		return 0, nil, err
	}
	s.log.Info("report stored", "tenant", key.Tenant, "report", rep.ID, "bytes", len(body), "key", key.ID)
	return http.StatusCreated, reportOf(rep), nil
}

// report returns the tenant's report id, or 404.
func (s *Server) report(r *http.Request, key store.Key) (store.Report, error) {
	id := r.PathValue("id")
	rep, err := s.store.Report(r.Context(), key.Tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return rep, errorf(http.StatusNotFound, "no report with id %q", id)
	}
	return rep, err
}

func (s *Server) listReports(r *http.Request, key store.Key) (any, error) {
	limit, err := parseLimit(r, 100, store.MaxReports)
	if err != nil {
		return nil, err
	}
	list, err := s.store.Reports(r.Context(), key.Tenant, limit)
	if err != nil {
		return nil, err
	}
	out := apitype.Reports{Reports: make([]apitype.ReportSummary, 0, len(list))}
	for _, rep := range list {
		out.Reports = append(out.Reports, reportOf(rep))
	}
	return out, nil
}

func (s *Server) showReport(r *http.Request, key store.Key) (any, error) {
	rep, err := s.report(r, key)
	if err != nil {
		return nil, err
	}
	return apitype.Report{ReportSummary: reportOf(rep), Report: rep.Data}, nil
}

func (s *Server) deleteReport(r *http.Request, key store.Key) (int, any, error) {
	rep, err := s.report(r, key)
	if err != nil {
		return 0, nil, err
	}
	if err := s.store.DeleteReport(r.Context(), key.Tenant, rep.ID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil, errorf(http.StatusNotFound, "no report with id %q", rep.ID)
		}
		return 0, nil, err
	}
	s.log.Info("report deleted", "tenant", key.Tenant, "report", rep.ID, "key", key.ID)
	return http.StatusOK, apitype.Report{ReportSummary: reportOf(rep)}, nil
}
