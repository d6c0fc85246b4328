package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
)

// newSnapshot returns a snapshot of tenant to be stored, made at T0.
func newSnapshot(tenant, name, source string) store.Snapshot {
	return store.Snapshot{ID: store.NewSnapshotID(), Tenant: tenant, Name: name, Created: T0, Source: source}
}

// snapshotIDs lists every record id of a snapshot, newest first, page by
// page.
func snapshotIDs(t *testing.T, s store.Store, tenant, id string) []string {
	t.Helper()
	var out []string
	q := store.Query{Filter: store.Filter{Snapshot: id}, Limit: 2}
	for {
		p := list(t, s, tenant, q)
		out = append(out, ids(p)...)
		if p.Next == "" {
			return out
		}
		q.Cursor = p.Next
	}
}

func testSnapshotFromFilter(t *testing.T, s store.Store) {
	in1 := Rec(10, "orders", "in", "GET", "http://orders/v1/orders/1", 200)
	out1 := Rec(20, "orders", "out", "POST", "https://pay.example/v1/charges", 402)
	out1.HTTP.Req.Body = capture.Body{Data: []byte(`{"card":"4242"}`), Size: 15}
	late := Rec(500, "orders", "in", "GET", "http://orders/v1/orders/2", 200)
	other := Rec(15, "users", "in", "GET", "http://users/", 200)
	insert(t, s, "a", in1, out1, late, other)
	insert(t, s, "b", Rec(12, "orders", "in", "GET", "http://orders/b", 200))

	sn := newSnapshot("a", "checkout", store.SourceFilter)
	sn.From, sn.To, sn.Spec = T0, T0.Add(time.Minute), []byte(`{"service":"orders"}`)
	got, err := s.CreateSnapshot(ctx, sn, store.Filter{Service: "orders", From: sn.From, To: sn.To})
	if err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	if got.Records != 2 {
		t.Errorf("CreateSnapshot: %d records, want 2", got.Records)
	}
	if got, want := snapshotIDs(t, s, "a", sn.ID), idsOf(out1, in1); !slices.Equal(got, want) {
		t.Errorf("snapshot's records: %v, want %v (newest first)", got, want)
	}
	// Immutable: records that arrive later, or leave by retention, do not
	// change it.
	insert(t, s, "a", Rec(30, "orders", "in", "GET", "http://orders/v1/orders/3", 200))
	if n, err := s.DeleteBefore(ctx, T0.Add(time.Hour)); err != nil || n != 6 {
		t.Fatalf("DeleteBefore: %d %v, want 6", n, err)
	}
	if got, want := snapshotIDs(t, s, "a", sn.ID), idsOf(out1, in1); !slices.Equal(got, want) {
		t.Errorf("after new records and retention the snapshot has %v, want %v", got, want)
	}
	rec, err := s.SnapshotRecord(ctx, "a", sn.ID, out1.ID)
	if err != nil {
		t.Fatalf("SnapshotRecord after retention: %v", err)
	}
	jsonEqual(t, rec, out1)
	p := list(t, s, "a", store.Query{Filter: store.Filter{Snapshot: sn.ID, Direction: "out"}, Full: true})
	if len(p.Items) != 1 || p.Items[0].Record == nil || string(p.Items[0].Record.HTTP.Req.Body.Data) != `{"card":"4242"}` {
		t.Errorf("List of the snapshot's outbound records, full: %+v", p.Items)
	}
	var routes []string
	if err := s.Scan(ctx, "a", store.Filter{Snapshot: sn.ID}, func(r *store.Row) error {
		routes = append(routes, r.Direction+" "+r.Method+" "+r.Host+r.Route)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(routes)
	if want := []string{"in GET orders/v1/orders/{id}", "out POST pay.example/v1/charges"}; !slices.Equal(routes, want) {
		t.Errorf("Scan of the snapshot: %q, want %q", routes, want)
	}
	if b, err := s.Count(ctx, "a", store.Filter{Snapshot: sn.ID}, time.Hour); err != nil || len(b) != 1 || b[0].Count != 2 || b[0].Errors != 0 {
		t.Errorf("Count of the snapshot: %+v %v", b, err)
	}
	shown, err := s.Snapshot(ctx, "a", sn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if shown.Name != "checkout" || shown.Source != store.SourceFilter || !shown.Created.Equal(T0) || !shown.From.Equal(sn.From) ||
		!shown.To.Equal(sn.To) || string(shown.Spec) != `{"service":"orders"}` || shown.Records != 2 || shown.Tenant != "a" {
		t.Errorf("Snapshot: %+v", shown)
	}
	// An empty selection is an empty snapshot; the list is newest first.
	empty := newSnapshot("a", "nothing", store.SourceFilter)
	empty.Created = T0.Add(time.Second)
	if got, err := s.CreateSnapshot(ctx, empty, store.Filter{Service: "none"}); err != nil || got.Records != 0 {
		t.Errorf("CreateSnapshot of nothing: %+v %v", got, err)
	}
	list, err := s.Snapshots(ctx, "a")
	if err != nil || len(list) != 2 || list[0].ID != empty.ID || list[1].ID != sn.ID {
		t.Errorf("Snapshots: %+v %v, want the empty one, then checkout", list, err)
	}
	if _, err := s.CreateSnapshot(ctx, sn, store.Filter{}); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateSnapshot with a taken id: %v, want ErrExists", err)
	}
}

func testSnapshotUpload(t *testing.T, s store.Store) {
	sn := newSnapshot("a", "pushed", store.SourceUpload)
	if err := s.BeginSnapshot(ctx, sn); err != nil {
		t.Fatalf("BeginSnapshot: %v", err)
	}
	r1, r2, r3 := Rec(5, "s", "out", "GET", "http://x/1", 200), Rec(7, "s", "out", "GET", "http://x/2", 200), Rec(9, "s", "in", "GET", "http://s/", 200)
	if n, err := s.AddSnapshotRecords(ctx, "a", sn.ID, []*capture.Record{r1, r2, r1}); err != nil || n != 2 {
		t.Errorf("AddSnapshotRecords: %d %v, want 2 new", n, err)
	}
	// Hidden until finished.
	if _, err := s.Snapshot(ctx, "a", sn.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Snapshot being stored: %v, want ErrNotFound", err)
	}
	if l, _ := s.Snapshots(ctx, "a"); len(l) != 0 {
		t.Errorf("Snapshots lists one being stored: %+v", l)
	}
	if _, err := s.SnapshotRecord(ctx, "a", sn.ID, r1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SnapshotRecord of one being stored: %v, want ErrNotFound", err)
	}
	if n, err := s.AddSnapshotRecords(ctx, "a", sn.ID, []*capture.Record{r2, r3}); err != nil || n != 1 {
		t.Errorf("AddSnapshotRecords again: %d %v, want 1 new", n, err)
	}
	got, err := s.FinishSnapshot(ctx, "a", sn.ID)
	if err != nil {
		t.Fatalf("FinishSnapshot: %v", err)
	}
	if got.Records != 3 || !got.From.Equal(r1.Start) || !got.To.Equal(r3.Start.Add(time.Microsecond)) || got.Source != store.SourceUpload {
		t.Errorf("FinishSnapshot: %+v, want 3 records from %s to just after %s", got, r1.Start, r3.Start)
	}
	if ids := snapshotIDs(t, s, "a", sn.ID); !slices.Equal(ids, idsOf(r3, r2, r1)) {
		t.Errorf("uploaded snapshot's records: %v", ids)
	}
	// Finished is final.
	if _, err := s.AddSnapshotRecords(ctx, "a", sn.ID, []*capture.Record{Rec(11, "s", "in", "GET", "http://s/", 200)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddSnapshotRecords to a finished snapshot: %v, want ErrNotFound", err)
	}
	if _, err := s.FinishSnapshot(ctx, "a", sn.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FinishSnapshot twice: %v, want ErrNotFound", err)
	}

	if err := s.DeleteSnapshot(ctx, "a", sn.ID); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
	if _, err := s.Snapshot(ctx, "a", sn.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Snapshot after delete: %v, want ErrNotFound", err)
	}
	if p := list(t, s, "a", store.Query{Filter: store.Filter{Snapshot: sn.ID}}); len(p.Items) != 0 {
		t.Errorf("records of a deleted snapshot: %v", ids(p))
	}
	if err := s.DeleteSnapshot(ctx, "a", sn.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSnapshot twice: %v, want ErrNotFound", err)
	}
	// A hidden one (an upload that failed) can be deleted.
	failed := newSnapshot("a", "failed", store.SourceUpload)
	if err := s.BeginSnapshot(ctx, failed); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshot(ctx, "a", failed.ID); err != nil {
		t.Errorf("DeleteSnapshot of a hidden one: %v", err)
	}
}

func testSnapshotTenants(t *testing.T, s store.Store) {
	secret := Rec(1, "orders", "in", "GET", "http://orders/secret", 200)
	insert(t, s, "alpha", secret)
	sn := newSnapshot("alpha", "alpha's", store.SourceFilter)
	if _, err := s.CreateSnapshot(ctx, sn, store.Filter{}); err != nil {
		t.Fatal(err)
	}
	// beta's snapshot of everything holds none of alpha's records.
	mine := newSnapshot("beta", "beta's", store.SourceFilter)
	if got, err := s.CreateSnapshot(ctx, mine, store.Filter{}); err != nil || got.Records != 0 {
		t.Errorf("beta's snapshot of all: %+v %v, want 0 records", got, err)
	}
	if _, err := s.Snapshot(ctx, "beta", sn.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Snapshot of alpha's by beta: %v, want ErrNotFound", err)
	}
	if l, err := s.Snapshots(ctx, "beta"); err != nil || len(l) != 1 || l[0].ID != mine.ID {
		t.Errorf("Snapshots of beta: %+v %v, want only its own", l, err)
	}
	if p := list(t, s, "beta", store.Query{Filter: store.Filter{Snapshot: sn.ID}}); len(p.Items) != 0 {
		t.Errorf("beta lists alpha's snapshot: %v", ids(p))
	}
	n := 0
	if err := s.Scan(ctx, "beta", store.Filter{Snapshot: sn.ID}, func(*store.Row) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("beta scans alpha's snapshot: %d rows %v", n, err)
	}
	if _, err := s.SnapshotRecord(ctx, "beta", sn.ID, secret.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SnapshotRecord of alpha's by beta: %v, want ErrNotFound", err)
	}
	if _, err := s.AddSnapshotRecords(ctx, "beta", sn.ID, []*capture.Record{Rec(2, "x", "in", "GET", "http://x/", 200)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddSnapshotRecords to alpha's by beta: %v, want ErrNotFound", err)
	}
	if err := s.DeleteSnapshot(ctx, "beta", sn.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSnapshot of alpha's by beta: %v, want ErrNotFound", err)
	}
	if got := snapshotIDs(t, s, "alpha", sn.ID); !slices.Equal(got, idsOf(secret)) {
		t.Errorf("alpha's snapshot after beta's attempts: %v", got)
	}
}
