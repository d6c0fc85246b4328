package netyield

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// The pipe: its read end is registered with the poller, its write end is a
// plain non-blocking descriptor. One yield at a time (mu), so at most one
// byte is ever in the pipe.
var (
	setupOnce sync.Once
	ready     atomic.Bool // the pipe is usable; else Yield is runtime.Gosched
	reader    *os.File    // kept: an unreferenced *os.File's finalizer closes the descriptor
	rc        syscall.RawConn
	wfd       int

	mu     sync.Mutex
	wrote  bool               // this yield's byte is in the pipe
	readFn func(uintptr) bool // made once: Yield allocates nothing
)

func setup() {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return
	}
	r := os.NewFile(uintptr(fds[0]), "netyield") // non-blocking: registered with the poller
	c, err := r.SyscallConn()
	if err != nil {
		r.Close()
		syscall.Close(fds[1])
		return
	}
	reader, rc, wfd = r, c, fds[1]
	readFn = read
	ready.Store(true)
}

// read is the poller's callback. The first call (the pipe's readiness was
// just reset by the poller) writes the byte and reports "not ready", so the
// caller parks until a poll sees the byte; the next call reads it.
func read(fd uintptr) bool {
	if !wrote {
		one := [1]byte{1}
		_, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(wfd), uintptr(unsafe.Pointer(&one[0])), 1)
		if e != 0 {
			return true // cannot happen with one byte in an empty pipe; do not park without it
		}
		wrote = true
		return false
	}
	var b [8]byte
	_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return e != syscall.EAGAIN
}

// Yield returns once the network poller has been asked for ready
// goroutines and those it found have had the chance to run.
func Yield() {
	setupOnce.Do(setup)
	if !ready.Load() {
		runtime.Gosched()
		return
	}
	mu.Lock()
	wrote = false
	if err := rc.Read(readFn); err != nil {
		// The poller would not wait on the pipe (it cannot happen with a
		// pipe on Linux): give up on it rather than let bytes pile up.
		ready.Store(false)
		runtime.Gosched()
	}
	mu.Unlock()
}
