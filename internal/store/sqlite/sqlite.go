// Package sqlite is the hub's store in one SQLite database file (through
// modernc.org/sqlite, pure Go): the default, for one machine.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlq"
)

var _ store.Store = (*Store)(nil)

// Options tune a Store. Zero values are the defaults.
type Options struct {
	// Readers is how many connections serve reads at once; if zero,
	// GOMAXPROCS+1. Writes go through one connection (SQLite has one
	// writer at a time).
	Readers int
	// CacheMiB is the page cache of each connection; if zero, 32 MiB for
	// the writer and 16 MiB for each reader.
	CacheMiB int
	// SyncFull makes every commit durable against power loss
	// (synchronous=FULL). If false, synchronous=NORMAL: a commit survives a
	// crash of the process but the last ones may be lost if the machine
	// loses power.
	SyncFull bool
}

// Store is a store.Store in a SQLite file.
type Store struct {
	sqlq.Records // List, Get, Scan and Count, on the readers

	path string
	w    *sql.DB // one connection: every write
	r    *sql.DB // reads, concurrently (WAL)
	ck   *sql.DB // one connection: the checkpointer's

	stop chan struct{}
	done chan struct{}
}

// Checkpoints: a goroutine copies the WAL into the database file every
// checkpointEvery, off the writer's path (a checkpoint inside a commit
// was a sixth of the writer's time). The writer checkpoints itself only
// when the WAL reaches backstopPages (1 GiB of 16 KiB pages), which the
// checkpointer keeps it far from unless readers hold old snapshots for a
// long time.
const (
	checkpointEvery = 500 * time.Millisecond
	backstopPages   = 65536
	pageSize        = 16384
)

// Open opens (creating if needed) the database at path and migrates its
// schema to the current version.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
	}
	readers := opts.Readers
	if readers <= 0 {
		readers = runtime.GOMAXPROCS(0) + 1
	}
	wcache, rcache := 32, 16
	if opts.CacheMiB > 0 {
		wcache, rcache = opts.CacheMiB, opts.CacheMiB
	}
	sync := "NORMAL"
	if opts.SyncFull {
		sync = "FULL"
	}
	dsn := func(cacheMiB int, extra ...string) string {
		v := url.Values{}
		for _, p := range append([]string{
			fmt.Sprintf("page_size(%d)", pageSize), "busy_timeout(10000)", "journal_mode(WAL)", "synchronous(" + sync + ")",
			"foreign_keys(ON)", fmt.Sprintf("cache_size(-%d)", cacheMiB<<10), "temp_store(MEMORY)",
			fmt.Sprintf("wal_autocheckpoint(%d)", backstopPages), "journal_size_limit(268435456)",
		}, extra...) {
			v.Add("_pragma", p)
		}
		v.Set("_txlock", "immediate")
		return "file:" + path + "?" + v.Encode()
	}
	w, err := sql.Open("sqlite", dsn(wcache))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	s := &Store{path: path, w: w}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	// Development builds of the hub (before records and bodies were split)
	// wrote a version 1 of another shape.
	if _, err := w.ExecContext(ctx, "SELECT seq, data FROM bodies LIMIT 0"); err != nil {
		w.Close()
		return nil, fmt.Errorf("%s: its tables are not those of schema version %d (made by a development build of the hub?); move it away: %w", path, len(migrations), err)
	}
	// Readers map the file (256 MiB of it) instead of reading pages with
	// a system call each.
	r, err := sql.Open("sqlite", dsn(rcache, "query_only(ON)", "mmap_size(268435456)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	s.r = r
	s.Records = sqlq.Records{Dialect: &dialect, Query: s.query, Exec: s.exec}
	ck, err := sql.Open("sqlite", dsn(1))
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	ck.SetMaxOpenConns(1)
	s.ck = ck
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.checkpoints()
	return s, nil
}

// checkpoints runs PASSIVE checkpoints until Close: they copy what no
// reader needs any more and never wait for anyone.
func (s *Store) checkpoints() {
	defer close(s.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_, _ = s.ck.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// Path returns the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database, after an optimize pass that keeps the query
// planner's statistics current.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil // closed already
	default:
	}
	close(s.stop)
	<-s.done
	_, _ = s.w.Exec("PRAGMA optimize")
	err := s.r.Close()
	if cerr := s.ck.Close(); err == nil {
		err = cerr
	}
	if werr := s.w.Close(); err == nil {
		err = werr
	}
	return err
}

// Ping checks both pools.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Optimize runs ANALYZE where SQLite thinks it is due; the hub calls it
// after bulk loads and now and then.
func (s *Store) Optimize(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, "PRAGMA optimize=0x10002"); err != nil {
		return fmt.Errorf("optimize: %w", err)
	}
	return nil
}

// recordColumns are the columns of a record in records and
// snapshot_records, after the tenant (and the snapshot). They are part of
// migrations 1 and 2: never change them; add columns by a migration.
const recordColumns = `
		start_us  INTEGER NOT NULL,
		id        TEXT NOT NULL,
		dur_us    INTEGER NOT NULL,
		kind      TEXT NOT NULL,
		direction TEXT NOT NULL,
		cluster   TEXT NOT NULL,
		namespace TEXT NOT NULL,
		service   TEXT NOT NULL,
		pod       TEXT NOT NULL,
		method    TEXT NOT NULL,
		host      TEXT NOT NULL,
		path      TEXT NOT NULL,
		route     TEXT NOT NULL,
		status    INTEGER NOT NULL,
		failed    INTEGER NOT NULL,
		req_size  INTEGER NOT NULL,
		res_size  INTEGER NOT NULL,
		error     TEXT NOT NULL,
		url       TEXT NOT NULL,
		search    TEXT NOT NULL`

// migrations are applied in order, each once; the index+1 of the last one
// applied is in PRAGMA user_version.
//
// records holds what lists, filters and summaries read; bodies holds each
// record itself under the same seq. Both are rowid tables, so that rows
// arriving in time order are appended densely. records_time and
// records_service carry the columns the common filters test, so that
// SQLite tests them on the index entry and reads only the rows that match
// (its deferred seek), and counts by time read the index alone.
var migrations = []string{
	// 1: tenants, keys, records.
	`CREATE TABLE tenants (
		id         TEXT PRIMARY KEY,
		name       TEXT NOT NULL DEFAULT '',
		created_us INTEGER NOT NULL
	);
	CREATE TABLE api_keys (
		id         TEXT PRIMARY KEY,
		tenant     TEXT NOT NULL REFERENCES tenants(id),
		role       TEXT NOT NULL,
		name       TEXT NOT NULL DEFAULT '',
		hash       BLOB NOT NULL,
		created_us INTEGER NOT NULL,
		revoked_us INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX api_keys_tenant ON api_keys(tenant, created_us);
	CREATE TABLE records (
		seq       INTEGER PRIMARY KEY,
		tenant    TEXT NOT NULL,
` + recordColumns + `
	);
	CREATE UNIQUE INDEX records_id ON records(tenant, id);
	CREATE INDEX records_time ON records(tenant, start_us, id, failed, status, direction, method, host);
	CREATE INDEX records_service ON records(tenant, service, start_us, id, failed, status, direction);
	CREATE TABLE bodies (
		seq  INTEGER PRIMARY KEY,
		data BLOB NOT NULL
	);`,
	// 2: snapshots, with copies of their records (sqlq's snapshot.go).
	`CREATE TABLE snapshots (
		id         TEXT PRIMARY KEY,
		tenant     TEXT NOT NULL,
		name       TEXT NOT NULL,
		created_us INTEGER NOT NULL,
		source     TEXT NOT NULL,
		spec       TEXT NOT NULL,
		from_us    INTEGER NOT NULL,
		to_us      INTEGER NOT NULL,
		records    INTEGER NOT NULL,
		ready      INTEGER NOT NULL
	);
	CREATE INDEX snapshots_tenant ON snapshots(tenant, created_us);
	CREATE TABLE snapshot_records (
		seq       INTEGER PRIMARY KEY,
		tenant    TEXT NOT NULL,
		snapshot  TEXT NOT NULL,
` + recordColumns + `,
		data      BLOB NOT NULL
	);
	CREATE UNIQUE INDEX snapshot_records_id ON snapshot_records(tenant, snapshot, id);
	CREATE INDEX snapshot_records_time ON snapshot_records(tenant, snapshot, start_us, id);`,
	// 3: replay reports (sqlq's report.go).
	`CREATE TABLE reports (
		id             TEXT PRIMARY KEY,
		tenant         TEXT NOT NULL,
		created_us     INTEGER NOT NULL,
		target         TEXT NOT NULL,
		snapshot       TEXT NOT NULL,
		sent           INTEGER NOT NULL,
		status_matched INTEGER NOT NULL,
		body_compared  INTEGER NOT NULL,
		body_matched   INTEGER NOT NULL,
		passed         INTEGER NOT NULL,
		data           BLOB NOT NULL
	);
	CREATE INDEX reports_tenant ON reports(tenant, created_us, id);`,
	// 4: the arrival order (Store.Since): records.seq is it; arrival
	// keeps the largest seq ever given, so that a seq is never given again
	// after retention deleted the newest.
	`CREATE INDEX records_arrival ON records(tenant, seq);
	CREATE TABLE arrival (last INTEGER NOT NULL);
	INSERT INTO arrival SELECT coalesce(max(seq), 0) FROM records;`,
}

func migrate(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var v int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this hub's %d: use a newer hub", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
}

// Columns of records, in insert order.
const (
	insertCols  = `seq, tenant, start_us, id, dur_us, kind, direction, cluster, namespace, service, pod, method, host, path, route, status, failed, req_size, res_size, error, url, search`
	nInsertCols = 22
	// rowsPerInsert is how many records one INSERT statement carries:
	// fewer statements cost less than more, up to a point.
	rowsPerInsert = 64
)

func valuesSQL(head string, n, cols int, tail string) string {
	var b strings.Builder
	b.WriteString(head)
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	b.WriteString(tail)
	return b.String()
}

const (
	insertRecords = "INSERT INTO records (" + insertCols + ") VALUES "
	insertBodies  = "INSERT INTO bodies (seq, data) VALUES "
	conflict      = " ON CONFLICT DO NOTHING RETURNING seq"
)

var (
	insertRecordsFull = valuesSQL(insertRecords, rowsPerInsert, nInsertCols, conflict)
	insertBodiesFull  = valuesSQL(insertBodies, rowsPerInsert, 2, "")
)

// Insert stores recs in one transaction, skipping ids the tenant has.
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

// BeginInsert starts an insert on the one writer: other inserts wait
// until it commits or rolls back.
func (s *Store) BeginInsert(ctx context.Context, tenant string) (store.Inserter, error) {
	return s.beginInsert(ctx, tenant)
}

// inserter numbers the rows itself (after the largest seq given, under
// the one writer's transaction, so that seqs commit in their order: the
// arrival order of Store.Since) and stores the bodies of the rows the insert
// returns.
type inserter struct {
	ctx              context.Context
	tx               *sql.Tx
	tenant           string
	seq, seq0        int64 // the last seq given, and that before the first Add
	fullRec, fullBdy *sql.Stmt
	args             []any
	bySeq            map[int64][]byte
	inserted         []int64
	n                int
	err              error // of an Add: the transaction is lost
	done             bool
}

func (s *Store) beginInsert(ctx context.Context, tenant string) (*inserter, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("insert: begin: %w", err)
	}
	ins := &inserter{ctx: ctx, tx: tx, tenant: tenant,
		args:     make([]any, 0, rowsPerInsert*nInsertCols),
		bySeq:    make(map[int64][]byte, rowsPerInsert),
		inserted: make([]int64, 0, rowsPerInsert)}
	if err := tx.QueryRowContext(ctx, "SELECT max(coalesce((SELECT max(seq) FROM records), 0), (SELECT last FROM arrival))").Scan(&ins.seq); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("insert: %w", err)
	}
	ins.seq0 = ins.seq
	return ins, nil
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
	var err error
	ctx, tx := ins.ctx, ins.tx
	for len(rows) > 0 {
		k := min(len(rows), rowsPerInsert)
		args := ins.args[:0]
		clear(ins.bySeq)
		for _, r := range rows[:k] {
			ins.seq++
			ins.bySeq[ins.seq] = r.Data
			args = append(args, ins.seq, ins.tenant, r.StartUs, r.ID, r.DurUs, r.Kind, r.Direction, r.Cluster, r.Namespace,
				r.Service, r.Pod, r.Method, r.Host, r.Path, r.Route, r.Status, r.Failed, r.ReqSize, r.ResSize,
				r.Error, r.URL, r.Search)
		}
		var res *sql.Rows
		if k == rowsPerInsert {
			if ins.fullRec == nil {
				if ins.fullRec, err = tx.PrepareContext(ctx, insertRecordsFull); err != nil {
					return fmt.Errorf("insert: prepare: %w", err)
				}
			}
			res, err = ins.fullRec.QueryContext(ctx, args...)
		} else {
			res, err = tx.QueryContext(ctx, valuesSQL(insertRecords, k, nInsertCols, conflict), args...)
		}
		if err != nil {
			return fmt.Errorf("insert %d records: %w", k, err)
		}
		inserted := ins.inserted[:0]
		for res.Next() {
			var s int64
			if err := res.Scan(&s); err != nil {
				res.Close()
				return fmt.Errorf("insert %d records: %w", k, err)
			}
			inserted = append(inserted, s)
		}
		res.Close()
		if err := res.Err(); err != nil {
			return fmt.Errorf("insert %d records: %w", k, err)
		}
		ins.n += len(inserted)
		rows = rows[k:]
		if len(inserted) == 0 {
			continue
		}
		args = args[:0]
		for _, s := range inserted {
			args = append(args, s, ins.bySeq[s])
		}
		if len(inserted) == rowsPerInsert {
			if ins.fullBdy == nil {
				if ins.fullBdy, err = tx.PrepareContext(ctx, insertBodiesFull); err != nil {
					return fmt.Errorf("insert: prepare: %w", err)
				}
			}
			_, err = ins.fullBdy.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, valuesSQL(insertBodies, len(inserted), 2, ""), args...)
		}
		if err != nil {
			return fmt.Errorf("insert %d bodies: %w", len(inserted), err)
		}
	}
	clear(ins.bySeq) // do not keep the last chunk's bodies
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
	if ins.seq > ins.seq0 {
		if _, err := ins.tx.ExecContext(ins.ctx, "UPDATE arrival SET last = ?", ins.seq); err != nil {
			_ = ins.tx.Rollback()
			return 0, fmt.Errorf("insert: %w", err)
		}
	}
	if err := ins.tx.Commit(); err != nil {
		return 0, fmt.Errorf("insert: commit: %w", err)
	}
	return ins.n, nil
}

func (ins *inserter) Rollback() {
	if ins.done {
		return
	}
	ins.done = true
	_ = ins.tx.Rollback()
}

// dialect is SQLite's SQL for sqlq. Booleans are integers; a record's
// body has its seq.
var dialect = sqlq.Dialect{
	Strpos: "instr",
	True:   "1",
	Body:   "(SELECT data FROM bodies b WHERE b.seq = records.seq)",
	Get:    "SELECT b.data FROM records r JOIN bodies b ON b.seq = r.seq WHERE r.tenant = ? AND r.id = ?",
}

// query runs a read for sqlq on the readers.
func (s *Store) query(ctx context.Context, query string, args ...any) (sqlq.Rows, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

// exec runs a write for sqlq on the writer.
func (s *Store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.w.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// sqlRows is *sql.Rows as sqlq.Rows. Its Close drops the error of
// (*sql.Rows).Close: Err has it.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// deleteChunk is how many records one retention transaction deletes.
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
			n, err := s.deleteChunk(ctx, tenant, t.UnixMicro())
			total += n
			if err != nil {
				return total, fmt.Errorf("delete old records: %w", err)
			}
			if n < deleteChunk {
				break
			}
		}
	}
	return total, nil
}

// deleteChunk deletes the oldest records of tenant before us, at most
// deleteChunk of them, with their bodies, in one transaction.
func (s *Store) deleteChunk(ctx context.Context, tenant string, us int64) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	const doomed = `SELECT seq FROM records WHERE tenant = ? AND start_us < ? ORDER BY start_us LIMIT ?`
	if _, err := tx.ExecContext(ctx, `DELETE FROM bodies WHERE seq IN (`+doomed+`)`, tenant, us, deleteChunk); err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM records WHERE seq IN (`+doomed+`)`, tenant, us, deleteChunk)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return n, tx.Commit()
}

// CreateTenant adds a tenant.
func (s *Store) CreateTenant(ctx context.Context, t store.Tenant) error {
	if err := store.ValidTenantID(t.ID); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, "INSERT INTO tenants (id, name, created_us) VALUES (?, ?, ?)",
		t.ID, t.Name, t.Created.UnixMicro())
	if isConstraint(err) {
		return fmt.Errorf("tenant %q: %w", t.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	return nil
}

// Tenants lists the tenants.
func (s *Store) Tenants(ctx context.Context) ([]store.Tenant, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT id, name, created_us FROM tenants ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	defer rows.Close()
	out := []store.Tenant{}
	for rows.Next() {
		var t store.Tenant
		var us int64
		if err := rows.Scan(&t.ID, &t.Name, &us); err != nil {
			return nil, fmt.Errorf("list tenants: %w", err)
		}
		t.Created = time.UnixMicro(us).UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}

// CreateKey stores a key's hash.
func (s *Store) CreateKey(ctx context.Context, k store.Key) error {
	_, err := s.w.ExecContext(ctx, "INSERT INTO api_keys (id, tenant, role, name, hash, created_us) VALUES (?, ?, ?, ?, ?, ?)",
		k.ID, k.Tenant, string(k.Role), k.Name, k.Hash, k.Created.UnixMicro())
	var se *sqlite.Error
	switch {
	case errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("key for tenant %q: %w", k.Tenant, store.ErrNotFound)
	case isConstraint(err):
		return fmt.Errorf("key %q: %w", k.ID, store.ErrExists)
	case err != nil:
		return fmt.Errorf("create key: %w", err)
	}
	return nil
}

const keyCols = "id, tenant, role, name, hash, created_us, revoked_us"

func scanKey(sc interface{ Scan(...any) error }) (store.Key, error) {
	var k store.Key
	var role string
	var created, revoked int64
	if err := sc.Scan(&k.ID, &k.Tenant, &role, &k.Name, &k.Hash, &created, &revoked); err != nil {
		return k, err
	}
	k.Role = store.Role(role)
	k.Created = time.UnixMicro(created).UTC()
	if revoked != 0 {
		k.Revoked = time.UnixMicro(revoked).UTC()
	}
	return k, nil
}

// Key returns one key.
func (s *Store) Key(ctx context.Context, id string) (store.Key, error) {
	k, err := scanKey(s.r.QueryRowContext(ctx, "SELECT "+keyCols+" FROM api_keys WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("key %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("get key: %w", err)
	}
	return k, nil
}

// Keys lists keys.
func (s *Store) Keys(ctx context.Context, tenant string) ([]store.Key, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+keyCols+" FROM api_keys WHERE ? = '' OR tenant = ? ORDER BY tenant, created_us, id", tenant, tenant)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	out := []store.Key{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeKey marks a key revoked.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) error {
	res, err := s.w.ExecContext(ctx, "UPDATE api_keys SET revoked_us = ? WHERE id = ? AND revoked_us = 0", at.UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Key(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}
