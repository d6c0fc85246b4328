//go:build linux

package netyield

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestYieldRunsNetworkReady: with one P, a goroutine whose socket became
// readable runs within a few yields of a goroutine that never blocks: one
// or two as a rule. On a loaded machine (make test runs packages side by
// side) a round can miss even ten, the runtime's own threads being late,
// so the test asks it of 15 rounds in 20. With runtime.Gosched in Yield's
// place no round makes it (the poller is not asked, and ten yields of 50 us
// stay well inside sysmon's 10 ms poll).
func TestYieldRunsNetworkReady(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	const rounds = 20
	var late []string
	for round := range rounds {
		var got atomic.Bool
		parked := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			close(parked)
			var b [1]byte
			if _, err := server.Read(b[:]); err == nil {
				got.Store(true)
			}
		}()
		<-parked
		runtime.Gosched() // let it reach its read and park on the poller
		if _, err := client.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		// Wait, without blocking (which would let the scheduler ask the
		// poller), until the byte is in the server's socket: on a loaded
		// machine loopback delivery can lag the write (softirq work put off
		// to ksoftirqd), and the poller cannot report what has not arrived.
		waitQueued(t, server, &got)
		// The reader runs only once something asks the poller. Compute
		// without blocking, yielding.
		start := time.Now()
		yields := 0
		for !got.Load() && yields < 10 {
			spin(50 * time.Microsecond)
			Yield()
			yields++
		}
		if !got.Load() {
			late = append(late, fmt.Sprintf("round %d: not after %d yields (%s)", round, yields, time.Since(start)))
		}
		<-done
	}
	if len(late) > rounds/4 {
		t.Fatalf("the reader ran within 10 yields in %d of %d rounds, want %d:\n%s", rounds-len(late), rounds, rounds-rounds/4, strings.Join(late, "\n"))
	}
	if len(late) > 0 {
		t.Logf("late rounds (a loaded machine):\n%s", strings.Join(late, "\n"))
	}
}

// waitQueued spins, without blocking, until conn's socket holds a byte to
// read (TIOCINQ) or the reader has run (got: the runtime preempted the
// spin and polled), for at most 10 s.
func waitQueued(t *testing.T, conn net.Conn, got *atomic.Bool) {
	t.Helper()
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 10*time.Second && !got.Load(); {
		var n int32
		var errno syscall.Errno
		if err := rc.Control(func(fd uintptr) {
			_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
		}); err != nil {
			t.Fatal(err)
		}
		if errno != 0 {
			t.Fatalf("TIOCINQ: %v", errno)
		}
		if n > 0 {
			return
		}
	}
	if !got.Load() {
		t.Fatal("the byte written did not reach the server's socket in 10 s")
	}
}

// spin burns CPU for d without blocking.
func spin(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
	}
}

// TestYieldConcurrent: yields from many goroutines at once all return.
func TestYieldConcurrent(t *testing.T) {
	done := make(chan struct{})
	for range 8 {
		go func() {
			for range 200 {
				Yield()
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("a yield never returned")
		}
	}
}

func TestPacer(t *testing.T) {
	// Five yields of a busy loop: each comes once Every has passed since the
	// one before, never sooner (a slow machine only makes them later).
	const every = 2 * time.Millisecond
	var at []time.Time
	p := Pacer{Every: every, Yield: func() { at = append(at, time.Now()) }}
	start := time.Now()
	p.Tick(10)
	for len(at) < 5 && time.Since(start) < 10*time.Second {
		p.Tick(10)
	}
	if len(at) < 5 {
		t.Fatalf("%d yields in 10 s at one per %s", len(at), every)
	}
	for i, prev := range append([]time.Time{start}, at[:4]...) {
		if gap := at[i].Sub(prev); gap < every {
			t.Errorf("yield %d came %s after the one before, want at least %s", i+1, gap, every)
		}
	}
	n := 0
	// One item of 1 MiB that takes longer than Every: the next Tick reads the clock.
	p = Pacer{Every: time.Millisecond, Yield: func() { n++ }}
	p.Tick(0)
	spin(2 * time.Millisecond)
	p.Tick(1 << 20)
	if n != 1 {
		t.Fatalf("%d yields after a 1 MiB item that took 2 ms, want 1", n)
	}
	var zero Pacer
	zero.Tick(1) // no Yield: nothing happens
}

func TestYieldAllocs(t *testing.T) {
	Yield()
	if a := testing.AllocsPerRun(100, Yield); a != 0 {
		t.Fatalf("Yield allocates %.1f times", a)
	}
}

func BenchmarkYield(b *testing.B) {
	for b.Loop() {
		Yield()
	}
}

// BenchmarkPacerTick: a Tick that does not yield, as a loop pays it per item.
func BenchmarkPacerTick(b *testing.B) {
	p := Pacer{Every: time.Hour, Yield: func() {}}
	for b.Loop() {
		p.Tick(2048)
	}
}

// BenchmarkTimeNow: what a Tick cost when it read the clock every time.
func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Now()
	}
}
