// Package rawtcp gives TCP connections whose reads and writes are system calls made
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
// (25,000 of 52,000 in 3 s). With rawtcp they are 600, and goproxy's CPU per
// request drops 9-13% with capture off, 3-8% with it on (two sets of 4
// interleaved rounds each, pinned: bench/ab). Errors are wrapped as net.Conn's are (*net.OpError around
// *os.SyscallError), so callers see the same values and messages. Elsewhere than on Linux, Wrap
// returns the connection as it is.
package rawtcp
