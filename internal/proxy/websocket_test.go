package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// wsFrame builds one frame; a non-nil mask masks it as clients must.
func wsFrame(op byte, payload []byte, mask []byte) []byte {
	b := []byte{0x80 | op}
	m := byte(0)
	if mask != nil {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask == nil {
		return append(b, payload...)
	}
	b = append(b, mask...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

func TestWSFramer(t *testing.T) {
	mask := []byte{1, 2, 3, 4}
	big := bytes.Repeat([]byte("x"), 70000)
	stream := append(wsFrame(1, []byte("hello"), mask), wsFrame(2, big, mask)...)
	stream = append(stream, wsFrame(9, nil, mask)...)
	stream = append(stream, wsFrame(8, []byte{3, 232}, mask)...)
	for _, chunk := range []int{1, 3, 7, 1000, len(stream)} {
		f := newWSFramer(true, time.Now(), 1000)
		for p := stream; len(p) > 0; {
			n := min(chunk, len(p))
			f.feed(p[:n], time.Now())
			p = p[n:]
		}
		if f.broken || len(f.msgs) != 4 {
			t.Fatalf("chunk %d: broken %v, %d messages", chunk, f.broken, len(f.msgs))
		}
		m := f.msgs
		if m[0].Opcode != 1 || string(m[0].Data) != "hello" || m[1].Opcode != 2 || m[1].Size != 70000 || !m[1].Truncated || len(m[1].Data) != 995 ||
			m[2].Opcode != 9 || m[3].Opcode != 8 {
			t.Errorf("chunk %d: %+v", chunk, m)
		}
	}
	f := newWSFramer(false, time.Now(), 100)
	f.feed([]byte{0x83, 0x01, 0x00}, time.Now()) // reserved opcode 3
	if !f.broken {
		t.Errorf("reserved opcode not detected")
	}
}

func FuzzWSFramer(f *testing.F) {
	f.Add(wsFrame(1, []byte("hi"), []byte{9, 9, 9, 9}), 3)
	f.Add(wsFrame(2, bytes.Repeat([]byte("y"), 300), nil), 17)
	f.Fuzz(func(t *testing.T, b []byte, chunk int) {
		if chunk <= 0 {
			chunk = 1
		}
		fr := newWSFramer(true, time.Now(), 64)
		for p := b; len(p) > 0; {
			n := min(chunk, len(p))
			fr.feed(p[:n], time.Now())
			p = p[n:]
		}
		for _, m := range fr.msgs {
			if int64(len(m.Data)) > m.Size || len(m.Data) > 64 {
				t.Fatalf("message keeps %d bytes of %d", len(m.Data), m.Size)
			}
		}
	})
}

func TestInboundWebSocketFrames(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		// Read one masked frame and answer it unmasked, twice.
		for i := 0; i < 2; i++ {
			h := make([]byte, 6)
			if _, err := io.ReadFull(brw, h); err != nil {
				return
			}
			p := make([]byte, h[1]&0x7f)
			io.ReadFull(brw, p)
			for j := range p {
				p[j] ^= h[2+j%4]
			}
			c.Write(wsFrame(1, append([]byte("echo:"), p...), nil))
		}
	}))
	defer backend.Close()
	addr, rec := startInbound(t, backend.URL, false, Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, word := range []string{"one", "two"} {
		c.Write(wsFrame(1, []byte(word), []byte{7, 7, 7, 7}))
		h := make([]byte, 2)
		io.ReadFull(br, h)
		p := make([]byte, h[1])
		io.ReadFull(br, p)
		if string(p) != "echo:"+word {
			t.Fatalf("echo = %q", p)
		}
	}
	c.Close()
	r := rec.next(t)
	var got []string
	for _, m := range r.HTTP.Messages {
		dir := "<"
		if m.Up {
			dir = ">"
		}
		got = append(got, dir+string(m.Data))
	}
	want := []string{">one", "<echo:one", ">two", "<echo:two"}
	if len(got) != len(want) {
		t.Fatalf("messages %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] || r.HTTP.Messages[i].Opcode != 1 {
			t.Errorf("message %d = %q op %d, want %q text", i, got[i], r.HTTP.Messages[i].Opcode, want[i])
		}
	}
}
