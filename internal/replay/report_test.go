package replay

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestReportGolden keeps the report's JSON shape: what --report writes and what the hub will store. Times,
// latencies and rates vary from run to run and are zeroed; everything else is as the replay wrote it.
func TestReportGolden(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/orders/1":
			fmt.Fprint(w, `{"id":1,"total":12,"currency":"EUR"}`) // the total changed
		case "/orders/2":
			fmt.Fprint(w, `{"id":2,"total":20,"currency":"EUR"}`)
		case "/health":
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	recs := []*capture.Record{
		rec("GET", "/orders/1", "", "10.0.0.1", 200, `{"id":1,"total":10,"currency":"EUR"}`, 0),
		rec("GET", "/orders/2", "", "10.0.0.1", 200, `{"id":2,"total":20,"currency":"EUR"}`, time.Millisecond),
		rec("GET", "/health", "", "10.0.0.2", 200, ``, 2*time.Millisecond),
	}
	for i, r := range recs {
		r.ID = fmt.Sprintf("0195-golden-%d", i+1)
	}
	rep, err := run(t, Config{Target: srv.URL, VUs: 1, Guard: -1}, recs)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCondition("body_match < 95%")
	if err != nil {
		t.Fatal(err)
	}
	if failed := rep.Check([]Condition{c}); len(failed) != 2 || rep.Passed {
		t.Errorf("failed %+v, want both assertions failed", failed)
	}
	normalize(rep)
	var got bytes.Buffer
	if err := rep.WriteJSON(&got); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.golden.json", got.Bytes())

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(table.String()), " ")
	for _, want := range []string{"GET /orders/{} 2 100.0% 50.0% 0", "GET /health 1 0.0% 100.0% 0", "total 3 66.6% 66.6% 0",
		`GET /orders/{}: 1 answers differ e.g. GET /orders/1 (record 0195-golden-1) body.total: recorded "10", live "12"`} {
		if !strings.Contains(flat, want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func normalize(rep *Report) {
	rep.Target = "http://TARGET"
	rep.Started = time.Time{}
	rep.Seconds, rep.RPS = 0, 0
	rep.Latency = Latency{}
	for i := range rep.Endpoints {
		rep.Endpoints[i].Latency = Latency{}
	}
	for _, a := range rep.Answers {
		if a.Live != nil {
			delete(a.Live.Headers, "Date")
		}
	}
}

// TestKeepLive: the live side of an answer that differed is kept within MaxLiveBody, text as text and
// binary as base64, its content coding undone, until the report's MaxLiveBytes are spent; the answer kept
// is a record's first, or its first that differed.
func TestKeepLive(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"a":1}`))
	zw.Close()
	big := strings.Repeat("é", MaxLiveBody) // 2 bytes a rune: cut inside one
	tests := []struct {
		name     string
		header   http.Header
		body     []byte
		kept     int // bytes spent before
		wantBody string
		wantB64  bool
		wantSize int
		wantCut  bool
	}{
		{"text", http.Header{}, []byte("hello"), 0, "hello", false, 5, false},
		{"gzip", http.Header{"Content-Encoding": {"gzip"}}, gz.Bytes(), 0, `{"a":1}`, false, 7, false},
		{"binary", http.Header{}, []byte{0xff, 0, 1}, 0, "/wAB", true, 3, false},
		{"long", http.Header{}, []byte(big), 0, big[:MaxLiveBody], false, 2 * MaxLiveBody, true},
		{"budget spent", http.Header{}, []byte("hello"), MaxLiveBytes, "", false, 5, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Replay{kept: tc.kept}
			la := r.keepLive(live{status: 200, header: tc.header, body: tc.body})
			if la.Body != tc.wantBody || la.BodyBase64 != tc.wantB64 || la.BodySize != tc.wantSize || la.BodyCut != tc.wantCut {
				t.Errorf("got body %.40q base64 %v size %d cut %v, want %.40q %v %d %v", la.Body, la.BodyBase64, la.BodySize, la.BodyCut,
					tc.wantBody, tc.wantB64, tc.wantSize, tc.wantCut)
			}
			if r.kept > MaxLiveBytes && tc.kept < MaxLiveBytes {
				t.Errorf("kept %d bytes, more than MaxLiveBytes", r.kept)
			}
		})
	}

	r := &Replay{}
	it := &item{rec: &capture.Record{ID: "r1"}, ep: &endpoint{name: "GET /x"}, method: "GET", path: "/x"}
	r.keepAnswer(it, live{status: 200, header: http.Header{}}, true, true, nil)
	r.keepAnswer(it, live{status: 500, header: http.Header{}}, false, true, []FieldDiff{{"status", "200", "500"}})
	r.keepAnswer(it, live{status: 200, header: http.Header{}}, true, true, nil)
	if a := it.answer; a == nil || a.Status != 500 || a.Live == nil || len(a.Fields) != 1 {
		t.Errorf("answer kept: %+v, want the first that differed (500)", a)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
