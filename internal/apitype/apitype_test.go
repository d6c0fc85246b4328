package apitype

import (
	"net/url"
	"reflect"
	"testing"
)

// TestFilterRoundTrip: what a client encodes, the hub decodes to the same
// filter, parameter by parameter.
func TestFilterRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Filter
		want string
	}{
		{"empty", Filter{}, ""},
		{"all", Filter{From: "-1h", To: "now", Service: "orders", Direction: "out", Method: "post", Status: "5xx",
			Host: "api.stripe.com", Path: "/v1/charges", Q: "card declined", Failed: true},
			"direction=out&failed=true&from=-1h&host=api.stripe.com&method=post&path=%2Fv1%2Fcharges&q=card+declined&service=orders&status=5xx&to=now"},
		{"failed only", Filter{Failed: true}, "failed=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{}
			tc.f.Encode(q)
			if got := q.Encode(); got != tc.want {
				t.Errorf("Encode: got %q, want %q", got, tc.want)
			}
			got, err := DecodeFilter(q)
			if err != nil || !reflect.DeepEqual(got, tc.f) {
				t.Errorf("DecodeFilter: got %+v, %v; want %+v", got, err, tc.f)
			}
		})
	}
}

func TestDecodeFilterFailed(t *testing.T) {
	for _, tc := range []struct {
		value   string
		want    bool
		wantErr string
	}{
		{"true", true, ""},
		{"1", true, ""},
		{"false", false, ""},
		{"", false, ""},
		{"yes", false, `failed="yes": want true or false`},
	} {
		t.Run(tc.value, func(t *testing.T) {
			f, err := DecodeFilter(url.Values{"failed": {tc.value}})
			var gotErr string
			if err != nil {
				gotErr = err.Error()
			}
			if f.Failed != tc.want || gotErr != tc.wantErr {
				t.Errorf("failed=%q: got %v, %q; want %v, %q", tc.value, f.Failed, gotErr, tc.want, tc.wantErr)
			}
		})
	}
}

func TestQueryValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  url.Values
		want string
	}{
		{"list", ListQuery{Filter: Filter{Service: "a"}, Limit: 10, Cursor: "c", Full: true}.Values(), "cursor=c&full=true&limit=10&service=a"},
		{"list defaults", ListQuery{}.Values(), ""},
		{"export", ExportQuery{Filter: Filter{Status: "404"}, Limit: 5, Cursor: "c"}.Values(), "cursor=c&limit=5&status=404"},
	} {
		if got := tc.got.Encode(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
