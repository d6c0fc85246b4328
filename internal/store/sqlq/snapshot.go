package sqlq

import (
	"context"
	"fmt"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
)

// The SQL of snapshots, the same in both stores but for a Dialect's
// placeholders and booleans. snapshots holds one row a snapshot (times in
// µs since the Unix epoch, 0 for none; ready false while an upload fills
// it or a delete empties it), snapshot_records the copies of its records:
// the columns of records, the snapshot's id, and the record's stored form
// (data), so that reading a snapshot never needs the traffic.

// SnapshotCols are the columns of snapshot_records copied from records
// (and written by an upload from a store.Row), in this order.
const SnapshotCols = `id, start_us, dur_us, kind, direction, cluster, namespace, service, pod, method, host, path, route, status, failed, req_size, res_size, error, url, search`

// SnapshotValues returns the values of SnapshotCols of r.
func SnapshotValues(r *store.Row) []any {
	return []any{r.ID, r.StartUs, r.DurUs, r.Kind, r.Direction, r.Cluster, r.Namespace, r.Service, r.Pod, r.Method,
		r.Host, r.Path, r.Route, r.Status, r.Failed, r.ReqSize, r.ResSize, r.Error, r.URL, r.Search}
}

const snapshotMeta = `id, tenant, name, created_us, source, spec, from_us, to_us, records`

// InsertSnapshot returns the statement that adds sn's row, shown (ready)
// or hidden.
func (d *Dialect) InsertSnapshot(sn store.Snapshot, ready bool) (string, []any) {
	a := &args{d: d}
	r := "NOT " + d.True
	if ready {
		r = d.True
	}
	q := "INSERT INTO snapshots (" + snapshotMeta + ", ready) VALUES (" + a.add(sn.ID) + ", " + a.add(sn.Tenant) + ", " +
		a.add(sn.Name) + ", " + a.add(sn.Created.UnixMicro()) + ", " + a.add(sn.Source) + ", " + a.add(string(sn.Spec)) + ", " +
		a.add(micros(sn.From)) + ", " + a.add(micros(sn.To)) + ", " + a.add(sn.Records) + ", " + r + ")"
	return q, a.list
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// CopySnapshot returns the statement that copies the records of tenant
// that match f, at most limit of them, into snapshot id.
func (d *Dialect) CopySnapshot(tenant, id string, f store.Filter, limit int) (string, []any) {
	a := &args{d: d}
	sid := a.add(id)
	cond := d.where(a, tenant, &f, nil)
	return "INSERT INTO snapshot_records (tenant, snapshot, " + SnapshotCols + ", data) SELECT tenant, " + sid + ", " +
		SnapshotCols + ", " + d.Body + " FROM records WHERE " + cond + " LIMIT " + a.add(limit), a.list
}

// HiddenSnapshot returns the query of the hidden snapshot id: one row if
// it exists.
func (d *Dialect) HiddenSnapshot(tenant, id string) (string, []any) {
	a := &args{d: d}
	return "SELECT 1 FROM snapshots WHERE tenant = " + a.add(tenant) + " AND id = " + a.add(id) + " AND NOT ready", a.list
}

// FinishSnapshot shows the hidden snapshot id with its records counted
// and their time span as its window.
func (r Records) FinishSnapshot(ctx context.Context, tenant, id string) (store.Snapshot, error) {
	a := &args{d: r.Dialect}
	of := " FROM snapshot_records r WHERE r.tenant = snapshots.tenant AND r.snapshot = snapshots.id"
	n, err := r.Exec(ctx, "UPDATE snapshots SET ready = "+r.Dialect.True+", records = (SELECT count(*)"+of+")"+
		", from_us = (SELECT coalesce(min(start_us), 0)"+of+"), to_us = (SELECT coalesce(max(start_us) + 1, 0)"+of+")"+
		" WHERE tenant = "+a.add(tenant)+" AND id = "+a.add(id)+" AND NOT ready", a.list...)
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("finish snapshot: %w", err)
	}
	if n == 0 {
		return store.Snapshot{}, fmt.Errorf("snapshot %q being stored: %w", id, store.ErrNotFound)
	}
	return r.Snapshot(ctx, tenant, id)
}

// deleteChunk is how many records of a snapshot one statement deletes.
const deleteChunk = 5000

// DeleteSnapshot hides snapshot id, deletes its records deleteChunk at a
// time, then its row.
func (r Records) DeleteSnapshot(ctx context.Context, tenant, id string) error {
	a := &args{d: r.Dialect}
	n, err := r.Exec(ctx, "UPDATE snapshots SET ready = NOT "+r.Dialect.True+" WHERE tenant = "+a.add(tenant)+" AND id = "+a.add(id), a.list...)
	if err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("snapshot %q: %w", id, store.ErrNotFound)
	}
	a = &args{d: r.Dialect}
	t, s := a.add(tenant), a.add(id)
	chunk := "DELETE FROM snapshot_records WHERE tenant = " + t + " AND snapshot = " + s + " AND id IN (SELECT id FROM snapshot_records WHERE tenant = " +
		a.again(tenant, t) + " AND snapshot = " + a.again(id, s) + " LIMIT " + a.add(deleteChunk) + ")"
	for n = deleteChunk; n == deleteChunk; {
		if n, err = r.Exec(ctx, chunk, a.list...); err != nil {
			return fmt.Errorf("delete snapshot: %w", err)
		}
	}
	a = &args{d: r.Dialect}
	if _, err := r.Exec(ctx, "DELETE FROM snapshots WHERE tenant = "+a.add(tenant)+" AND id = "+a.add(id), a.list...); err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	return nil
}

// Snapshots lists the tenant's shown snapshots, newest first.
func (r Records) Snapshots(ctx context.Context, tenant string) ([]store.Snapshot, error) {
	return r.snapshots(ctx, tenant, "")
}

// Snapshot returns one shown snapshot, or store.ErrNotFound.
func (r Records) Snapshot(ctx context.Context, tenant, id string) (store.Snapshot, error) {
	if err := store.ValidSnapshotID(id); err != nil {
		return store.Snapshot{}, err
	}
	out, err := r.snapshots(ctx, tenant, id)
	if err != nil {
		return store.Snapshot{}, err
	}
	if len(out) == 0 {
		return store.Snapshot{}, fmt.Errorf("snapshot %q: %w", id, store.ErrNotFound)
	}
	return out[0], nil
}

// snapshots reads the tenant's shown snapshots, or the one with id.
func (r Records) snapshots(ctx context.Context, tenant, id string) ([]store.Snapshot, error) {
	a := &args{d: r.Dialect}
	q := "SELECT " + snapshotMeta + " FROM snapshots WHERE tenant = " + a.add(tenant) + " AND ready"
	if id != "" {
		q += " AND id = " + a.add(id)
	}
	rows, err := r.Query(ctx, q+" ORDER BY created_us DESC, id DESC", a.list...)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	defer rows.Close()
	out := []store.Snapshot{}
	for rows.Next() {
		var sn store.Snapshot
		var spec string
		var created, from, to int64
		if err := rows.Scan(&sn.ID, &sn.Tenant, &sn.Name, &created, &sn.Source, &spec, &from, &to, &sn.Records); err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		sn.Created = time.UnixMicro(created).UTC()
		if spec != "" {
			sn.Spec = []byte(spec)
		}
		if from != 0 {
			sn.From = time.UnixMicro(from).UTC()
		}
		if to != 0 {
			sn.To = time.UnixMicro(to).UTC()
		}
		out = append(out, sn)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return out, nil
}

// SnapshotRecord returns one record of a shown snapshot, or
// store.ErrNotFound.
func (r Records) SnapshotRecord(ctx context.Context, tenant, snapshot, id string) (*capture.Record, error) {
	a := &args{d: r.Dialect}
	t := a.add(tenant)
	q := "SELECT data FROM snapshot_records WHERE tenant = " + t + " AND snapshot = " + a.add(snapshot) + " AND id = " + a.add(id) +
		" AND EXISTS (SELECT 1 FROM snapshots s WHERE s.tenant = " + a.again(tenant, t) + " AND s.id = snapshot_records.snapshot AND s.ready)"
	return r.record(ctx, fmt.Sprintf("record %q of snapshot %q", id, snapshot), q, a.list...)
}
