package sqlq

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/store"
)

var (
	question = Dialect{Strpos: "instr", True: "1", Body: "(body)"}
	numbered = Dialect{Numbered: true, Strpos: "strpos", Like: true, True: "TRUE", Body: "(body)"}
)

func TestListQuery(t *testing.T) {
	from, to := time.UnixMicro(1000), time.UnixMicro(2000)
	every := store.Filter{From: from, To: to, Service: "orders", Direction: "out", Method: "post", StatusLo: 500, StatusHi: 599,
		Host: "API.example", Path: "/v1_%", Text: `50% Off\`, Failed: true}
	cursor := store.Cursor{StartUs: 1500, ID: "r9"}
	tests := []struct {
		name     string
		d        *Dialect
		q        store.Query
		wantSQL  string
		wantArgs []any
	}{
		{"?: no filter", &question, store.Query{},
			"SELECT " + summaryCols + " FROM records WHERE tenant = ? ORDER BY start_us DESC, id DESC LIMIT ?",
			[]any{"t", 101}},
		{"$n: no filter", &numbered, store.Query{},
			"SELECT " + summaryCols + " FROM records WHERE tenant = $1 ORDER BY start_us DESC, id DESC LIMIT $2",
			[]any{"t", 101}},
		{"?: every filter, a cursor, full", &question, store.Query{Filter: every, Cursor: cursor.String(), Limit: 5, Full: true},
			"SELECT " + summaryCols + ", (body) FROM records WHERE tenant = ? AND start_us >= ? AND start_us < ? AND service = ? AND direction = ?" +
				" AND method = ? AND status BETWEEN ? AND ? AND host = ? AND instr(path, ?) > 0 AND instr(search, ?) > 0 AND failed = 1" +
				" AND (start_us, id) < (?, ?) ORDER BY start_us DESC, id DESC LIMIT ?",
			[]any{"t", int64(1000), int64(2000), "orders", "out", "POST", 500, 599, "api.example", "/v1_%", `50% off\`, int64(1500), "r9", 6}},
		{"$n: every filter, a cursor, full", &numbered, store.Query{Filter: every, Cursor: cursor.String(), Limit: 5, Full: true},
			"SELECT " + summaryCols + ", (body) FROM records WHERE tenant = $1 AND start_us >= $2 AND start_us < $3 AND service = $4 AND direction = $5" +
				" AND method = $6 AND status BETWEEN $7 AND $8 AND host = $9 AND strpos(path, $10) > 0 AND search LIKE $11 AND failed = TRUE" +
				" AND (start_us, id) < ($12, $13) ORDER BY start_us DESC, id DESC LIMIT $14",
			[]any{"t", int64(1000), int64(2000), "orders", "out", "POST", 500, 599, "api.example", "/v1_%", `%50\% off\\%`, int64(1500), "r9", 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sql, args, err := tc.d.ListQuery("t", tc.q)
			checkQuery(t, sql, args, err, tc.wantSQL, tc.wantArgs)
		})
	}
	if _, _, err := question.ListQuery("t", store.Query{Cursor: "%%"}); !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("bad cursor: got error %v, want ErrBadCursor", err)
	}
}

func TestCountQuery(t *testing.T) {
	tests := []struct {
		name     string
		d        *Dialect
		wantSQL  string
		wantArgs []any
	}{
		{"?: the step bound once a placeholder", &question,
			"SELECT start_us - ((start_us % ?) + ?) % ? AS b, count(*), count(*) FILTER (WHERE failed = 1) FROM records" +
				" WHERE tenant = ? AND service = ? GROUP BY b ORDER BY b",
			[]any{int64(60e6), int64(60e6), int64(60e6), "t", "orders"}},
		{"$n: the step bound once", &numbered,
			"SELECT start_us - ((start_us % $1) + $1) % $1 AS b, count(*), count(*) FILTER (WHERE failed = TRUE) FROM records" +
				" WHERE tenant = $2 AND service = $3 GROUP BY b ORDER BY b",
			[]any{int64(60e6), "t", "orders"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sql, args, err := tc.d.CountQuery("t", store.Filter{Service: "orders"}, time.Minute)
			checkQuery(t, sql, args, err, tc.wantSQL, tc.wantArgs)
		})
	}
	if _, _, err := question.CountQuery("t", store.Filter{}, time.Nanosecond); err == nil {
		t.Errorf("step 1ns: got no error, want one")
	}
}

func TestScanQuery(t *testing.T) {
	sql, args := numbered.ScanQuery("t", store.Filter{Failed: true, Path: "/x"})
	checkQuery(t, sql, args, nil, "SELECT "+scanCols+" FROM records WHERE tenant = $1 AND strpos(path, $2) > 0 AND failed = TRUE", []any{"t", "/x"})
}

func checkQuery(t *testing.T, sql string, args []any, err error, wantSQL string, wantArgs []any) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if sql != wantSQL {
		t.Errorf("got  %s\nwant %s", sql, wantSQL)
	}
	if !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("got args %#v\nwant     %#v", args, wantArgs)
	}
}
