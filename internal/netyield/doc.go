// Package netyield lets a goroutine that computes for a long time (goproxy's
// shipper redacting, encoding and compressing a batch of 512 records: a
// millisecond or more) make way for the goroutines the network has woken.
//
// Why it is needed: Go's scheduler looks at the network poller only when it
// has nothing else to run (or every 10 ms, from its monitor thread), and
// both runtime.Gosched and a short time.Sleep come back before it has
// looked: a yielded goroutine is put back on the run queue, and an expired
// timer is run before the poller is asked. With one P (goproxy pinned to
// one core, or a sidecar with a fraction of one) a batch therefore held
// every request that arrived meanwhile until the batch was done: an
// execution trace of goproxy at a fixed 10,000 requests per second showed
// the shipper's goroutines running 2-5 ms at a stretch and requests waiting
// up to 13 ms to be scheduled. docs/goproxy.md ("Shipping") has the
// latency before and after.
//
// Yield parks the caller on a pipe that it has just made readable, so the
// caller runs again only after the poller has been asked, and the
// goroutines the same poll made ready run too. Pacer calls a yield function
// every so often in a loop. Elsewhere than on Linux, Yield is
// runtime.Gosched.
package netyield

import "time"

// Pacer calls Yield once Every has passed since it last did (or since its
// first Tick), from Tick, which a long loop calls once per item. It reads
// the clock only once 8 items or 32 KiB of work were counted since it last
// did: time.Now costs about 50 ns here (BenchmarkTimeNow), and goproxy
// ticks twice per record. The zero value never yields.
type Pacer struct {
	Every time.Duration
	Yield func()
	last  time.Time
	items int
	bytes int
}

// Tick counts one item of about n bytes and yields if the time has come.
func (p *Pacer) Tick(n int) {
	if p.Yield == nil || p.Every <= 0 {
		return
	}
	if p.last.IsZero() {
		p.last = time.Now()
		return
	}
	p.items++
	p.bytes += n
	if p.items < 8 && p.bytes < 32<<10 {
		return
	}
	p.items, p.bytes = 0, 0
	now := time.Now()
	if now.Sub(p.last) < p.Every {
		return
	}
	p.Yield()
	p.last = time.Now()
}
