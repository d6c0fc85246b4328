package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/storetest"
)

// TestPlans: the list's common filters walk records_time or
// records_service in order; none sorts.
func TestPlans(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "x.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	g := storetest.NewSynth(1, now, 7*24*time.Hour, 2000)
	var recs []*capture.Record
	for i := range 2000 {
		recs = append(recs, g.Next(i))
	}
	if _, err := s.Insert(ctx, "bench", recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Optimize(ctx); err != nil {
		t.Fatal(err)
	}
	c := &store.Cursor{StartUs: now.UnixMicro(), ID: "x"}
	tests := []struct {
		f    store.Filter
		c    *store.Cursor
		want string
	}{
		{store.Filter{}, nil, "USING INDEX records_time (tenant=?)"},
		{store.Filter{}, c, "USING INDEX records_time (tenant=? AND (start_us,id)<(?,?))"},
		{store.Filter{From: now.Add(-2 * time.Hour), To: now.Add(-time.Hour)}, nil, "USING INDEX records_time (tenant=? AND start_us>? AND start_us<?)"},
		{store.Filter{Service: "orders", StatusLo: 500, StatusHi: 599}, nil, "USING INDEX records_service (tenant=? AND service=?)"},
		{store.Filter{Service: "orders", Direction: "in"}, c, "USING INDEX records_service (tenant=? AND service=? AND (start_us,id)<(?,?))"},
		{store.Filter{Host: "api.stripe.com", Method: "POST", Text: "x"}, nil, "USING INDEX records_time (tenant=?)"},
	}
	for _, tc := range tests {
		q := store.Query{Filter: tc.f}
		if tc.c != nil {
			q.Cursor = tc.c.String()
		}
		query, args, err := dialect.ListQuery("bench", q)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.r.Query("EXPLAIN QUERY PLAN "+query, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var a, b, c int
			var d string
			if err := rows.Scan(&a, &b, &c, &d); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, d)
		}
		rows.Close()
		got := strings.Join(plan, " | ")
		if !strings.Contains(got, tc.want) || strings.Contains(got, "TEMP B-TREE") || len(plan) != 1 {
			t.Errorf("%s: plan %q, want one step %q and no sort", query, got, tc.want)
		}
	}
}
