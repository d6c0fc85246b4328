package hub

import (
	"bytes"
	"context"
	"fmt"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/wire"
)

// A batch goes to the store in chunks as it is decoded, so that the hub
// never holds a whole batch: a decoded record is many times the size of
// its JSON (a batch of tiny records, 32 MiB of JSON, was 780 MiB of
// records). A record becomes its row at once; a chunk of rows ends at
// chunkRecords rows or chunkBytes (their stored form and search text, and
// rowOverhead each), whichever comes first; one larger row is a chunk
// alone.
const (
	chunkRecords = 512
	chunkBytes   = 1 << 20
	rowOverhead  = 512
)

// lineBudget is the hub's wire.Budget: the memory that long lines (past
// 64 KiB) and large zstd windows of the batches in flight may hold
// together, at most one line of wire.MaxLineBytes at a time.
const lineBudget = wire.MinBudget

// ingest stores one batch's records, chunk by chunk, in one transaction.
// The transaction begins with the second chunk: a batch of one chunk (most
// batches) is decoded whole before it takes the store's writer. A record
// whose line holds exactly the record is stored as that line (with the
// tenant label written again), not encoded again.
type ingest struct {
	ctx    context.Context
	st     store.Store
	tenant string
	chunk  []*store.Row
	bytes  int64
	ins    store.Inserter // nil until the first chunk is full
	buf    bytes.Buffer   // a record's line
}

func newIngest(ctx context.Context, st store.Store, tenant string) *ingest {
	return &ingest{ctx: ctx, st: st, tenant: tenant}
}

// add takes one record of the batch and its line (see wire.ReadBatchLines).
func (g *ingest) add(rec *capture.Record, line *jsonl.Line, exact bool) error {
	var changed jsonl.Field
	if rec.Labels.Tenant != g.tenant {
		rec.Labels.Tenant = g.tenant
		changed = jsonl.FieldLabels
	}
	var row *store.Row
	if exact {
		g.buf.Reset()
		g.buf.Grow(len(line.Raw()) + 1) // once, rather than doubling for a long line
		ok, err := line.AppendTo(&g.buf, rec, changed)
		if err != nil {
			return storeError(err)
		}
		if ok {
			row = store.NewRowJSON(rec, bytes.TrimSuffix(g.buf.Bytes(), []byte{'\n'}))
		}
	}
	if row == nil {
		var err error
		if row, err = store.NewRow(rec); err != nil {
			return storeError(err)
		}
	}
	g.chunk = append(g.chunk, row)
	g.bytes += int64(len(row.Data)+len(row.Search)) + rowOverhead
	if len(g.chunk) < chunkRecords && g.bytes < chunkBytes {
		return nil
	}
	if g.ins == nil {
		ins, err := g.st.BeginInsert(g.ctx, g.tenant)
		if err != nil {
			return storeError(err)
		}
		g.ins = ins
	}
	return g.flush()
}

func (g *ingest) flush() error {
	err := g.ins.Add(g.chunk)
	clear(g.chunk) // let the rows go
	g.chunk, g.bytes = g.chunk[:0], 0
	if err != nil {
		return storeError(err)
	}
	return nil
}

// commit stores what is left and commits; it returns how many records
// were new.
func (g *ingest) commit() (int, error) {
	if g.ins == nil {
		if len(g.chunk) == 0 {
			return 0, nil
		}
		ins, err := g.st.BeginInsert(g.ctx, g.tenant)
		if err != nil {
			return 0, storeError(err)
		}
		g.ins = ins
	}
	if err := g.flush(); err != nil {
		return 0, err
	}
	n, err := g.ins.Commit()
	if err != nil {
		return 0, storeError(err)
	}
	return n, nil
}

// rollback abandons the batch (after commit, it does nothing).
func (g *ingest) rollback() {
	if g.ins != nil {
		g.ins.Rollback()
	}
	clear(g.chunk)
}

// storeError is a failure of the store: 503 for the client (errStore),
// the detail for the log.
func storeError(err error) error { return fmt.Errorf("%w: %w", errStore, err) }
