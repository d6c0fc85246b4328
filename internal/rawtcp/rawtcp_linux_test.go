package rawtcp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection, the first wrapped by wrap.
func tcpPair(t *testing.T, wrap func(net.Conn) net.Conn) (net.Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- nil
			return
		}
		peer <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p := <-peer
	if p == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	return wrap(c), p.(*net.TCPConn)
}

// shape is an error as a caller can tell it: its type chain, what errors.Is finds and its message without the
// addresses.
func shape(err error, c net.Conn) string {
	if err == nil {
		return "nil"
	}
	var types []string
	for e := err; e != nil; e = errors.Unwrap(e) {
		types = append(types, fmt.Sprintf("%T", e))
	}
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	msg := strings.NewReplacer(c.LocalAddr().String(), "LOCAL", c.RemoteAddr().String(), "REMOTE").Replace(err.Error())
	return fmt.Sprintf("%s eof=%v closed=%v deadline=%v reset=%v pipe=%v timeout=%v %q", strings.Join(types, ">"),
		err == io.EOF, errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), timeout, msg)
}

// TestLikeNetConn runs the same cases on a plain *net.TCPConn and on rawtcp.Conn: the bytes moved, and the
// errors as their callers see them (type chain, errors.Is, net.Error's Timeout, message), must be the same.
func TestLikeNetConn(t *testing.T) {
	plain := func(c net.Conn) net.Conn { return c }
	cases := map[string]func(t *testing.T, c net.Conn, p *net.TCPConn) string{
		"data both ways, a large write in parts": func(t *testing.T, c net.Conn, p *net.TCPConn) string {
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB: more than the socket buffers
			got := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(io.LimitReader(p, int64(len(big)))); got <- b }()
			n, err := c.Write(big)
			if b := <-got; !bytes.Equal(b, big) {
				t.Errorf("peer read %d bytes, not the %d written", len(b), len(big))
			}
			p.Write([]byte("pong"))
			buf := make([]byte, 16)
			m, rerr := io.ReadFull(c, buf[:4])
			return fmt.Sprintf("wrote %d %s; read %q %s", n, shape(err, c), buf[:m], shape(rerr, c))
		},
		"end of stream": func(t *testing.T, c net.Conn, p *net.TCPConn) string {
			p.Write([]byte("last"))
			p.Close()
			b, err := io.ReadAll(c)
			n, rerr := c.Read(make([]byte, 8))
			return fmt.Sprintf("%q %s; again %d %s", b, shape(err, c), n, shape(rerr, c))
		},
		"read deadline": func(t *testing.T, c net.Conn, p *net.TCPConn) string {
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			n, err := c.Read(make([]byte, 8))
			return fmt.Sprintf("%d %s", n, shape(err, c))
		},
		"closed while reading": func(t *testing.T, c net.Conn, p *net.TCPConn) string {
			go func() { time.Sleep(20 * time.Millisecond); c.Close() }()
			n, err := c.Read(make([]byte, 8))
			_, werr := c.Write([]byte("x"))
			return fmt.Sprintf("%d %s; write %s", n, shape(err, c), shape(werr, c))
		},
		"reset by the peer": func(t *testing.T, c net.Conn, p *net.TCPConn) string {
			p.SetLinger(0)
			p.Close()
			time.Sleep(20 * time.Millisecond)
			n, err := c.Read(make([]byte, 8))
			_, werr := c.Write([]byte("x"))
			return fmt.Sprintf("%d %s; write %s", n, shape(err, c), shape(werr, c))
		},
		"empty read and write": func(t *testing.T, c net.Conn, p *net.TCPConn) string {
			n, err := c.Read(nil)
			m, werr := c.Write(nil)
			return fmt.Sprintf("%d %s; %d %s", n, shape(err, c), m, shape(werr, c))
		},
	}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			c1, p1 := tcpPair(t, plain)
			want := run(t, c1, p1)
			c2, p2 := tcpPair(t, Wrap)
			if _, ok := c2.(*Conn); !ok {
				t.Fatalf("Wrap gave %T, not *Conn", c2)
			}
			if got := run(t, c2, p2); got != want {
				t.Errorf("rawtcp.Conn:\n  %s\nnet.TCPConn:\n  %s", got, want)
			}
		})
	}
}

// TestConcurrent reads and writes one Conn from two goroutines each (the race detector
// watches), echoed by the peer; every byte comes back.
func TestConcurrent(t *testing.T) {
	c, p := tcpPair(t, Wrap)
	go io.Copy(p, p)
	const per = 2000
	done := make(chan int, 2)
	for w := range 2 {
		go func() {
			for range per {
				if _, err := c.Write([]byte{byte('a' + w)}); err != nil {
					t.Error(err)
					break
				}
			}
		}()
		go func() {
			n := 0
			buf := make([]byte, 64)
			for n < per {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				m, err := c.Read(buf)
				if err != nil {
					break
				}
				n += m
			}
			done <- n
		}()
	}
	if total := <-done + <-done; total != 2*per {
		t.Errorf("read %d bytes back, want %d", total, 2*per)
	}
}

// TestNoAllocs: a read and a write allocate nothing.
func TestNoAllocs(t *testing.T) {
	c, p := tcpPair(t, Wrap)
	msg, buf, pbuf := []byte("ping"), make([]byte, 16), make([]byte, 16)
	if n := testing.AllocsPerRun(200, func() {
		c.Write(msg)
		io.ReadFull(p, pbuf[:4])
		p.Write(msg)
		io.ReadFull(c, buf[:4])
	}); n != 0 {
		t.Errorf("%v allocations per exchange, want 0", n)
	}
}

// TestPending: Pending tells an idle connection from one the peer wrote to,
// closed or reset, and reads nothing: the byte is still there to Read.
func TestPending(t *testing.T) {
	wait := func(c *Conn, want bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); c.Pending() != want; {
			if time.Now().After(deadline) {
				t.Fatalf("Pending() = %v, want %v", !want, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	c, p := tcpPair(t, Wrap)
	rc := c.(*Conn)
	if rc.Pending() {
		t.Fatal("Pending on a fresh connection")
	}
	p.Write([]byte("x"))
	wait(rc, true)
	if rc.Pending() != true {
		t.Fatal("a second Pending read the byte")
	}
	buf := make([]byte, 4)
	if n, err := c.Read(buf); n != 1 || err != nil || buf[0] != 'x' {
		t.Fatalf("Read after Pending = %d %q %v, want the byte", n, buf[:n], err)
	}
	if rc.Pending() {
		t.Fatal("Pending after the byte was read")
	}
	if allocs := testing.AllocsPerRun(100, func() { rc.Pending() }); allocs != 0 {
		t.Errorf("Pending allocates %.0f times", allocs)
	}
	p.Close() // the end of the stream
	wait(rc, true)
	c.Close()
	if !rc.Pending() {
		t.Error("Pending false on a closed connection")
	}

	c, p = tcpPair(t, Wrap)
	p.SetLinger(0)
	p.Close() // a reset
	wait(c.(*Conn), true)
	c.Close()
}

// TestWriteAwait: WriteAwait delivers the bytes (a small write, and one
// larger than the socket's buffers, which takes the usual path for its
// rest) and returns once the answer can be read: Pending is true, and Read
// gets the answer. It allocates nothing.
func TestWriteAwait(t *testing.T) {
	c, p := tcpPair(t, Wrap)
	defer c.Close()
	defer p.Close()
	rc := c.(*Conn)
	for _, size := range []int{5, 8 << 20} {
		msg := bytes.Repeat([]byte("q"), size)
		got := make(chan error, 1)
		go func() {
			buf := make([]byte, size)
			if _, err := io.ReadFull(p, buf); err != nil || !bytes.Equal(buf, msg) {
				got <- fmt.Errorf("peer read %d bytes: %v", len(buf), err)
				return
			}
			time.Sleep(10 * time.Millisecond) // the answer comes after the request, and later
			_, err := p.Write([]byte("answer"))
			got <- err
		}()
		if n, err := rc.WriteAwait(msg); n != size || err != nil {
			t.Fatalf("WriteAwait(%d bytes) = %d, %v", size, n, err)
		}
		if size < 1<<20 && !rc.Pending() {
			t.Errorf("%d bytes: WriteAwait returned before the answer could be read", size)
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := io.ReadFull(c, buf[:6]); n != 6 || string(buf[:6]) != "answer" {
			t.Fatalf("Read after WriteAwait = %q, %v", buf[:n], err)
		}
	}
	go func() {
		buf := make([]byte, 4)
		for {
			if _, err := io.ReadFull(p, buf); err != nil {
				return
			}
			p.Write(buf)
		}
	}()
	buf, ping := make([]byte, 4), []byte("ping")
	if allocs := testing.AllocsPerRun(100, func() {
		rc.WriteAwait(ping)
		io.ReadFull(c, buf)
	}); allocs != 0 {
		t.Errorf("WriteAwait allocates %.0f times", allocs)
	}
	p.Close() // the wait ends at the end of the stream too
	if n, err := rc.WriteAwait([]byte("ping")); n != 4 && err == nil {
		t.Errorf("WriteAwait to a closed peer = %d, %v", n, err)
	}
	if !rc.Pending() {
		t.Error("not Pending after the peer closed")
	}
}

// TestWriteAwaitThen: then is called once, when the write is over and
// before the wait (the peer answers only after then ran), with what was
// written; on a write that fails, once, with the error; and it allocates
// nothing more than WriteAwait.
func TestWriteAwaitThen(t *testing.T) {
	c, p := tcpPair(t, Wrap)
	rc := c.(*Conn)
	for _, size := range []int{5, 8 << 20} {
		msg := bytes.Repeat([]byte("q"), size)
		ran := make(chan struct{})
		got := make(chan error, 1)
		go func() {
			buf := make([]byte, size)
			if _, err := io.ReadFull(p, buf); err != nil {
				got <- err
				return
			}
			select {
			case <-ran:
			case <-time.After(5 * time.Second):
				got <- errors.New("then did not run before the wait ended")
				p.Write([]byte("answer"))
				return
			}
			_, err := p.Write([]byte("answer"))
			got <- err
		}()
		calls := 0
		n, err := rc.WriteAwaitThen(msg, func(n int, err error) {
			calls++
			if n != size || err != nil {
				t.Errorf("then(%d, %v), want (%d, nil)", n, err, size)
			}
			close(ran)
		})
		if n != size || err != nil || calls != 1 {
			t.Fatalf("WriteAwaitThen(%d bytes) = %d, %v; then called %d times", size, n, err, calls)
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "answer" {
			t.Fatalf("Read after WriteAwaitThen = %q, %v", buf, err)
		}
	}
	calls := 0
	if n, err := rc.WriteAwaitThen(nil, func(n int, err error) { calls++ }); n != 0 || err != nil || calls != 1 {
		t.Errorf("WriteAwaitThen(nil) = %d, %v; then called %d times", n, err, calls)
	}
	p.SetLinger(0)
	p.Close() // a reset: the next writes fail
	time.Sleep(50 * time.Millisecond)
	var thenErr error
	calls = 0
	for range 3 { // the first write after a reset may still succeed
		_, err := rc.WriteAwaitThen([]byte("ping"), func(_ int, err error) { calls++; thenErr = err })
		if err != nil {
			if !errors.Is(thenErr, syscall.ECONNRESET) && !errors.Is(thenErr, syscall.EPIPE) || thenErr.Error() != err.Error() {
				t.Errorf("then's error %v, WriteAwaitThen's %v", thenErr, err)
			}
			break
		}
	}
	if calls == 0 || thenErr == nil {
		t.Errorf("then called %d times, error %v: want the write's failure", calls, thenErr)
	}
}
