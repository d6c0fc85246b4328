package h1

import (
	"bytes"
	"fmt"
	"testing"
)

func TestParseChunkLine(t *testing.T) {
	tests := []struct {
		line string
		want int64
		ok   bool
	}{
		{"5\r\n", 5, true},
		{"0\r\n", 0, true},
		{"aF\r\n", 0xaf, true},
		{"7fffffffffffffff\r\n", 1<<63 - 1, true},
		{"0000000000000005\r\n", 5, true},
		{"5;ext=1\r\n", 5, true},
		{"5 \t;ext\r\n", 0, false},
		{"5 \r\n", 5, true},
		{"5;\tq=\"a b\"\r\n", 5, true},
		{"-1\r\n", 0, false},
		{"0x5\r\n", 0, false},
		{"+5\r\n", 0, false},
		{"\r\n", 0, false},
		{";x\r\n", 0, false},
		{"8000000000000000\r\n", 0, false},
		{"00000000000000005\r\n", 0, false},
		{"ffffffffffffffffff\r\n", 0, false},
		{"5\n", 0, false},
		{"5", 0, false},
		{"5\r\r\n", 0, false},
		{"5 5\r\n", 0, false},
		{"5;a\x00\r\n", 0, false},
		{"5;a\x7f\r\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.line), func(t *testing.T) {
			n, err := ParseChunkLine([]byte(tt.line))
			if (err == nil) != tt.ok || tt.ok && n != tt.want {
				t.Errorf("got %d, %v; want %d, ok=%v", n, err, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParseChunkLine(f *testing.F) {
	for _, s := range []string{"5\r\n", "-1\r\n", "0x5\r\n", "ffffffffffffffff\r\n", "5;a=b\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseChunkLine(b)
		if err == nil && n < 0 {
			t.Fatalf("accepted negative size %d", n)
		}
	})
}

func TestBadStart(t *testing.T) {
	for _, tt := range []struct {
		in  string
		bad bool
	}{
		{"GET", false}, {"GET /x HT", false}, {"POST /x HTTP/1.1\r\nHost: a", false}, {"", false}, {"\r\n", false},
		{"M-SEARCH * HTTP/1.1", false}, {"\xffbinary", true}, {"GE\x00T", true}, {"GET /\x01 HTTP/1.1", true},
		{"G(T /", true}, {"GET /x HTTP/1.1\x7f", true}, {"\x16\x03\x01", true},
	} {
		if got := BadStart([]byte(tt.in)); got != tt.bad {
			t.Errorf("BadStart(%q) = %v, want %v", tt.in, got, tt.bad)
		}
	}
}

// TestParseAllocs: parsing a request or a response head allocates nothing
// once the head's field slice has grown (the engine reuses it on every
// request of a connection).
func TestParseAllocs(t *testing.T) {
	req := []byte("POST /v1/items?x=1 HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nContent-Length: 5\r\nContent-Length: 5\r\nTransfer-Encoding-X: no\r\nAccept: */*\r\n\r\n")
	res := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\nConnection: keep-alive\r\n\r\n")
	var h Head
	ParseRequest(req, &h)
	if n := testing.AllocsPerRun(100, func() {
		if err := ParseRequest(req, &h); err != nil || h.Length != 5 || len(h.ConnNames) != 1 {
			t.Fatalf("ParseRequest: %v, length %d, connection names %q", err, h.Length, h.ConnNames)
		}
	}); n != 0 {
		t.Errorf("ParseRequest allocates %.0f times per head, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := ParseResponse(res, &h, false); err != nil || h.Length != 1024 {
			t.Fatalf("ParseResponse: %v, length %d", err, h.Length)
		}
	}); n != 0 {
		t.Errorf("ParseResponse allocates %.0f times per head, want 0", n)
	}
}

// TestValidValue: every byte value at every place of values of 1 to 20
// bytes, among other bytes, is judged as the byte-at-a-time loop judges it.
func TestValidValue(t *testing.T) {
	for n := 1; n <= 20; n++ {
		for _, fill := range []byte{'a', ' ', '\t', 0x80, 0xff, 0x7e, 0x20} {
			for pos := range n {
				for c := range 256 {
					v := bytes.Repeat([]byte{fill}, n)
					v[pos] = byte(c)
					if got, want := validValue(v), validBytes(v); got != want {
						t.Fatalf("validValue(%q) = %v, want %v", v, got, want)
					}
				}
			}
		}
	}
}
