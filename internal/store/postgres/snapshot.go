package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlq"
)

// CreateSnapshot copies the matching records into a new snapshot, in one
// transaction.
func (s *Store) CreateSnapshot(ctx context.Context, sn store.Snapshot, f store.Filter) (store.Snapshot, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return sn, fmt.Errorf("create snapshot: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	q, args := dialect.CopySnapshot(sn.Tenant, sn.ID, f, store.MaxSnapshotRecords+1)
	tag, err := tx.Exec(ctx, q, args...)
	if err != nil {
		return sn, fmt.Errorf("create snapshot: copy records: %w", err)
	}
	if sn.Records = tag.RowsAffected(); sn.Records > store.MaxSnapshotRecords {
		return sn, fmt.Errorf("snapshot of more than %d records: %w", store.MaxSnapshotRecords, store.ErrTooMany)
	}
	if err := insertSnapshot(ctx, tx, sn, true); err != nil {
		return sn, err
	}
	if err := tx.Commit(ctx); err != nil {
		return sn, fmt.Errorf("create snapshot: commit: %w", err)
	}
	return sn, nil
}

func insertSnapshot(ctx context.Context, tx pgx.Tx, sn store.Snapshot, ready bool) error {
	q, args := dialect.InsertSnapshot(sn, ready)
	_, err := tx.Exec(ctx, q, args...)
	if pgCode(err) == "23505" {
		return fmt.Errorf("snapshot %q: %w", sn.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	return nil
}

// BeginSnapshot adds a hidden, empty snapshot.
func (s *Store) BeginSnapshot(ctx context.Context, sn store.Snapshot) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("create snapshot: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := insertSnapshot(ctx, tx, sn, false); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// AddSnapshotRecords copies recs into the connection's records_in and
// moves those the snapshot lacks into snapshot_records, in one
// transaction.
func (s *Store) AddSnapshotRecords(ctx context.Context, tenant, id string, recs []*capture.Record) (int, error) {
	rows, err := store.NewRows(recs)
	if err != nil {
		return 0, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("add to snapshot: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	q, args := dialect.HiddenSnapshot(tenant, id)
	var one int
	if err := tx.QueryRow(ctx, q, args...).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("snapshot %q being stored: %w", id, store.ErrNotFound)
	} else if err != nil {
		return 0, fmt.Errorf("add to snapshot: %w", err)
	}
	if err := copyIn(ctx, tx, tenant, rows); err != nil {
		return 0, fmt.Errorf("add to snapshot: %w", err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO snapshot_records (tenant, snapshot, `+sqlq.SnapshotCols+`, data)
		SELECT tenant, $1, `+sqlq.SnapshotCols+`, data FROM records_in ON CONFLICT DO NOTHING`, id)
	if err != nil {
		return 0, fmt.Errorf("add to snapshot: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("add to snapshot: commit: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
