package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/store"
)

// testReports: stored with their JSON as it was given, listed newest
// first without it, per tenant, left alone by retention, deleted.
func testReports(t *testing.T, s store.Store) {
	mk := func(tenant string, at time.Duration, passed bool) store.Report {
		return store.Report{ID: store.NewReportID(), Tenant: tenant, Created: T0.Add(at), Target: "http://orders:8080",
			Sent: 10, StatusMatched: 9, BodyCompared: 8, BodyMatched: 7, Passed: passed,
			Data: []byte(`{"target": "http://orders:8080", "sent": 10}`)}
	}
	old, mid, last := mk("a", 0, true), mk("a", time.Minute, false), mk("a", 2*time.Minute, true)
	mid.Snapshot = store.NewSnapshotID()
	other := mk("b", 3*time.Minute, true)
	for _, r := range []store.Report{mid, old, last, other} {
		if err := s.CreateReport(ctx, r); err != nil {
			t.Fatalf("CreateReport: %v", err)
		}
	}
	if err := s.CreateReport(ctx, old); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateReport of a taken id: %v, want ErrExists", err)
	}
	list, err := s.Reports(ctx, "a", 0)
	if err != nil {
		t.Fatalf("Reports: %v", err)
	}
	var got []string
	for _, r := range list {
		got = append(got, r.ID)
		if r.Data != nil {
			t.Errorf("Reports: %s has its data, want none in a list", r.ID)
		}
	}
	if want := []string{last.ID, mid.ID, old.ID}; !slices.Equal(got, want) {
		t.Errorf("Reports: %v, want %v (newest first, tenant a only)", got, want)
	}
	if list, err := s.Reports(ctx, "a", 2); err != nil || len(list) != 2 || list[0].ID != last.ID {
		t.Errorf("Reports, limit 2: %d reports %v, want the 2 newest", len(list), err)
	}

	// Retention deletes records, not reports.
	if _, err := s.DeleteBefore(ctx, T0.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Report(ctx, "a", mid.ID)
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	want := mid
	want.Created = want.Created.UTC()
	if r.ID != want.ID || r.Tenant != "a" || !r.Created.Equal(want.Created) || r.Target != want.Target || r.Snapshot != want.Snapshot ||
		r.Sent != 10 || r.StatusMatched != 9 || r.BodyCompared != 8 || r.BodyMatched != 7 || r.Passed || string(r.Data) != string(want.Data) {
		t.Errorf("Report: got %+v, want %+v", r, want)
	}
	for _, tc := range []struct{ name, tenant, id string }{
		{"another tenant's", "b", mid.ID},
		{"unknown", "a", store.NewReportID()},
		{"malformed id", "a", "rep_x' OR 1=1"},
	} {
		if _, err := s.Report(ctx, tc.tenant, tc.id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Report of %s id: %v, want ErrNotFound", tc.name, err)
		}
		if err := s.DeleteReport(ctx, tc.tenant, tc.id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteReport of %s id: %v, want ErrNotFound", tc.name, err)
		}
	}
	if err := s.DeleteReport(ctx, "a", mid.ID); err != nil {
		t.Fatalf("DeleteReport: %v", err)
	}
	if _, err := s.Report(ctx, "a", mid.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Report after DeleteReport: %v, want ErrNotFound", err)
	}
	if list, _ := s.Reports(ctx, "a", 0); len(list) != 2 {
		t.Errorf("Reports after a delete: %d, want 2", len(list))
	}
	if list, _ := s.Reports(ctx, "b", 0); len(list) != 1 || list[0].ID != other.ID {
		t.Errorf("tenant b's reports: %+v, want its one", list)
	}
}
