package forwarder

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/redact"
	"github.com/tapwire/tapwire/internal/wire"
)

// TestFilter: the standard filter drops health checks before the spool;
// SPEEDSCALE_FILTER_RULE=none keeps them; a bad rule stops New.
func TestFilter(t *testing.T) {
	for _, tc := range []struct {
		rule string
		want int
	}{{"", 2}, {"none", 4}, {`{"id":"only-orders","conditions":[{"filters":[{"include":true,"service":"orders"}]}]}`, 0}} {
		t.Run(tc.rule, func(t *testing.T) {
			f := start(t, Config{FilterRule: tc.rule})
			recs := httpRecords(4, 0)
			recs[1].HTTP.Req.URL = "http://app:4143/healthz"
			recs[2].HTTP.Req.Headers = capture.Headers{{Name: "User-Agent", Value: "kube-probe/1.29"}}
			if err := newClient(t, f.addr, "").Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			if err := f.stop(); err != nil {
				t.Fatal(err)
			}
			if got := readDir(t, f.dir); len(got) != tc.want {
				t.Errorf("%d records delivered, want %d", len(got), tc.want)
			}
			if st := f.srv.Stats(); st.Records != 4 || st.Filtered != int64(4-tc.want) {
				t.Errorf("stats: %d received, %d filtered; want 4 and %d", st.Records, st.Filtered, 4-tc.want)
			}
		})
	}
	_, err := New(Config{FilterRule: `{"id":"x","operator":"XOR"}`, SpoolDir: t.TempDir(), Dir: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "SPEEDSCALE_FILTER_RULE") {
		t.Errorf("New with a bad filter: %v, want an error naming SPEEDSCALE_FILTER_RULE", err)
	}
}

// FuzzIngest feeds any body, encoding and record count to the batch
// handler: it must answer 200 or a 4xx the protocol names, never panic,
// and spool records only from a batch it answered 200.
func FuzzIngest(f *testing.F) {
	var plain, zs, gz bytes.Buffer
	recs := httpRecords(3, 20)
	recs[0].HTTP.Req.Headers = capture.Headers{{Name: "Authorization", Value: "Bearer x"}, {Name: "Content-Type", Value: "application/json"}}
	recs[0].HTTP.Req.Body = capture.Body{Data: []byte(`{"password":"p","n":[1,{"card":4111111111111111}]}`), Size: 52}
	recs[1].HTTP.Req.URL = "http://app/healthz"
	jsonl.Append(&plain, recs)
	wire.EncodeBatch(&zs, recs)
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	f.Add(plain.Bytes(), uint8(0), int16(3))
	f.Add(zs.Bytes(), uint8(1), int16(3))
	f.Add(gz.Bytes(), uint8(2), int16(-1))
	f.Add([]byte("{}\n"), uint8(0), int16(1))
	var ss bytes.Buffer
	wire.EncodeBatchS2(&ss, recs)
	f.Add(ss.Bytes(), uint8(4), int16(3)) // s2, the full forwarder
	f.Add(ss.Bytes(), uint8(9), int16(3)) // s2, the lazy one
	f.Add([]byte(`{"schema":1,"id":"a","kind":"tcp","direction":"in","tcp":{"chunks":[{"up":true,"data":"QUJD"}]}}`), uint8(0), int16(1))

	dir := f.TempDir()
	s, err := New(Config{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "records"), SpoolDir: filepath.Join(dir, "spool"), SpoolSync: "none",
		MaxBatchBytes: 64 << 10, SpoolBytes: 512 << 10, SpoolSegmentBytes: 64 << 10,
		Redaction: redact.Settings{DLPConfig: `{"id":"pii","redactlist":{"entries":{"all":["password"],"patterns":["card","email","bearer"]}}}`}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	// A second forwarder with the default rules only, which read no bodies:
	// it does not decode the bodies of lines it stores as they came.
	lazy, err := New(Config{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "records2"), SpoolDir: filepath.Join(dir, "spool2"), SpoolSync: "none",
		MaxBatchBytes: 64 << 10, SpoolBytes: 512 << 10, SpoolSegmentBytes: 64 << 10, Cluster: "ecs", TenantID: "acme"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { lazy.Close() })
	encodings := []string{"identity", "zstd", "gzip", "br", "s2"}
	f.Add([]byte("{\"schema\":1,\"id\":\"a\",\"kind\":\"tcp\",\"direction\":\"in\",\"tcp\":{},\"tags\":{\"\x01\":\"\"}}"), uint8(5), int16(1))
	f.Fuzz(func(t *testing.T, body []byte, enc uint8, count int16) {
		s := s
		if int(enc)/len(encodings)%2 == 1 {
			s = lazy
		}
		post := func(redacted string) *httptest.ResponseRecorder {
			req := httptest.NewRequest(http.MethodPost, wire.Path, bytes.NewReader(body))
			req.Header.Set(wire.HeaderProtocol, "1")
			req.Header.Set("Content-Encoding", encodings[int(enc)%len(encodings)])
			if count >= 0 {
				req.Header.Set(wire.HeaderRecords, fmt.Sprint(count))
			}
			if redacted != "" {
				req.Header.Set(wire.HeaderRedacted, redacted)
			}
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, req)
			return w
		}
		if s == lazy {
			// The sender says it redacted with this forwarder's rules: the
			// forwarder decodes typed lines only in part (jsonl.Want), and
			// must still refuse every batch the full decode refuses.
			full, part := post(""), post(lazy.redactor.Fingerprint())
			if full.Code != part.Code || full.Body.String() != part.Body.String() {
				t.Fatalf("decoded in full: %d %s; in part (pre-redacted): %d %s", full.Code, full.Body, part.Code, part.Body)
			}
		}
		before := s.Stats()
		w := post("")
		after := s.Stats()
		spooled := after.Spooled - before.Spooled
		switch w.Code {
		case http.StatusOK:
			var a wire.Accepted
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || int64(a.Accepted) < spooled {
				t.Fatalf("200 %q with %d spooled", w.Body.String(), spooled)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if spooled != 0 {
				t.Fatalf("%d refused, yet %d records spooled", w.Code, spooled)
			}
		default:
			t.Fatalf("answer %d %s", w.Code, w.Body.String())
		}
	})
}

// TestSpoolLines: what the forwarder stores for each line of a batch. A
// record nothing changed is stored as its line came, byte for byte; one
// that was stamped or redacted is stored with those members written again
// and the rest of its line kept; one the filter drops is not stored; and
// one whose line holds members the forwarder does not know is encoded in
// full, so that they are dropped as the decoder dropped them.
func TestSpoolLines(t *testing.T) {
	f := start(t, Config{TenantName: "Acme"})
	const (
		plain    = `{ "schema":1, "id":"r1","kind":"http","direction":"in","start":"2026-03-01T12:00:00.5Z","durationUs":7,"labels":{"service":"cart"},"net":{},"http":{"req":{"method":"GET","url":"http://app/x","proto":"HTTP/1.1","host":"app","body":{"size":0}},"res":{"status":200,"body":{"data":"eyJhIjoxfQ==","size":7}}},"tags":{"tenantName":"Acme"}}`
		secret   = `{"schema":1,"id":"r2","kind":"http","direction":"in","start":"2026-03-01T12:00:01Z","durationUs":7,"labels":{"service":"cart"},"net":{},"http":{"req":{"method":"GET","url":"http://app/y?api_key=k3y","proto":"HTTP/1.1","host":"app","headers":[["Accept","*/*"],["Authorization","Bearer s3cret"]],"body":{"size":0}},"res":{"status":200,"body":{"data":"eyJhIjoxfQ==","size":7}}}}`
		health   = `{"schema":1,"id":"r3","kind":"http","direction":"in","start":"2026-03-01T12:00:02Z","durationUs":7,"labels":{},"net":{},"http":{"req":{"method":"GET","url":"http://app/healthz","proto":"HTTP/1.1","host":"app","body":{"size":0}}},"tags":{"tenantName":"Acme"}}`
		unknown  = `{"schema":1,"id":"r4","kind":"tcp","direction":"out","start":"2026-03-01T12:00:03Z","durationUs":7,"labels":{},"net":{},"tcp":{"bytesUp":3,"bytesDown":0,"chunks":[{"up":true,"atUs":0,"data":"QUJD"}]},"tags":{"tenantName":"Acme"},"future":{"cookie":"s3cret"}}`
		wantSecr = `{"schema":1,"id":"r2","kind":"http","direction":"in","start":"2026-03-01T12:00:01Z","durationUs":7,"labels":{"service":"cart"},"net":{},"http":{"req":{"method":"GET","url":"http://app/y?api_key=REDACTED-std-auth","proto":"HTTP/1.1","host":"app","headers":[["Accept","*/*"],["Authorization","REDACTED-std-auth"]],"body":{"size":0}},"res":{"status":200,"body":{"data":"eyJhIjoxfQ==","size":7}}},"tags":{"tenantName":"Acme"},"redactions":["std-auth"]}`
		wantUnkn = `{"schema":1,"id":"r4","kind":"tcp","direction":"out","start":"2026-03-01T12:00:03Z","durationUs":7,"labels":{},"net":{},"tcp":{"bytesUp":3,"bytesDown":0,"chunks":[{"up":true,"atUs":0,"data":"QUJD"}]},"tags":{"tenantName":"Acme"}}`
	)
	body := strings.Join([]string{plain, secret, health, unknown}, "\n") + "\n"
	code, answer, _ := post(t, f.addr, "POST", map[string]string{wire.HeaderProtocol: "1", wire.HeaderRecords: "4"}, body)
	if code != http.StatusOK {
		t.Fatalf("answer %d %s", code, answer)
	}
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(f.dir, "*.jsonl"))
	var stored []byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, b...)
	}
	want := strings.Join([]string{plain, wantSecr, wantUnkn}, "\n") + "\n"
	if string(stored) != want {
		t.Errorf("stored lines:\n%s\nwant:\n%s", stored, want)
	}
	if st := f.srv.Stats(); st.Records != 4 || st.Filtered != 1 || st.Spooled != 3 {
		t.Errorf("stats: %d received, %d filtered, %d spooled; want 4, 1, 3", st.Records, st.Filtered, st.Spooled)
	}
}
