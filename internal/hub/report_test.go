package hub

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/store"
)

// TestReports: a replay's report pushed with an ingest key is stored as it
// was posted, listed and read with a read key, of its tenant only, and
// deleted; bad bodies and wrong keys are refused.
func TestReports(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(*testing.T) store.Store) {
		h := newHub(t, open(t), Config{})
		ingest, read := h.keys["acme/ingest"], h.keys["acme/read"]
		body := `{"target": "http://orders:8080", "snapshot": "snap_aaaaaaaaaaaaaaaa", "sent": 4, "answered": 4,
  "status_matched": 3, "body_compared": 2, "body_matched": 1, "passed": false, "diffs": [{"endpoint": "GET /x", "count": 1}]}`
		push := func(key, body string) (int, apitype.ReportSummary, string) {
			t.Helper()
			code, b, _ := h.send("POST", key, "/api/v1/reports", []byte(body), nil)
			var rs apitype.ReportSummary
			if code == http.StatusCreated {
				if err := json.Unmarshal(b, &rs); err != nil {
					t.Fatalf("push: %s: %v", b, err)
				}
			}
			return code, rs, string(b)
		}
		code, first, msg := push(ingest, body)
		if code != http.StatusCreated {
			t.Fatalf("push: %d %s, want 201", code, msg)
		}
		want := apitype.ReportSummary{ID: first.ID, Created: first.Created, Target: "http://orders:8080", Snapshot: "snap_aaaaaaaaaaaaaaaa",
			Sent: 4, StatusMatched: 3, BodyCompared: 2, BodyMatched: 1, StatusMatchRate: 0.75, BodyMatchRate: 0.5}
		if first != want || store.ValidReportID(first.ID) != nil {
			t.Errorf("push answered %+v, want %+v", first, want)
		}
		h.advance(time.Second)
		code, second, msg := push(ingest, `{"target": "http://orders:8081", "sent": 0, "passed": true}`)
		if code != http.StatusCreated || second.StatusMatchRate != 1 || second.BodyMatchRate != 1 || !second.Passed {
			t.Fatalf("push of an empty report: %d %s, want 201, rates 1, passed", code, msg)
		}

		var list apitype.Reports
		if code := h.get(read, "/api/v1/reports", &list); code != 200 || len(list.Reports) != 2 ||
			list.Reports[0].ID != second.ID || list.Reports[1] != first {
			t.Errorf("list: %d %+v, want the second then the first", code, list)
		}
		if code := h.get(read, "/api/v1/reports?limit=1", &list); code != 200 || len(list.Reports) != 1 || list.Reports[0].ID != second.ID {
			t.Errorf("list, limit=1: %d %+v, want the newest", code, list)
		}
		var got apitype.Report
		if code := h.get(read, "/api/v1/reports/"+first.ID, &got); code != 200 || got.ReportSummary != first {
			t.Fatalf("show: %d %+v", code, got.ReportSummary)
		}
		if strings.Join(strings.Fields(string(got.Report)), "") != strings.Join(strings.Fields(body), "") {
			t.Errorf("show: the report is %s, want it as posted:\n%s", got.Report, body)
		}

		// Another tenant's keys see none of it.
		var none apitype.Reports
		if code := h.get(h.keys["beta/read"], "/api/v1/reports", &none); code != 200 || len(none.Reports) != 0 {
			t.Errorf("beta's list: %d %+v, want none", code, none)
		}
		for _, tc := range []struct {
			name, method, key, path, body string
			want                          int
		}{
			{"beta reads acme's", "GET", h.keys["beta/read"], "/api/v1/reports/" + first.ID, "", 404},
			{"beta deletes acme's", "DELETE", h.keys["beta/ingest"], "/api/v1/reports/" + first.ID, "", 404},
			{"a read key pushes", "POST", read, "/api/v1/reports", body, 403},
			{"an ingest key reads", "GET", ingest, "/api/v1/reports", "", 403},
			{"a read key deletes", "DELETE", read, "/api/v1/reports/" + first.ID, "", 403},
			{"no key", "GET", "", "/api/v1/reports", "", 401},
			{"not JSON", "POST", ingest, "/api/v1/reports", `{"target": "x"`, 400},
			{"an array", "POST", ingest, "/api/v1/reports", `[{"target": "x"}]`, 400},
			{"no target", "POST", ingest, "/api/v1/reports", `{"sent": 1}`, 400},
			{"a bad snapshot id", "POST", ingest, "/api/v1/reports", `{"target": "x", "snapshot": "nope"}`, 400},
			{"a negative count", "POST", ingest, "/api/v1/reports", `{"target": "x", "sent": -1}`, 400},
			{"a count of another type", "POST", ingest, "/api/v1/reports", `{"target": "x", "sent": "4"}`, 400},
			{"too large", "POST", ingest, "/api/v1/reports", `{"target": "x", "pad": "` + strings.Repeat("a", MaxReportBytes) + `"}`, 413},
			{"an unknown id", "GET", read, "/api/v1/reports/" + store.NewReportID(), "", 404},
			{"a malformed id", "GET", read, "/api/v1/reports/rep_1", "", 404},
			{"a bad limit", "GET", read, "/api/v1/reports?limit=0", "", 400},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if code, b, _ := h.send(tc.method, tc.key, tc.path, []byte(tc.body), nil); code != tc.want {
					t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, b, tc.want)
				}
			})
		}

		code, b, _ := h.send("DELETE", ingest, "/api/v1/reports/"+first.ID, nil, nil)
		var del apitype.Report
		if err := json.Unmarshal(b, &del); code != 200 || err != nil || del.ReportSummary != first || del.Report != nil {
			t.Errorf("delete: %d %s, want 200 and the summary", code, b)
		}
		if code := h.get(read, "/api/v1/reports/"+first.ID, &got); code != 404 {
			t.Errorf("show after delete: %d, want 404", code)
		}
		if code, b, _ := h.send("DELETE", ingest, "/api/v1/reports/"+first.ID, nil, nil); code != 404 {
			t.Errorf("delete twice: %d %s, want 404", code, b)
		}
	})
}
