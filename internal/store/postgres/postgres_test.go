package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/postgres"
	"github.com/tapwire/tapwire/internal/store/storetest"
	"github.com/tapwire/tapwire/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

func open(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, testpg.DSN(t)) })
}

// TestReopen: data and schema survive a restart; migrations run once, and
// two hubs opening one database at once do not race.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	dsn := testpg.DSN(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s, err := postgres.Open(ctx, dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	s := open(t, dsn)
	r := storetest.Rec(1, "s", capture.DirIn, "GET", "http://s/", 200)
	if _, err := s.Insert(ctx, "t", []*capture.Record{r}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dsn)
	defer s.Close()
	if _, err := s.Get(ctx, "t", r.ID); err != nil {
		t.Errorf("Get after reopen: %v", err)
	}
}

func BenchmarkInsert(b *testing.B) {
	s := open(b, testpg.DSN(b))
	defer s.Close()
	storetest.BenchInsert(b, s)
}
