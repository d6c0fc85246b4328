// Package postgres is the hub's store in PostgreSQL (through pgx), for
// when one machine's SQLite file is not enough: records arrive by COPY,
// and any number of hubs can share the database.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlq"
)

var _ store.Store = (*Store)(nil)

// Store is a store.Store in a PostgreSQL database.
type Store struct {
	sqlq.Records // List, Get, Scan and Count
	pool         *pgxpool.Pool
}

// Open connects to the database at dsn (a postgres:// URL or key=value
// string; pool_max_conns and the other pgxpool settings apply) and migrates
// its schema to the current version.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres DSN: %w", err)
	}
	// Every connection gets the temporary table COPY writes into.
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		// Its seq stays empty: records numbers the rows it takes.
		_, err := c.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS records_in (LIKE records, data bytea NOT NULL) ON COMMIT DELETE ROWS;
			ALTER TABLE records_in ALTER COLUMN seq DROP NOT NULL`)
		return err
	}
	// Migrate on a plain connection first: AfterConnect needs the table.
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	err = migrate(ctx, conn)
	if err == nil {
		// Development builds of the hub (before records and bodies were
		// split) wrote a version 1 of another shape.
		if _, cerr := conn.Exec(ctx, "SELECT tenant, id, data FROM bodies LIMIT 0"); cerr != nil {
			err = fmt.Errorf("its tables are not those of schema version %d (made by a development build of the hub?): %w", len(migrations), cerr)
		}
	}
	conn.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	s := &Store{pool: pool}
	s.Records = sqlq.Records{Dialect: &dialect, Query: s.query, Exec: s.exec}
	return s, nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Optimize updates the planner's statistics of the hub's tables (ANALYZE).
// Autovacuum does it too, in its own time; after a bulk load it may not
// have yet, and the planner then picks poor plans.
func (s *Store) Optimize(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, "ANALYZE records, bodies"); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

// Ping checks the database.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// migrations are applied in order, each once, under an advisory lock so
// that hubs starting together do not race; tapwire_schema holds the count
// applied.
var migrations = []string{
	// 1: tenants, keys, records.
	`CREATE TABLE tenants (
		id      text COLLATE "C" PRIMARY KEY,
		name    text NOT NULL DEFAULT '',
		created timestamptz NOT NULL
	);
	CREATE TABLE api_keys (
		id      text COLLATE "C" PRIMARY KEY,
		tenant  text COLLATE "C" NOT NULL REFERENCES tenants(id),
		role    text NOT NULL,
		name    text NOT NULL DEFAULT '',
		hash    bytea NOT NULL,
		created timestamptz NOT NULL,
		revoked timestamptz
	);
	CREATE INDEX api_keys_tenant ON api_keys (tenant, created);
	CREATE TABLE records (
		tenant    text COLLATE "C" NOT NULL,
		id        text COLLATE "C" NOT NULL,
		start_us  bigint NOT NULL,
		dur_us    bigint NOT NULL,
		kind      text NOT NULL,
		direction text NOT NULL,
		cluster   text NOT NULL,
		namespace text NOT NULL,
		service   text NOT NULL,
		pod       text NOT NULL,
		method    text NOT NULL,
		host      text NOT NULL,
		path      text NOT NULL,
		route     text NOT NULL,
		status    integer NOT NULL,
		failed    boolean NOT NULL,
		req_size  bigint NOT NULL,
		res_size  bigint NOT NULL,
		error     text NOT NULL,
		url       text NOT NULL,
		search    text NOT NULL,
		PRIMARY KEY (tenant, id)
	);
	CREATE INDEX records_start ON records (tenant, start_us, id);
	CREATE INDEX records_service ON records (tenant, service, start_us, id);
	CREATE TABLE bodies (
		tenant text COLLATE "C" NOT NULL,
		id     text COLLATE "C" NOT NULL,
		data   bytea NOT NULL,
		PRIMARY KEY (tenant, id)
	);`,
	// 2: snapshots, with copies of their records (sqlq's snapshot.go).
	`CREATE TABLE snapshots (
		id         text COLLATE "C" PRIMARY KEY,
		tenant     text COLLATE "C" NOT NULL,
		name       text NOT NULL,
		created_us bigint NOT NULL,
		source     text NOT NULL,
		spec       text NOT NULL,
		from_us    bigint NOT NULL,
		to_us      bigint NOT NULL,
		records    bigint NOT NULL,
		ready      boolean NOT NULL
	);
	CREATE INDEX snapshots_tenant ON snapshots (tenant, created_us);
	CREATE TABLE snapshot_records (
		LIKE records,
		snapshot text COLLATE "C" NOT NULL,
		data     bytea NOT NULL,
		PRIMARY KEY (tenant, snapshot, id)
	);
	CREATE INDEX snapshot_records_time ON snapshot_records (tenant, snapshot, start_us, id);`,
	// 3: replay reports (sqlq's report.go).
	`CREATE TABLE reports (
		id             text COLLATE "C" PRIMARY KEY,
		tenant         text COLLATE "C" NOT NULL,
		created_us     bigint NOT NULL,
		target         text NOT NULL,
		snapshot       text NOT NULL,
		sent           bigint NOT NULL,
		status_matched bigint NOT NULL,
		body_compared  bigint NOT NULL,
		body_matched   bigint NOT NULL,
		passed         boolean NOT NULL,
		data           bytea NOT NULL
	);
	CREATE INDEX reports_tenant ON reports (tenant, created_us, id);`,
	// 4: the arrival order (Store.Since): an identity column, numbering
	// the records there are in no particular order and those to come as
	// they are inserted (see inserter).
	`ALTER TABLE records ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
	CREATE INDEX records_arrival ON records (tenant, seq);`,
}

func migrate(ctx context.Context, conn *pgx.Conn) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	// An arbitrary constant: Tapwire's schema lock.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7283640127)`); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS tapwire_schema (version integer NOT NULL)`); err != nil {
		return err
	}
	var v int
	err = tx.QueryRow(ctx, `SELECT version FROM tapwire_schema`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		_, err = tx.Exec(ctx, `INSERT INTO tapwire_schema VALUES (0)`)
	}
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this hub's %d: use a newer hub", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE tapwire_schema SET version = $1`, len(migrations)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

var insertCols = []string{"tenant", "id", "start_us", "dur_us", "kind", "direction", "cluster", "namespace", "service",
	"pod", "method", "host", "path", "route", "status", "failed", "req_size", "res_size", "error", "url", "search", "data"}

// Insert stores recs in one transaction (see inserter).
func (s *Store) Insert(ctx context.Context, tenant string, recs []*capture.Record) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	ins, err := s.beginInsert(ctx, tenant)
	if err != nil {
		return 0, err
	}
	defer ins.Rollback()
	rows, err := store.NewRows(recs)
	if err != nil {
		return 0, err
	}
	if err := ins.Add(rows); err != nil {
		return 0, err
	}
	return ins.Commit()
}

// BeginInsert starts an insert on a connection of the pool.
func (s *Store) BeginInsert(ctx context.Context, tenant string) (store.Inserter, error) {
	return s.beginInsert(ctx, tenant)
}

// inserter copies each chunk of records into a temporary table and moves
// the new ones to records, all in one transaction.
//
// Before its first move it takes the tenant's arrival lock, which it
// holds until it commits or rolls back: the inserts of one tenant take
// their seqs and commit one at a time, so that a reader of Since never
// sees a seq before a smaller one of the tenant that is still to commit
// (and so misses none). The copies into the temporary table, the larger
// part of an insert, still run side by side; other tenants' inserts do not
// wait.
type inserter struct {
	ctx    context.Context
	tx     pgx.Tx
	tenant string
	locked bool // holds the tenant's arrival lock
	n      int
	err    error // of an Add: the transaction is lost
	done   bool
}

// arrivalLock is the first key of the tenants' arrival locks (advisory,
// per transaction), the second being a hash of the tenant: an arbitrary
// constant, Tapwire's.
const arrivalLock int32 = 72836401

func (s *Store) beginInsert(ctx context.Context, tenant string) (*inserter, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("insert: begin: %w", err)
	}
	return &inserter{ctx: ctx, tx: tx, tenant: tenant}, nil
}

func (ins *inserter) Add(rows []*store.Row) error {
	if ins.err != nil {
		return ins.err
	}
	if ins.done {
		return errors.New("insert: add after commit or rollback")
	}
	if err := ins.add(rows); err != nil {
		ins.err = err
		return err
	}
	return nil
}

func (ins *inserter) add(rows []*store.Row) error {
	if len(rows) == 0 {
		return nil
	}
	ctx, tx, tenant := ins.ctx, ins.tx, ins.tenant
	if err := copyIn(ctx, tx, tenant, rows); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	if !ins.locked {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, arrivalLock, tenant); err != nil {
			return fmt.Errorf("insert: arrival lock: %w", err)
		}
		ins.locked = true
	}
	// A record conflicts on (tenant, id) in both tables, so a skipped
	// record leaves neither a row nor a body.
	cols := strings.Join(insertCols[:len(insertCols)-1], ", ")
	tag, err := tx.Exec(ctx, `INSERT INTO records (`+cols+`) SELECT `+cols+` FROM records_in ON CONFLICT (tenant, id) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO bodies (tenant, id, data) SELECT tenant, id, data FROM records_in ON CONFLICT (tenant, id) DO NOTHING`); err != nil {
		return fmt.Errorf("insert bodies: %w", err)
	}
	// Empty the table for the next chunk (commit would, at the end).
	if _, err := tx.Exec(ctx, `TRUNCATE records_in`); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	ins.n += int(tag.RowsAffected())
	return nil
}

func (ins *inserter) Commit() (int, error) {
	if ins.err != nil {
		ins.Rollback()
		return 0, ins.err
	}
	if ins.done {
		return 0, errors.New("insert: commit after commit or rollback")
	}
	ins.done = true
	if err := ins.tx.Commit(ins.ctx); err != nil {
		return 0, fmt.Errorf("insert: commit: %w", err)
	}
	return ins.n, nil
}

func (ins *inserter) Rollback() {
	if ins.done {
		return
	}
	ins.done = true
	// The transaction's context may be done (a client gone): roll back
	// anyway, so that the connection goes back to the pool clean.
	_ = ins.tx.Rollback(context.WithoutCancel(ins.ctx))
}

// copyIn copies rows into the connection's temporary records_in, which
// a commit empties.
func copyIn(ctx context.Context, tx pgx.Tx, tenant string, rows []*store.Row) error {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"records_in"}, insertCols, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		r := rows[i]
		return []any{tenant, r.ID, r.StartUs, r.DurUs, r.Kind, r.Direction, r.Cluster, r.Namespace, r.Service,
			r.Pod, r.Method, r.Host, r.Path, r.Route, int32(r.Status), r.Failed, r.ReqSize, r.ResSize, r.Error, r.URL, r.Search, r.Data}, nil
	}))
	if err != nil {
		return fmt.Errorf("copy %d records: %w", len(rows), err)
	}
	return nil
}

// dialect is PostgreSQL's SQL for sqlq. A record's body has its tenant
// and id.
var dialect = sqlq.Dialect{
	Numbered: true,
	Strpos:   "strpos",
	Like:     true,
	True:     "TRUE",
	Body:     "(SELECT data FROM bodies b WHERE b.tenant = records.tenant AND b.id = records.id)",
	Get:      "SELECT data FROM bodies WHERE tenant = $1 AND id = $2",
}

// query runs a read for sqlq.
func (s *Store) query(ctx context.Context, query string, args ...any) (sqlq.Rows, error) {
	return s.pool.Query(ctx, query, args...)
}

// exec runs a write for sqlq.
func (s *Store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := s.pool.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

const deleteChunk = 5000

// DeleteBefore deletes old records, tenant by tenant, in chunks.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	tenants, err := s.RecordTenants(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete old records: %w", err)
	}
	var total int64
	for _, tenant := range tenants {
		for {
			// The records and their bodies, in one statement.
			tag, err := s.pool.Exec(ctx, `WITH doomed AS (
				DELETE FROM records WHERE tenant = $1 AND id = ANY(ARRAY(
					SELECT id FROM records WHERE tenant = $1 AND start_us < $2 ORDER BY start_us LIMIT $3))
				RETURNING id)
				DELETE FROM bodies WHERE tenant = $1 AND id IN (SELECT id FROM doomed)`, tenant, t.UnixMicro(), deleteChunk)
			if err != nil {
				return total, fmt.Errorf("delete old records: %w", err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < deleteChunk {
				break
			}
		}
	}
	return total, nil
}

// CreateTenant adds a tenant.
func (s *Store) CreateTenant(ctx context.Context, t store.Tenant) error {
	if err := store.ValidTenantID(t.ID); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, "INSERT INTO tenants (id, name, created) VALUES ($1, $2, $3)", t.ID, t.Name, t.Created)
	if pgCode(err) == "23505" {
		return fmt.Errorf("tenant %q: %w", t.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	return nil
}

// Tenants lists the tenants.
func (s *Store) Tenants(ctx context.Context) ([]store.Tenant, error) {
	rows, err := s.pool.Query(ctx, "SELECT id, name, created FROM tenants ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Tenant, error) {
		var t store.Tenant
		err := r.Scan(&t.ID, &t.Name, &t.Created)
		t.Created = t.Created.UTC()
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	if out == nil {
		out = []store.Tenant{}
	}
	return out, nil
}

// CreateKey stores a key's hash.
func (s *Store) CreateKey(ctx context.Context, k store.Key) error {
	_, err := s.pool.Exec(ctx, "INSERT INTO api_keys (id, tenant, role, name, hash, created) VALUES ($1, $2, $3, $4, $5, $6)",
		k.ID, k.Tenant, string(k.Role), k.Name, k.Hash, k.Created)
	switch pgCode(err) {
	case "":
		if err != nil {
			return fmt.Errorf("create key: %w", err)
		}
		return nil
	case "23503":
		return fmt.Errorf("key for tenant %q: %w", k.Tenant, store.ErrNotFound)
	case "23505":
		return fmt.Errorf("key %q: %w", k.ID, store.ErrExists)
	}
	return fmt.Errorf("create key: %w", err)
}

const keyCols = "id, tenant, role, name, hash, created, revoked"

func scanKey(r pgx.Row) (store.Key, error) {
	var k store.Key
	var role string
	var revoked *time.Time
	if err := r.Scan(&k.ID, &k.Tenant, &role, &k.Name, &k.Hash, &k.Created, &revoked); err != nil {
		return k, err
	}
	k.Role = store.Role(role)
	k.Created = k.Created.UTC()
	if revoked != nil {
		k.Revoked = revoked.UTC()
	}
	return k, nil
}

// Key returns one key.
func (s *Store) Key(ctx context.Context, id string) (store.Key, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, "SELECT "+keyCols+" FROM api_keys WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return k, fmt.Errorf("key %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("get key: %w", err)
	}
	return k, nil
}

// Keys lists keys.
func (s *Store) Keys(ctx context.Context, tenant string) ([]store.Key, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+keyCols+" FROM api_keys WHERE $1 = '' OR tenant = $1 ORDER BY tenant, created, id", tenant)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	if out == nil {
		out = []store.Key{}
	}
	return out, nil
}

// RevokeKey marks a key revoked.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, "UPDATE api_keys SET revoked = $1 WHERE id = $2 AND revoked IS NULL", at, id)
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := s.Key(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
