package hub

import (
	"context"
	"fmt"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/wire"
)

// A batch goes to the store in chunks as it is decoded, so that the hub
// never holds a whole batch: a decoded record is many times the size of
// its JSON (a batch of tiny records, 32 MiB of JSON, was 780 MiB of
// records). A chunk ends at chunkRecords records or chunkBytes of
// estimated JSON (wire.EstimateSize), whichever comes first; one larger
// record is a chunk alone.
const (
	chunkRecords = 512
	chunkBytes   = 1 << 20
)

// lineBudget is the hub's wire.Budget: the memory that long lines (past
// 64 KiB) and large zstd windows of the batches in flight may hold
// together, at most one line of wire.MaxLineBytes at a time.
const lineBudget = wire.MinBudget

// ingest stores one batch's records, chunk by chunk, in one transaction.
// The transaction begins with the second chunk: a batch of one chunk (most
// batches) is decoded whole before it takes the store's writer.
type ingest struct {
	ctx    context.Context
	st     store.Store
	tenant string
	chunk  []*capture.Record
	bytes  int64
	ins    store.Inserter // nil until the first chunk is full
}

func newIngest(ctx context.Context, st store.Store, tenant string) *ingest {
	return &ingest{ctx: ctx, st: st, tenant: tenant}
}

// add takes one record of the batch.
func (g *ingest) add(rec *capture.Record) error {
	g.chunk = append(g.chunk, rec)
	g.bytes += wire.EstimateSize(rec)
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
	clear(g.chunk) // let the records go
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
		n, err := g.st.Insert(g.ctx, g.tenant, g.chunk)
		if err != nil {
			return 0, storeError(err)
		}
		return n, nil
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
