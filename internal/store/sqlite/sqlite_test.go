package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/store/storetest"
)

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "hub.db"))
	})
}

// TestReopen: data and schema survive a restart; migrations run once.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "hub.db")
	s := open(t, path)
	r := storetest.Rec(1, "s", capture.DirIn, "GET", "http://s/", 200)
	if _, err := s.Insert(ctx, "t", []*capture.Record{r}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	if _, err := s.Get(ctx, "t", r.ID); err != nil {
		t.Errorf("Get after reopen: %v", err)
	}
}

// BenchmarkInsert: batches of 512 realistic records (a goproxy batch).
func BenchmarkInsert(b *testing.B) {
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "hub.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchInsert(b, s)
}
