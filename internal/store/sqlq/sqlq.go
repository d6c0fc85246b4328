// Package sqlq is the SQL of record queries that store/sqlite and
// store/postgres share: the where clause of a store.Filter and a cursor,
// the queries of a page, a scan and a count by time, and the reading of
// their rows into store types. What differs between the two databases'
// SQL is in a Dialect; each store keeps its own connections and runs the
// queries through a Query function.
package sqlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
)

// Dialect is what differs between SQLite's and PostgreSQL's SQL in the
// queries of records.
type Dialect struct {
	// Numbered says placeholders are numbered, $1, $2 (PostgreSQL's);
	// else they are ?, bound in the order they stand (SQLite's).
	Numbered bool
	// Strpos names the function of (text, part) that returns the
	// position of part in text, 0 if absent: instr or strpos.
	Strpos string
	// Like makes the Text filter search LIKE '%text%' with text's
	// wildcards escaped by a backslash (LIKE's default escape in
	// PostgreSQL), instead of a Strpos.
	Like bool
	// True is a boolean column's value when true: 1 where booleans are
	// integers (SQLite), else TRUE.
	True string
	// Body is the expression, in a query of the records table, of a
	// record's stored form (its bodies.data).
	Body string
	// Get is the query of one record's stored form, by tenant and id
	// (the arguments, in this order).
	Get string
}

// Columns of records that queries read, in the order of the destinations
// of summaryDest and of Scan.
const (
	summaryCols = `id, start_us, dur_us, kind, direction, cluster, namespace, service, pod, method, host, path, route, status, failed, req_size, res_size, error, url`
	scanCols    = `start_us, dur_us, direction, service, method, host, route, status, failed`
)

// recordTenants is the query of every tenant that has records, one a row,
// by a skip-scan of an index that starts with the tenant.
const recordTenants = `WITH RECURSIVE t(x) AS (
		SELECT min(tenant) FROM records
		UNION ALL SELECT (SELECT min(tenant) FROM records WHERE tenant > t.x) FROM t WHERE t.x IS NOT NULL
	) SELECT x FROM t WHERE x IS NOT NULL`

// args collects a query's arguments in the order their placeholders
// stand in its text.
type args struct {
	d    *Dialect
	list []any
}

// add appends v and returns its placeholder.
func (a *args) add(v any) string {
	a.list = append(a.list, v)
	if a.d.Numbered {
		return "$" + strconv.Itoa(len(a.list))
	}
	return "?"
}

// again returns a placeholder for v, added before as p: p itself where
// placeholders are numbered, else a new one.
func (a *args) again(v any, p string) string {
	if a.d.Numbered {
		return p
	}
	return a.add(v)
}

// where returns the where clause of f and c for tenant.
func (d *Dialect) where(a *args, tenant string, f *store.Filter, c *store.Cursor) string {
	conds := []string{"tenant = " + a.add(tenant)}
	add := func(cond string) { conds = append(conds, cond) }
	if f.Snapshot != "" {
		add("snapshot = " + a.add(f.Snapshot))
	}
	if !f.From.IsZero() {
		add("start_us >= " + a.add(f.From.UnixMicro()))
	}
	if !f.To.IsZero() {
		add("start_us < " + a.add(f.To.UnixMicro()))
	}
	if f.Service != "" {
		add("service = " + a.add(f.Service))
	}
	if f.Direction != "" {
		add("direction = " + a.add(string(f.Direction)))
	}
	if f.Method != "" {
		add("method = " + a.add(strings.ToUpper(f.Method)))
	}
	if f.StatusLo != 0 || f.StatusHi != 0 {
		add("status BETWEEN " + a.add(f.StatusLo) + " AND " + a.add(f.StatusHi))
	}
	if f.Host != "" {
		add("host = " + a.add(strings.ToLower(f.Host)))
	}
	if f.Path != "" {
		add(d.Strpos + "(path, " + a.add(f.Path) + ") > 0")
	}
	if f.Text != "" {
		if d.Like {
			add("search LIKE " + a.add("%"+likeEscape(strings.ToLower(f.Text))+"%"))
		} else {
			add(d.Strpos + "(search, " + a.add(strings.ToLower(f.Text)) + ") > 0")
		}
	}
	if f.Failed {
		add("failed = " + d.True)
	}
	if c != nil {
		add("(start_us, id) < (" + a.add(c.StartUs) + ", " + a.add(c.ID) + ")")
	}
	return strings.Join(conds, " AND ")
}

// table is the table of the records f selects among: a snapshot's, or
// the traffic.
func table(f *store.Filter) string {
	if f.Snapshot != "" {
		return "snapshot_records"
	}
	return "records"
}

// body is the expression of a record's stored form in a query of
// table(f): a snapshot's record holds it.
func (d *Dialect) body(f *store.Filter) string {
	if f.Snapshot != "" {
		return "data"
	}
	return d.Body
}

// likeEscape escapes s for a LIKE pattern whose escape is a backslash.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ListQuery returns the query of one page of List: the summary columns
// (and Body last if q.Full) of up to one more record than the page holds,
// newest first. A bad q.Cursor is store.ErrBadCursor.
func (d *Dialect) ListQuery(tenant string, q store.Query) (string, []any, error) {
	var cur *store.Cursor
	if q.Cursor != "" {
		c, err := store.ParseCursor(q.Cursor)
		if err != nil {
			return "", nil, err
		}
		cur = &c
	}
	cols := summaryCols
	if q.Full {
		cols += ", " + d.body(&q.Filter)
	}
	a := &args{d: d}
	cond := d.where(a, tenant, &q.Filter, cur)
	limit := a.add(q.PageLimit() + 1)
	return "SELECT " + cols + " FROM " + table(&q.Filter) + " WHERE " + cond + " ORDER BY start_us DESC, id DESC LIMIT " + limit, a.list, nil
}

// SinceQuery returns the query of Store.Since: seq and the summary
// columns of up to limit records of tenant that match f and arrived after
// seq after, in arrival order. f.Snapshot is an error: a snapshot's
// records have no arrival order.
func (d *Dialect) SinceQuery(tenant string, f store.Filter, after int64, limit int) (string, []any, error) {
	if f.Snapshot != "" {
		return "", nil, errors.New("records since: a snapshot has no arrival order")
	}
	a := &args{d: d}
	cond := d.where(a, tenant, &f, nil)
	cond += " AND seq > " + a.add(after)
	return "SELECT seq, " + summaryCols + " FROM records WHERE " + cond + " ORDER BY seq LIMIT " + a.add(store.SinceLimit(limit)), a.list, nil
}

// ScanQuery returns the query of Scan: scanCols of every record of tenant
// that matches f.
func (d *Dialect) ScanQuery(tenant string, f store.Filter) (string, []any) {
	a := &args{d: d}
	cond := d.where(a, tenant, &f, nil)
	return "SELECT " + scanCols + " FROM " + table(&f) + " WHERE " + cond, a.list
}

// CountQuery returns the query of Count: the start of each step (in µs)
// in which records of tenant that match f started, how many did and how
// many failed, by time. A step under 1µs is an error.
func (d *Dialect) CountQuery(tenant string, f store.Filter, step time.Duration) (string, []any, error) {
	stepUs := step.Microseconds()
	if stepUs < 1 {
		return "", nil, fmt.Errorf("step %s: want at least 1µs", step)
	}
	a := &args{d: d}
	p := a.add(stepUs)
	// start_us - ((start_us % step) + step) % step: the step's start, also before 1970.
	b := "start_us - ((start_us % " + p + ") + " + a.again(stepUs, p) + ") % " + a.again(stepUs, p)
	cond := d.where(a, tenant, &f, nil)
	return "SELECT " + b + " AS b, count(*), count(*) FILTER (WHERE failed = " + d.True + ") FROM " + table(&f) + " WHERE " + cond +
		" GROUP BY b ORDER BY b", a.list, nil
}

// Rows is a result set as both drivers give it: pgx.Rows, and
// database/sql's *sql.Rows with a Close that drops its error.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Query runs a query that reads: database/sql's QueryContext or pgx's
// Query on the connections the store reads with.
type Query func(ctx context.Context, sql string, args ...any) (Rows, error)

// Exec runs a statement that writes, on its own (autocommit), on the
// connections the store writes with, and returns how many rows it
// changed.
type Exec func(ctx context.Context, sql string, args ...any) (int64, error)

// Records answers the record queries of store.Store that both stores make
// alike: List, Since, Get, Scan and Count, and of snapshots all but those that
// take a transaction. A store embeds it.
type Records struct {
	Dialect *Dialect
	Query   Query
	Exec    Exec
}

// List returns one page, newest first.
func (r Records) List(ctx context.Context, tenant string, q store.Query) (store.Page, error) {
	query, args, err := r.Dialect.ListQuery(tenant, q)
	if err != nil {
		return store.Page{}, err
	}
	rows, err := r.Query(ctx, query, args...)
	if err != nil {
		return store.Page{}, fmt.Errorf("list: %w", err)
	}
	defer rows.Close()
	limit := q.PageLimit()
	page := store.Page{Items: []store.Item{}}
	for rows.Next() {
		var row store.Row
		dst := summaryDest(&row)
		if q.Full {
			dst = append(dst, &row.Data)
		}
		if err := rows.Scan(dst...); err != nil {
			return store.Page{}, fmt.Errorf("list: %w", err)
		}
		if len(page.Items) == limit {
			last := page.Items[limit-1]
			page.Next = store.Cursor{StartUs: last.Start.UnixMicro(), ID: last.ID}.String()
			break
		}
		it := store.Item{Summary: row.Summary()}
		if q.Full {
			if it.Record, err = store.DecodeRecord(row.Data); err != nil {
				return store.Page{}, fmt.Errorf("list: record %s: %w", row.ID, err)
			}
		}
		page.Items = append(page.Items, it)
	}
	if err := rows.Err(); err != nil {
		return store.Page{}, fmt.Errorf("list: %w", err)
	}
	return page, nil
}

// Since returns records in arrival order after seq after.
func (r Records) Since(ctx context.Context, tenant string, f store.Filter, after int64, limit int) ([]store.Item, int64, error) {
	if after < 0 {
		query := "SELECT coalesce(max(seq), 0) FROM records WHERE tenant = " + (&args{d: r.Dialect}).add(tenant)
		rows, err := r.Query(ctx, query, tenant)
		if err != nil {
			return nil, after, fmt.Errorf("latest arrival: %w", err)
		}
		defer rows.Close()
		var last int64
		if rows.Next() {
			if err := rows.Scan(&last); err != nil {
				return nil, after, fmt.Errorf("latest arrival: %w", err)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, after, fmt.Errorf("latest arrival: %w", err)
		}
		return []store.Item{}, last, nil
	}
	query, args, err := r.Dialect.SinceQuery(tenant, f, after, limit)
	if err != nil {
		return nil, after, err
	}
	rows, err := r.Query(ctx, query, args...)
	if err != nil {
		return nil, after, fmt.Errorf("records since %d: %w", after, err)
	}
	defer rows.Close()
	items := []store.Item{}
	next := after
	for rows.Next() {
		var row store.Row
		var seq int64
		if err := rows.Scan(append([]any{&seq}, summaryDest(&row)...)...); err != nil {
			return nil, after, fmt.Errorf("records since %d: %w", after, err)
		}
		items = append(items, store.Item{Summary: row.Summary(), Seq: seq})
		next = seq
	}
	if err := rows.Err(); err != nil {
		return nil, after, fmt.Errorf("records since %d: %w", after, err)
	}
	return items, next, nil
}

// Get returns one record, or store.ErrNotFound.
func (r Records) Get(ctx context.Context, tenant, id string) (*capture.Record, error) {
	return r.record(ctx, fmt.Sprintf("record %q", id), r.Dialect.Get, tenant, id)
}

// record runs a query of one record's stored form and decodes it, or
// returns store.ErrNotFound for what.
func (r Records) record(ctx context.Context, what, query string, args ...any) (*capture.Record, error) {
	rows, err := r.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", what, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("get %s: %w", what, err)
		}
		return nil, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	var data []byte
	if err := rows.Scan(&data); err != nil {
		return nil, fmt.Errorf("get %s: %w", what, err)
	}
	return store.DecodeRecord(data)
}

// RecordTenants returns every tenant that has records.
func (r Records) RecordTenants(ctx context.Context) ([]string, error) {
	rows, err := r.Query(ctx, recordTenants)
	if err != nil {
		return nil, fmt.Errorf("list tenants of records: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("list tenants of records: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tenants of records: %w", err)
	}
	return out, nil
}

// summaryDest returns the destinations of summaryCols in r.
func summaryDest(r *store.Row) []any {
	return []any{&r.ID, &r.StartUs, &r.DurUs, &r.Kind, &r.Direction, &r.Cluster, &r.Namespace, &r.Service,
		&r.Pod, &r.Method, &r.Host, &r.Path, &r.Route, &r.Status, &r.Failed, &r.ReqSize, &r.ResSize, &r.Error, &r.URL}
}

// Scan calls fn with the scanCols of each matching record.
func (r Records) Scan(ctx context.Context, tenant string, f store.Filter, fn func(*store.Row) error) error {
	query, args := r.Dialect.ScanQuery(tenant, f)
	rows, err := r.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	defer rows.Close()
	var row store.Row
	dst := []any{&row.StartUs, &row.DurUs, &row.Direction, &row.Service, &row.Method, &row.Host, &row.Route, &row.Status, &row.Failed}
	for rows.Next() {
		if err := rows.Scan(dst...); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		if err := fn(&row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
}

// Count counts matching records per step, in SQL.
func (r Records) Count(ctx context.Context, tenant string, f store.Filter, step time.Duration) ([]store.Bucket, error) {
	query, args, err := r.Dialect.CountQuery(tenant, f, step)
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	rows, err := r.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	defer rows.Close()
	out := []store.Bucket{}
	for rows.Next() {
		var us int64
		var b store.Bucket
		if err := rows.Scan(&us, &b.Count, &b.Errors); err != nil {
			return nil, fmt.Errorf("count: %w", err)
		}
		b.Start = time.UnixMicro(us).UTC()
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	return out, nil
}
