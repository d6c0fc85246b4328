package rawtcp

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose reads and writes bypass the scheduler's
// syscall state (see the package comment).
type Conn struct {
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
	pfunc        func(uintptr)
	pending      bool
	afunc        func(uintptr) bool
	awaiting     bool             // WriteAwait: the write is done, the wait begun
	then         func(int, error) // WriteAwaitThen's, until it is called
}

// Wrap returns c as a *Conn when it is a *net.TCPConn, else c. The
// *net.TCPConn's other methods (deadlines, CloseWrite, SetLinger...) stay.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	r := &Conn{TCPConn: tc, rc: rc}
	r.rfunc = r.readFD
	r.wfunc = r.writeFD
	r.pfunc = r.peekFD
	r.afunc = r.awaitFD
	return r
}

// awaitFD is WriteAwait's step: first the write, then (called again once
// the socket is readable) the end of the wait.
func (r *Conn) awaitFD(fd uintptr) bool {
	if r.awaiting {
		return true // readable
	}
	r.awaiting = true
	if !r.writeFD(fd) {
		return true // the socket's buffer is full: WriteAwait writes the rest the usual way
	}
	if r.werr != 0 {
		return true // failed: no wait
	}
	if then := r.then; then != nil {
		r.then = nil
		then(r.wn, nil)
	}
	return false // written: wait until readable
}

// WriteAwait writes all of p, as Write does, then waits until something
// can be read (an answer, the end of the stream, an error) without reading
// it, for a request that nothing can answer before it is sent: a Read right
// after the write would find nothing, a system call for EAGAIN, and then
// wait. The wait begins before the write (the poller's readiness is reset
// first), so an answer that comes at once is not missed. It must not run
// beside a Read or a Write. A failed or cut-short wait (a deadline, a
// close) is left for the next Read to report.
func (r *Conn) WriteAwait(p []byte) (int, error) { return r.WriteAwaitThen(p, nil) }

// WriteAwaitThen is WriteAwait that calls then, when not nil, once the
// write is over and before the wait: with what was written and the
// write's error, as Write returns them. then must not use the connection.
// goproxy writes the end of a response this way, and then waits for the
// client's next request; then completes the exchange's record meanwhile.
func (r *Conn) WriteAwaitThen(p []byte, then func(int, error)) (int, error) {
	r.wmu.Lock()
	r.rmu.Lock()
	r.wp, r.wn, r.werr, r.awaiting, r.then = p, 0, 0, false, then
	if len(p) > 0 {
		_ = r.rc.Read(r.afunc)
	}
	var err error
	if r.wn < len(p) && r.werr == 0 {
		err = r.rc.Write(r.wfunc) // the rest, waiting for room as Write does
	}
	n, e := r.wn, r.werr
	r.wp = nil
	then, r.then = r.then, nil
	r.rmu.Unlock()
	r.wmu.Unlock()
	werr := r.writeErr(err, e)
	if then != nil {
		then(n, werr) // not called before a wait: the write did not end in awaitFD
	}
	return n, werr
}

func (r *Conn) peekFD(fd uintptr) {
	var b [1]byte
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		// EAGAIN: nothing to read. Anything else (a byte, the end of the
		// stream, an error such as ECONNRESET) is there to be read.
		r.pending = e != syscall.EAGAIN
		return
	}
}

// Pending reports whether a byte, the end of the stream or an error waits
// to be read, without reading it: for a connection kept idle, whether the
// peer wrote to it or closed it meanwhile. It must not run beside a Read.
func (r *Conn) Pending() bool {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	r.pending = false
	if err := r.rc.Control(r.pfunc); err != nil {
		return true // closed: nothing more to read from it either
	}
	return r.pending
}

func (r *Conn) readFD(fd uintptr) bool {
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

func (r *Conn) writeFD(fd uintptr) bool {
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
func (r *Conn) Read(p []byte) (int, error) {
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
func (r *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.wmu.Lock()
	r.wp, r.wn, r.werr = p, 0, 0
	err := r.rc.Write(r.wfunc)
	n, e := r.wn, r.werr
	r.wp = nil
	r.wmu.Unlock()
	return n, r.writeErr(err, e)
}

// writeErr is a write's error as net.Conn gives it: the poller's (err),
// else the system call's (e), else nil.
func (r *Conn) writeErr(err error, e syscall.Errno) error {
	switch {
	case err != nil:
		return r.opError("write", err)
	case e != 0:
		return r.opError("write", os.NewSyscallError("write", e))
	}
	return nil
}

// opError wraps err as net.Conn does; the poller's errors come wrapped for
// "raw-read" or "raw-write", and that wrapping goes.
func (r *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: r.LocalAddr(), Addr: r.RemoteAddr(), Err: err}
}
