package sqlq

import (
	"context"
	"fmt"
	"time"

	"github.com/tapwire/tapwire/internal/store"
)

// The SQL of replay reports, the same in both stores: reports holds one
// row a report, the facts a list shows in columns (created_us in µs since
// the Unix epoch) and the report's JSON in data, as it was posted.

const reportCols = `id, tenant, created_us, target, snapshot, sent, status_matched, body_compared, body_matched, passed`

// CreateReport stores rep, or returns store.ErrExists if its id is taken.
func (r Records) CreateReport(ctx context.Context, rep store.Report) error {
	if err := store.ValidReportID(rep.ID); err != nil {
		return err
	}
	a := &args{d: r.Dialect}
	q := "INSERT INTO reports (" + reportCols + ", data) VALUES (" + a.add(rep.ID) + ", " + a.add(rep.Tenant) + ", " +
		a.add(rep.Created.UnixMicro()) + ", " + a.add(rep.Target) + ", " + a.add(rep.Snapshot) + ", " + a.add(rep.Sent) + ", " +
		a.add(rep.StatusMatched) + ", " + a.add(rep.BodyCompared) + ", " + a.add(rep.BodyMatched) + ", " + a.add(rep.Passed) + ", " +
		a.add(rep.Data) + ") ON CONFLICT DO NOTHING"
	n, err := r.Exec(ctx, q, a.list...)
	if err != nil {
		return fmt.Errorf("create report: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("report %q: %w", rep.ID, store.ErrExists)
	}
	return nil
}

// Reports lists the tenant's reports, newest first, without their data.
func (r Records) Reports(ctx context.Context, tenant string, limit int) ([]store.Report, error) {
	if limit <= 0 || limit > store.MaxReports {
		limit = store.MaxReports
	}
	a := &args{d: r.Dialect}
	q := "SELECT " + reportCols + " FROM reports WHERE tenant = " + a.add(tenant) + " ORDER BY created_us DESC, id DESC LIMIT " + a.add(limit)
	return r.reports(ctx, q, false, a.list...)
}

// Report returns one report with its data, or store.ErrNotFound.
func (r Records) Report(ctx context.Context, tenant, id string) (store.Report, error) {
	if err := store.ValidReportID(id); err != nil {
		return store.Report{}, err
	}
	a := &args{d: r.Dialect}
	q := "SELECT " + reportCols + ", data FROM reports WHERE tenant = " + a.add(tenant) + " AND id = " + a.add(id)
	out, err := r.reports(ctx, q, true, a.list...)
	if err != nil {
		return store.Report{}, err
	}
	if len(out) == 0 {
		return store.Report{}, fmt.Errorf("report %q: %w", id, store.ErrNotFound)
	}
	return out[0], nil
}

// DeleteReport deletes one report, or returns store.ErrNotFound.
func (r Records) DeleteReport(ctx context.Context, tenant, id string) error {
	if err := store.ValidReportID(id); err != nil {
		return err
	}
	a := &args{d: r.Dialect}
	n, err := r.Exec(ctx, "DELETE FROM reports WHERE tenant = "+a.add(tenant)+" AND id = "+a.add(id), a.list...)
	if err != nil {
		return fmt.Errorf("delete report: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("report %q: %w", id, store.ErrNotFound)
	}
	return nil
}

func (r Records) reports(ctx context.Context, q string, data bool, args ...any) ([]store.Report, error) {
	rows, err := r.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	defer rows.Close()
	out := []store.Report{}
	for rows.Next() {
		var rep store.Report
		var created int64
		dst := []any{&rep.ID, &rep.Tenant, &created, &rep.Target, &rep.Snapshot, &rep.Sent, &rep.StatusMatched,
			&rep.BodyCompared, &rep.BodyMatched, &rep.Passed}
		if data {
			dst = append(dst, &rep.Data)
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, fmt.Errorf("read reports: %w", err)
		}
		rep.Created = time.UnixMicro(created).UTC()
		out = append(out, rep)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	return out, nil
}
