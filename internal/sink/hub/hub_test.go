package hub

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	hubsrv "github.com/tapwire/tapwire/internal/hub"
	"github.com/tapwire/tapwire/internal/sink/sinktest"
	"github.com/tapwire/tapwire/internal/store"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/wire"
	"github.com/tapwire/tapwire/internal/wire/wiretest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBaseURL(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"app.speedscale.com", "https://app.speedscale.com", false},
		{"hub.internal:8443", "https://hub.internal:8443", false},
		{"[::1]:8443", "https://[::1]:8443", false},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", false},
		{"https://hub.example.com/tapwire/", "https://hub.example.com/tapwire", false},
		{" https://hub.example.com ", "https://hub.example.com", false},
		{"", "", true},
		{"ftp://hub", "", true},
		{"hub.example.com/path", "https://hub.example.com/path", false}, // as speedctl reads it (one parser)
		{"https://hub.example.com/?x=1", "", true},
		{"https://hub.example.com/#top", "", true},
		{"https://user:pw@hub", "", true},
		{":8080", "", true},
	}
	for _, tt := range tests {
		got, err := BaseURL(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("BaseURL(%q) = %q, %v; want %q, error %t", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := New("hub.example.com", " ", Options{}); err == nil {
		t.Errorf("New with an empty API key: nil error")
	}
}

// fakeHub is a test server speaking the hub's ingest contract
// (wire.ReadBatch behind a bearer API key).
func fakeHub(t *testing.T) (*wiretest.Forwarder, *Sink) {
	t.Helper()
	h := wiretest.New(t)
	h.RequireToken("key-1")
	s, err := New(h.Server.URL, "key-1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return h, s
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		h, s := fakeHub(t)
		return sinktest.Target{Sink: s, Read: func(t *testing.T) []*capture.Record { return h.Records() }}
	})
}

func TestWrongKey(t *testing.T) {
	h := wiretest.New(t)
	h.RequireToken("right")
	s, err := New(h.Server.URL, "wrong", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Write(context.Background(), sinktest.Records(1, 10))
	var se *wire.ServerError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Errorf("Write with a wrong key: %v, want 401", err)
	}
	if err := s.Probe(context.Background()); !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Errorf("Probe with a wrong key: %v, want 401", err)
	}
}

// TestConformanceAgainstHub runs the suite against the real hub
// (internal/hub over a SQLite store), with a key from its bootstrap.
func TestConformanceAgainstHub(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		ctx := context.Background()
		st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		ingest, _, err := hubsrv.Bootstrap(ctx, st, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(hubsrv.NewServer(hubsrv.Config{}, st, nil).Handler())
		t.Cleanup(srv.Close)
		s, err := New(srv.URL, ingest, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Probe(ctx); err != nil {
			t.Fatalf("Probe against the hub: %v", err)
		}
		read := func(t *testing.T) []*capture.Record {
			var got []*capture.Record
			q := store.Query{Limit: store.MaxLimit, Full: true}
			for {
				page, err := st.List(ctx, "default", q)
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range page.Items {
					got = append(got, it.Record)
				}
				if page.Next == "" {
					return got
				}
				q.Cursor = page.Next
			}
		}
		return sinktest.Target{Sink: s, Read: read, ExactlyOnce: true,
			Stamp: func(r *capture.Record) { r.Labels.Tenant = "default" }}
	})
}
