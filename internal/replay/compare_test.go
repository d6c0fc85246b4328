package replay

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/content"
)

func TestCompareBody(t *testing.T) {
	gz, err := content.Encode("gzip", []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	noisy := func(f string) bool { return f == "body.at" }
	tests := []struct {
		name      string
		rec, live string
		recEnc    string
		liveEnc   string
		want      []FieldDiff
	}{
		{name: "same bytes", rec: "hello", live: "hello"},
		{name: "text differs", rec: "hello", live: "help", want: []FieldDiff{{"body", "hello", "help"}}},
		{name: "JSON reordered", rec: `{"a":1,"b":[1,2]}`, live: `{ "b": [1, 2], "a": 1 }`},
		{name: "numbers by value", rec: `{"a":1}`, live: `{"a":1.0}`},
		{name: "noise left out", rec: `{"a":1,"at":"x"}`, live: `{"a":1,"at":"y"}`},
		{name: "field differs", rec: `{"a":1,"b":"x"}`, live: `{"a":2,"b":"x"}`, want: []FieldDiff{{"body.a", "1", "2"}}},
		{name: "field missing and added", rec: `{"a":1}`, live: `{"b":1}`,
			want: []FieldDiff{{"body.a", "1", "(absent)"}, {"body.b", "(absent)", "1"}}},
		{name: "array longer", rec: `[1]`, live: `[1,{"c":2}]`, want: []FieldDiff{{"body.1", "(absent)", `{"c":2}`}}},
		{name: "type differs", rec: `{"a":"1"}`, live: `{"a":1}`, want: []FieldDiff{{"body.a", "1", "1"}}},
		{name: "gzip against identity", rec: string(gz), recEnc: "gzip", live: `{"a": 1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := compareBody([]byte(tc.rec), tc.recEnc, []byte(tc.live), tc.liveEnc, func(d FieldDiff) bool { return noisy(d.Field) })
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func recorded(ep, body string) *capture.Record {
	return &capture.Record{HTTP: &capture.HTTP{
		Req: capture.Request{Method: "GET", URL: "http://x" + ep},
		Res: &capture.Response{Status: 200, Headers: capture.Headers{{Name: "Date", Value: body}}, Body: capture.Body{Data: []byte(body), Size: int64(len(body))}},
	}}
}

func TestLearner(t *testing.T) {
	l, err := NewLearner([]string{"$.items[*].price", "header.X-Trace"})
	if err != nil {
		t.Fatal(err)
	}
	l.Observe("GET /a", recorded("/a", `{"id":"1","name":"n","items":[{"price":1}],"meta":{"at":1}}`))
	l.Observe("GET /a", recorded("/a", `{"id":"2","name":"n","items":[{"price":1}],"meta":{"at":1},"extra":true}`))
	l.Observe("GET /b", recorded("/b", `{"id":"3"}`))
	tests := []struct {
		ep, field string
		want      bool
	}{
		{"GET /a", "body.id", true},            // differs between recordings
		{"GET /a", "body.name", false},         // the same in both
		{"GET /a", "body.extra", true},         // in one of two
		{"GET /a", "body.items.0.price", true}, // --ignore
		{"GET /b", "body.items.3.price", true}, // --ignore holds for every endpoint
		{"GET /a", "body.meta.at", false},
		{"GET /a", "header.date", true},
		{"GET /a", "header.x-trace", true},
		{"GET /b", "body.id", false}, // one recording teaches nothing
		{"GET /c", "body.id", false},
	}
	for _, tc := range tests {
		if got := l.Noisy(tc.ep, tc.field); got != tc.want {
			t.Errorf("Noisy(%q, %q) = %v, want %v", tc.ep, tc.field, got, tc.want)
		}
	}
	if _, err := NewLearner([]string{"body..a"}); !errors.Is(err, ErrUsage) {
		t.Errorf("NewLearner(body..a): %v, want ErrUsage", err)
	}
}

func TestParseCondition(t *testing.T) {
	rep := &Report{Sent: 200, Answered: 199, Errors: 1, StatusMatched: 199, BodyCompared: 100, BodyMatched: 94,
		Latency: Latency{P50: 3, P90: 10, P99: 250, Max: 900}, RPS: 480}
	tests := []struct {
		expr     string
		wantFail bool
		wantErr  bool
	}{
		{expr: "status_match<100%", wantFail: true},
		{expr: "status_match < 99", wantFail: false}, // 99.5
		{expr: "body_match<95%", wantFail: true},
		{expr: "p99>200ms", wantFail: true},
		{expr: "p99>0.3s", wantFail: false},
		{expr: "errors>0", wantFail: true},
		{expr: "error_rate>=1%", wantFail: false}, // 0.5%
		{expr: "rps<500", wantFail: true},
		{expr: "max==900", wantFail: true},
		{expr: "p99>200%", wantErr: true},
		{expr: "latency>1", wantErr: true},
		{expr: "errors>>1", wantErr: true},
		{expr: "errors", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			c, err := ParseCondition(tc.expr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseCondition: err %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrUsage) {
					t.Errorf("error %v is not ErrUsage", err)
				}
				return
			}
			failed := rep.Check([]Condition{c})
			got := len(failed) == 2 // the default, status_match<100%, fails here too
			if tc.expr == DefaultCondition {
				got = len(failed) == 2
			}
			if got != tc.wantFail {
				t.Errorf("failed %v (%+v), want %v", got, rep.Assertions, tc.wantFail)
			}
		})
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := int64(1); i <= 10000; i++ {
		h.add(i * 100) // 100µs to 1s, uniform
	}
	for _, tc := range []struct {
		q    float64
		want int64
	}{{.5, 500000}, {.9, 900000}, {.99, 990000}, {1, 1000000}} {
		got := h.quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d > .016 || d < -.016 {
			t.Errorf("quantile(%v) = %d, want %d within 1.6%%", tc.q, got, tc.want)
		}
	}
	for _, v := range []int64{0, 1, 127, 128, 129, 1000, 1 << 20, 1 << 39} {
		if got := bucketMid(bucketOf(v)); float64(got) < float64(v)*0.984 || float64(got) > float64(v)*1.016+1 {
			t.Errorf("bucketMid(bucketOf(%d)) = %d", v, got)
		}
	}
}

func TestSchedule(t *testing.T) {
	// 100/s with a 2 s ramp: 100 requests in the ramp (a quarter of them in its first half), then one
	// every 10 ms.
	s := newSchedule(Config{Rate: 100, Ramp: 2 * time.Second}, nil)
	count := func(until time.Duration) int {
		n := 0
		for s.at(n) < until {
			n++
		}
		return n
	}
	for _, tc := range []struct {
		until time.Duration
		want  int
	}{{time.Second, 25}, {2 * time.Second, 100}, {3 * time.Second, 200}} {
		if got := count(tc.until); got < tc.want-1 || got > tc.want+1 {
			t.Errorf("requests before %v: %d, want %d±1", tc.until, got, tc.want)
		}
	}
	flat := newSchedule(Config{Rate: 2000}, nil)
	if got := flat.at(2000); got != time.Second {
		t.Errorf("at(2000) at 2000/s = %v, want 1s", got)
	}
}
