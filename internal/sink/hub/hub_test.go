package hub

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/sink/sinktest"
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
		{"hub.example.com/path", "", true},
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
