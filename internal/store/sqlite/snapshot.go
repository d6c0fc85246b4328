package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlq"
)

// CreateSnapshot copies the matching records into a new snapshot, in one
// transaction of the writer.
func (s *Store) CreateSnapshot(ctx context.Context, sn store.Snapshot, f store.Filter) (store.Snapshot, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return sn, fmt.Errorf("create snapshot: begin: %w", err)
	}
	defer tx.Rollback()
	q, args := dialect.CopySnapshot(sn.Tenant, sn.ID, f, store.MaxSnapshotRecords+1)
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return sn, fmt.Errorf("create snapshot: copy records: %w", err)
	}
	if sn.Records, err = res.RowsAffected(); err != nil {
		return sn, fmt.Errorf("create snapshot: %w", err)
	}
	if sn.Records > store.MaxSnapshotRecords {
		return sn, fmt.Errorf("snapshot of more than %d records: %w", store.MaxSnapshotRecords, store.ErrTooMany)
	}
	if err := insertSnapshot(ctx, tx, sn, true); err != nil {
		return sn, err
	}
	if err := tx.Commit(); err != nil {
		return sn, fmt.Errorf("create snapshot: commit: %w", err)
	}
	return sn, nil
}

func insertSnapshot(ctx context.Context, tx *sql.Tx, sn store.Snapshot, ready bool) error {
	q, args := dialect.InsertSnapshot(sn, ready)
	_, err := tx.ExecContext(ctx, q, args...)
	if isConstraint(err) {
		return fmt.Errorf("snapshot %q: %w", sn.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	return nil
}

// BeginSnapshot adds a hidden, empty snapshot.
func (s *Store) BeginSnapshot(ctx context.Context, sn store.Snapshot) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create snapshot: begin: %w", err)
	}
	defer tx.Rollback()
	if err := insertSnapshot(ctx, tx, sn, false); err != nil {
		return err
	}
	return tx.Commit()
}

// snapshotInsertCols is how many values a row of snapshot_records takes.
const snapshotInsertCols = 23

// AddSnapshotRecords stores recs in a hidden snapshot, rowsPerInsert a
// statement, in one transaction.
func (s *Store) AddSnapshotRecords(ctx context.Context, tenant, id string, recs []*capture.Record) (int, error) {
	rows, err := store.NewRows(recs)
	if err != nil {
		return 0, err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("add to snapshot: begin: %w", err)
	}
	defer tx.Rollback()
	q, args := dialect.HiddenSnapshot(tenant, id)
	var one int
	if err := tx.QueryRowContext(ctx, q, args...).Scan(&one); errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("snapshot %q being stored: %w", id, store.ErrNotFound)
	} else if err != nil {
		return 0, fmt.Errorf("add to snapshot: %w", err)
	}
	const head = "INSERT INTO snapshot_records (tenant, snapshot, " + sqlq.SnapshotCols + ", data) VALUES "
	n := 0
	for len(rows) > 0 {
		k := min(len(rows), rowsPerInsert)
		args = args[:0]
		for _, r := range rows[:k] {
			args = append(append(append(args, tenant, id), sqlq.SnapshotValues(r)...), r.Data)
		}
		res, err := tx.ExecContext(ctx, valuesSQL(head, k, snapshotInsertCols, " ON CONFLICT DO NOTHING"), args...)
		if err != nil {
			return 0, fmt.Errorf("add %d records to snapshot: %w", k, err)
		}
		added, _ := res.RowsAffected()
		n += int(added)
		rows = rows[k:]
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("add to snapshot: commit: %w", err)
	}
	return n, nil
}
