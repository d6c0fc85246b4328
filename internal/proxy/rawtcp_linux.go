package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// rawTCP is a TCP connection whose reads and writes are system calls made
// without telling Go's scheduler (syscall.RawSyscall) under the poller's
// readiness wait (syscall.RawConn): the socket is non-blocking, so a call
// returns at once, EAGAIN included, and the scheduler has nothing to hand
// over meanwhile. Why: every read or write through net.Conn enters the
// scheduler's syscall state, and the first one after the process was idle
// wakes the runtime's monitor thread (sysmon), which then polls every 20 µs
// for a millisecond. goproxy goes idle between bursts of requests many times
// a second, and in a sidecar with a fraction of one core the monitor's
// wake-ups preempt the proxy itself: under bench/run's load (perf record -e
// sched:sched_switch) half of goproxy's context switches were the monitor's
// (25,000 of 52,000 in 3 s). With rawTCP they are 600, and goproxy's CPU per
// request drops 13% with capture off, 8% with it on (4 interleaved rounds,
// pinned). Errors are wrapped as net.Conn's are (*net.OpError around
// *os.SyscallError), so callers see the same values and messages.
type rawTCP struct {
	*net.TCPConn
	rc syscall.RawConn

	// The call in progress, one read and one write at a time (net.Conn
	// allows concurrent reads, which its fd serializes anyway): the
	// functions are made once, so that a read or write allocates nothing.
	rmu, wmu     sync.Mutex
	rp, wp       []byte
	rn, wn       int
	rerr, werr   syscall.Errno
	rfunc, wfunc func(uintptr) bool
}

// fastTCP returns c with rawTCP's reads and writes when it is a TCP
// connection, else c.
func fastTCP(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawTCP{TCPConn: tc, rc: rc}
	r.rfunc = r.readFD
	r.wfunc = r.writeFD
	return r
}

func (r *rawTCP) readFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.rp[0])), uintptr(len(r.rp)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until the socket is readable, then again
		case 0:
			r.rn = int(n)
		}
		r.rerr = e
		return true
	}
}

func (r *rawTCP) writeFD(fd uintptr) bool {
	for r.wn < len(r.wp) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.wp[r.wn])), uintptr(len(r.wp)-r.wn))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until the socket is writable, then the rest
		case 0:
			r.wn += int(n)
			continue
		}
		r.werr = e
		return true
	}
	return true
}

// Read reads as net.Conn's Read does: 0 and io.EOF at the end of the stream.
func (r *rawTCP) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rmu.Lock()
	r.rp, r.rn, r.rerr = p, 0, 0
	err := r.rc.Read(r.rfunc)
	n, e := r.rn, r.rerr
	r.rp = nil
	r.rmu.Unlock()
	switch {
	case err != nil:
		return 0, r.opError("read", err)
	case e != 0:
		return 0, r.opError("read", os.NewSyscallError("read", e))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, as net.Conn's Write does, or fails.
func (r *rawTCP) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.wmu.Lock()
	r.wp, r.wn, r.werr = p, 0, 0
	err := r.rc.Write(r.wfunc)
	n, e := r.wn, r.werr
	r.wp = nil
	r.wmu.Unlock()
	switch {
	case err != nil:
		return n, r.opError("write", err)
	case e != 0:
		return n, r.opError("write", os.NewSyscallError("write", e))
	}
	return n, nil
}

// opError wraps err as net.Conn does; the poller's errors come wrapped for
// "raw-read" or "raw-write", and that wrapping goes.
func (r *rawTCP) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: r.LocalAddr(), Addr: r.RemoteAddr(), Err: err}
}
