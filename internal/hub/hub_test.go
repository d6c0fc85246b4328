package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/sink/file"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// rec returns a record started i seconds after t0.
func rec(i int, service string, dir capture.Direction) *capture.Record {
	return &capture.Record{
		Schema: capture.SchemaVersion, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: dir,
		Start:  t0.Add(time.Duration(i) * time.Second),
		Labels: capture.Labels{Service: service, Cluster: "ecs"},
		HTTP:   &capture.HTTP{Req: capture.Request{Method: "GET", URL: fmt.Sprintf("http://%s/%d", service, i), Proto: "HTTP/1.1"}},
	}
}

// writeDir writes batches with the file sink, one file per batch.
func writeDir(t *testing.T, dir string, batches ...[]*capture.Record) {
	t.Helper()
	for _, b := range batches {
		s, err := file.New(dir, file.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func serve(t *testing.T, dir string) string {
	t.Helper()
	srv := httptest.NewServer(New(dir, nil).Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q, want application/json", url, ct)
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %d %q is not JSON: %v", url, resp.StatusCode, b, err)
	}
	return resp.StatusCode
}

func ids(recs []*capture.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func TestRecords(t *testing.T) {
	dir := t.TempDir()
	// Start times out of file order: the list is by start time.
	a := []*capture.Record{rec(5, "orders", capture.DirIn), rec(1, "orders", capture.DirOut), rec(3, "users", capture.DirIn)}
	b := []*capture.Record{rec(4, "orders", capture.DirOut), rec(2, "users", capture.DirOut), rec(6, "users", capture.DirIn)}
	writeDir(t, dir, a, b)
	base := serve(t, dir)
	byStart := func(secs ...int) []string {
		all := append(append([]*capture.Record{}, a...), b...)
		var out []string
		for _, s := range secs {
			for _, r := range all {
				if r.Start.Equal(t0.Add(time.Duration(s) * time.Second)) {
					out = append(out, r.ID)
				}
			}
		}
		return out
	}

	tests := []struct {
		query string
		want  []string
	}{
		{"", byStart(6, 5, 4, 3, 2, 1)},
		{"?limit=2", byStart(6, 5)},
		{"?service=orders", byStart(5, 4, 1)},
		{"?direction=out", byStart(4, 2, 1)},
		{"?direction=IN&service=users&limit=1", byStart(6)},
		{"?service=nobody", nil},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			var got []*capture.Record
			if code := getJSON(t, base+"/api/records"+tc.query, &got); code != 200 {
				t.Fatalf("status %d, want 200", code)
			}
			if g := ids(got); strings.Join(g, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got ids %v, want %v", g, tc.want)
			}
		})
	}

	t.Run("empty list is []", func(t *testing.T) {
		resp, err := http.Get(base + "/api/records?service=nobody")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("body %q, want []", b)
		}
	})

	t.Run("one record", func(t *testing.T) {
		var got capture.Record
		if code := getJSON(t, base+"/api/records/"+b[1].ID, &got); code != 200 {
			t.Fatalf("status %d, want 200", code)
		}
		if got.ID != b[1].ID || got.HTTP.Req.URL != b[1].HTTP.Req.URL || got.Labels.Cluster != "ecs" {
			t.Errorf("got %+v, want record %s", got, b[1].ID)
		}
	})

	bad := []struct{ path, want string }{
		{"/api/records/no-such-id", `no record with id "no-such-id"`},
		{"/api/records?limit=0", "limit"},
		{"/api/records?limit=ten", "limit"},
		{"/api/records?direction=sideways", "direction"},
	}
	for _, tc := range bad {
		t.Run(tc.path, func(t *testing.T) {
			var e struct{ Error string }
			code := getJSON(t, base+tc.path, &e)
			wantCode := 400
			if strings.Contains(tc.path, "no-such-id") {
				wantCode = 404
			}
			if code != wantCode || !strings.Contains(e.Error, tc.want) {
				t.Errorf("got %d %q, want %d with %q", code, e.Error, wantCode, tc.want)
			}
		})
	}
}

func TestLimitClamped(t *testing.T) {
	dir := t.TempDir()
	batch := make([]*capture.Record, MaxLimit+5)
	for i := range batch {
		batch[i] = rec(i, "s", capture.DirIn)
	}
	writeDir(t, dir, batch)
	base := serve(t, dir)
	var got []*capture.Record
	getJSON(t, base+"/api/records?limit=5000", &got)
	if len(got) != MaxLimit || got[0].ID != batch[len(batch)-1].ID {
		t.Errorf("limit=5000: %d records starting %s, want %d starting with the newest", len(got), got[0].ID, MaxLimit)
	}
	getJSON(t, base+"/api/records", &got)
	if len(got) != DefaultLimit {
		t.Errorf("no limit: %d records, want %d", len(got), DefaultLimit)
	}
}

// TestTornFile: a file with a bad line (a crash during a write) costs the
// rest of that file, not the other files.
func TestTornFile(t *testing.T) {
	dir := t.TempDir()
	good := []*capture.Record{rec(1, "s", capture.DirIn)}
	writeDir(t, dir, []*capture.Record{rec(2, "s", capture.DirIn)}, good)
	files, err := file.Files(dir)
	if err != nil || len(files) != 2 {
		t.Fatalf("Files: %v %v", files, err)
	}
	f, err := os.OpenFile(files[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"schema":1,"id":"torn`)
	f.Close()

	var got []*capture.Record
	if code := getJSON(t, serve(t, dir)+"/api/records", &got); code != 200 {
		t.Fatalf("status %d, want 200", code)
	}
	if len(got) != 2 || got[1].ID != good[0].ID {
		t.Errorf("got %v, want both records", ids(got))
	}
}

func TestHealthz(t *testing.T) {
	dir := t.TempDir()
	writeDir(t, dir, []*capture.Record{rec(1, "s", capture.DirIn)})
	var h struct {
		Status, Dir string
		Files       int
	}
	if code := getJSON(t, serve(t, dir)+"/healthz", &h); code != 200 || h.Status != "ok" || h.Files != 1 || h.Dir != dir {
		t.Errorf("healthz %d %+v, want 200 ok with 1 file in %s", code, h, dir)
	}
	missing := filepath.Join(dir, "missing")
	var list []*capture.Record
	if code := getJSON(t, serve(t, missing)+"/api/records", &list); code != 200 || len(list) != 0 {
		t.Errorf("records of a missing dir: %d %d records, want 200 and none", code, len(list))
	}
}

func TestLoad(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	var out bytes.Buffer
	c, err := Load(nil, env(nil), &out)
	if err != nil || c.Dir != "tapwire-forwarded" || c.Listen != "127.0.0.1:8080" {
		t.Errorf("defaults: %+v %v", c, err)
	}
	c, err = Load([]string{"-dir", "/d"}, env(map[string]string{"HUB_DIR": "/e", "HUB_LISTEN": ":9"}), &out)
	if err != nil || c.Dir != "/d" || c.Listen != ":9" {
		t.Errorf("flag over env: %+v %v", c, err)
	}
	if _, err := Load([]string{"-listen", "8080"}, env(nil), &out); err == nil || !strings.Contains(err.Error(), "HUB_LISTEN") {
		t.Errorf("bad listen: %v, want an error naming HUB_LISTEN", err)
	}
	out.Reset()
	if _, err := Load([]string{"-help"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-help: %v", err)
	}
	for _, want := range []string{"first slice", "/api/records/{id}", "direction=in|out", "/healthz"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
