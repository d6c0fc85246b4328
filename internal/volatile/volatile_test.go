package volatile_test

import (
	"testing"

	"github.com/tapwire/tapwire/internal/volatile"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name, in string
		want     volatile.Shape
	}{
		{"uuid", "550e8400-e29b-41d4-a716-446655440000", volatile.UUID},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", volatile.JWT},
		{"bearer jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig", volatile.JWT},
		{"rfc3339", "2026-06-25T18:18:27.123Z", volatile.Timestamp},
		{"date", "2026-06-25", volatile.Timestamp},
		{"unix s", "1750875507", volatile.Timestamp},
		{"unix ms", "1750875507123", volatile.Timestamp},
		{"amz date", "20250211T210754Z", volatile.Timestamp},
		{"http date", "Wed, 25 Jun 2026 18:18:27 GMT", volatile.Timestamp},
		{"ipv4", "10.0.3.18", volatile.IP},
		{"ipv6", "2001:db8::1", volatile.IP},
		{"email", "ada@example.com", volatile.Email},
		{"hex", "9f86d081884c7d65", volatile.Token},
		{"sha256", "0c8d422a785adff853e7a628764d1c890d4d7c5ed4f34760946311da4974ea2e", volatile.Token},
		{"base64", "dGhpcyBpcyBhIHJhbmRvbSBub25jZQ==", volatile.Token},
		{"stripe", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", volatile.Token},
		{"aws auth", "AWS4-HMAC-SHA256 Credential=X/20250211/us-west-2/dynamodb/aws4_request, Signature=0c8d422a785adff853e7a628764d1c890d4d7c5ed4f34760946311da4974ea2e", volatile.Token},
		{"word", "application/json", volatile.None},
		{"short number", "42", volatile.None},
		{"amount", "1999.99", volatile.None},
		{"name", "DemoTable", volatile.None},
		{"camel", "DynamoDB_20120810.PutItem", volatile.None},
		{"sentence", "the order was created", volatile.None},
		{"version", "1.2.3", volatile.None},
		{"long lower", "thisisalongwordwithoutdigits", volatile.None},
		{"sku", "SKU-12345", volatile.None},
		{"empty", "", volatile.None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := volatile.Classify(tt.in); got != tt.want {
				t.Errorf("Classify(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestProfile(t *testing.T) {
	var p volatile.Profile
	p.Observe([]volatile.Field{{"body.table", "orders"}, {"body.id", "1"}, {"body.at", "2026-01-02T03:04:05Z"}, {"body.opt", "x"}})
	p.Observe([]volatile.Field{{"body.table", "orders"}, {"body.id", "2"}, {"body.at", "2026-01-02T03:04:05Z"}})
	tests := []struct {
		field    string
		volatile bool
		why      string
	}{
		{"body.table", false, ""},
		{"body.id", true, "varies across 2 recordings"},
		{"body.at", true, "looks like a timestamp"},
		{"body.opt", true, "in 1 of 2 recordings"},
		{"body.none", false, ""},
	}
	for _, tt := range tests {
		if got := p.Volatile(tt.field); got != tt.volatile {
			t.Errorf("Volatile(%s) = %v, want %v", tt.field, got, tt.volatile)
		}
		if got := p.Why(tt.field); got != tt.why {
			t.Errorf("Why(%s) = %q, want %q", tt.field, got, tt.why)
		}
	}
}

func TestAddBody(t *testing.T) {
	tests := []struct {
		name, ctype, body string
		want              []volatile.Field
	}{
		{"json", "application/json", `{"a":{"b":[1,"x"]},"c":null,"d":{},"e":true}`,
			[]volatile.Field{{"body.a.b.0", "1"}, {"body.a.b.1", "x"}, {"body.c", "null"}, {"body.d", "{}"}, {"body.e", "true"}}},
		{"form", "application/x-www-form-urlencoded", "b=2&a=1&a=3", []volatile.Field{{"form.a", "1\x003"}, {"form.b", "2"}}},
		{"text", "text/plain", "hello", []volatile.Field{{"body", "hello"}}},
		{"bad json", "application/json", `{"a":`, []volatile.Field{{"body", `{"a":`}}},
		{"empty", "application/json", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := volatile.AddBody(nil, tt.ctype, []byte(tt.body))
			if len(got) != len(tt.want) {
				t.Fatalf("AddBody = %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("AddBody[%d] = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"550e8400-e29b-41d4-a716-446655440000", "eyJa.b.c", "2026-01-02", "a@b.co", "::1", "Bearer x=y; z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		volatile.Classify(s)
	})
}

func FuzzAddBody(f *testing.F) {
	f.Add("application/json", []byte(`{"a":[1,{"b":"c"}]}`))
	f.Add("application/x-www-form-urlencoded", []byte("a=%zz&b"))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		fs := volatile.AddBody(nil, ctype, body)
		if len(body) > 0 && len(fs) == 0 {
			t.Errorf("AddBody(%q) = no fields for a non-empty body", body)
		}
	})
}
