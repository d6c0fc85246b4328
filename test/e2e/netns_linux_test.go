package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The namespaces of one run are named prefix-PID-ROLE ("tw-e2e-4242-task"),
// so that leftovers of a crashed run can be told apart from a run still
// going, and deleted.
const prefix = "tw-e2e-"

// subnet is every namespace's address block: 198.18.0.0/15 is reserved for
// network tests (RFC 2544) and nothing here routes it anywhere. Each run has
// its own bridge inside its own namespace, so two runs never meet.
const subnet = "198.18.0."

// world is one run's network: a switch namespace holding a bridge, and a
// namespace per host joined to it by a veth pair, with no route out.
type world struct {
	t    *testing.T
	ip   string // the ip binary
	base string // prefix + pid
	sw   string // the switch namespace
	// hosts maps the names the test dials to addresses; each namespace's
	// /etc/hosts says the same.
	hosts map[string]string
	// madeEtcNetns: /etc/netns did not exist before this run.
	madeEtcNetns bool
}

// needNetns checks that this machine can make network namespaces. When it
// cannot, the test fails under TAPWIRE_REQUIRE_TOOLS (the README's test
// command) and is skipped otherwise, with the reason either way.
func needNetns(t *testing.T) string {
	t.Helper()
	var reason string
	ip, err := exec.LookPath("ip")
	switch {
	case os.Geteuid() != 0:
		reason = "the end-to-end test makes network namespaces and needs root (uid is " + strconv.Itoa(os.Geteuid()) + ")"
	case err != nil:
		reason = "the end-to-end test needs iproute2's ip to make network namespaces: " + err.Error()
	default:
		probe := prefix + strconv.Itoa(os.Getpid()) + "-probe"
		out, err := exec.Command(ip, "netns", "add", probe).CombinedOutput()
		if err != nil {
			reason = fmt.Sprintf("ip netns add failed (%v: %s): this machine cannot make network namespaces", err, bytes.TrimSpace(out))
		} else {
			exec.Command(ip, "netns", "del", probe).Run()
		}
	}
	if reason != "" {
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatal(reason)
		}
		t.Skip(reason)
	}
	return ip
}

// newWorld deletes the leftovers of earlier runs and makes the switch.
func newWorld(t *testing.T) *world {
	ip := needNetns(t)
	w := &world{t: t, ip: ip, base: prefix + strconv.Itoa(os.Getpid()), hosts: map[string]string{}}
	w.sweep(false)
	if _, err := os.Stat("/etc/netns"); err != nil {
		w.madeEtcNetns = true
	}
	t.Cleanup(func() { w.sweep(true) })
	w.sw = w.base + "-sw"
	w.run("netns", "add", w.sw)
	w.run("-n", w.sw, "link", "add", "br0", "type", "bridge")
	w.run("-n", w.sw, "link", "set", "br0", "up")
	return w
}

func (w *world) run(args ...string) {
	w.t.Helper()
	if out, err := exec.Command(w.ip, args...).CombinedOutput(); err != nil {
		w.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// sweep deletes namespaces (and their /etc/netns files) named with our
// prefix: with own, this run's; without, those of runs whose process is
// gone. Processes still inside are killed first.
func (w *world) sweep(own bool) {
	out, _ := exec.Command(w.ip, "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		if own != strings.HasPrefix(name, w.base+"-") {
			continue
		}
		if !own {
			pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, prefix), "-", 2)[0])
			if err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == nil {
				continue // another run, still going
			}
		}
		pids, _ := exec.Command(w.ip, "netns", "pids", name).Output()
		for _, p := range strings.Fields(string(pids)) {
			if n, err := strconv.Atoi(p); err == nil && n != os.Getpid() {
				syscall.Kill(n, syscall.SIGKILL)
			}
		}
		if err := exec.Command(w.ip, "netns", "del", name).Run(); err != nil {
			w.t.Logf("delete namespace %s: %v", name, err)
		}
		os.RemoveAll(filepath.Join("/etc/netns", name))
	}
	if own && w.madeEtcNetns {
		os.Remove("/etc/netns") // only when empty: another run may use it
	}
	// /etc/netns directories whose namespace is already gone.
	dirs, _ := filepath.Glob("/etc/netns/" + prefix + "*")
	for _, d := range dirs {
		name := filepath.Base(d)
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err != nil {
			os.RemoveAll(d)
		}
	}
}

// host makes the namespace ROLE with address subnet+octet on the bridge,
// and an /etc/hosts (bind-mounted by `ip netns exec`) naming lines.
func (w *world) host(role string, octet int, hostsLines ...string) string {
	w.t.Helper()
	ns := w.base + "-" + role
	veth := "v-" + role
	w.run("netns", "add", ns)
	w.run("-n", ns, "link", "set", "lo", "up")
	w.run("-n", w.sw, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	w.run("-n", w.sw, "link", "set", veth, "master", "br0", "up")
	w.run("-n", ns, "addr", "add", subnet+strconv.Itoa(octet)+"/24", "dev", "eth0")
	w.run("-n", ns, "link", "set", "eth0", "up")
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + strings.Join(hostsLines, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return ns
}

// in runs f on an OS thread moved into namespace ns, then moves the thread
// back. If it cannot be moved back, the thread stays locked to the
// goroutine and ends with it (Go discards it), so no other code ever runs
// in ns by accident. Sockets f opens stay in ns for their life, whichever
// thread uses them later.
func (w *world) in(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer home.Close()
		fd, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = f()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// dialer dials from namespace ns, resolving the world's names itself.
func (w *world) dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h, p, err := net.SplitHostPort(addr); err == nil {
			if a, ok := w.hosts[h]; ok {
				addr = net.JoinHostPort(a, p)
			}
		}
		var c net.Conn
		err := w.in(ns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// listen opens a TCP listener in namespace ns.
func (w *world) listen(ns, addr string) net.Listener {
	w.t.Helper()
	var ln net.Listener
	if err := w.in(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		w.t.Fatal(err)
	}
	return ln
}

// proc is a real process started in a namespace with `ip netns exec`, with
// exactly the environment it is given.
type proc struct {
	name string
	ns   string
	argv []string
	env  []string
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	out    bytes.Buffer // stdout and stderr, all its lives
	stdout bytes.Buffer // stdout of the current life
	exited chan struct{}
	err    error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

type stdoutWriter struct{ p *proc }

func (s stdoutWriter) Write(b []byte) (int, error) {
	s.p.mu.Lock()
	s.p.stdout.Write(b)
	s.p.mu.Unlock()
	return s.p.Write(b)
}

// logs returns everything the process wrote, over all its starts.
func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) stdoutText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// start runs the process (again). The world's cleanup stops it.
func (w *world) start(p *proc) {
	w.t.Helper()
	args := append([]string{"netns", "exec", p.ns}, p.argv...)
	cmd := exec.Command(w.ip, args...)
	cmd.Env = p.env
	if cmd.Env == nil {
		cmd.Env = []string{} // nothing inherited
	}
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = stdoutWriter{p}, p
	p.mu.Lock()
	p.stdout.Reset()
	p.mu.Unlock()
	fmt.Fprintf(p, "---- start %s in %s\n", p.name, p.ns)
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		fmt.Fprintf(p, "---- %s exited: %v\n", p.name, err)
		close(exited)
	}()
}

// running reports whether the process is alive.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends sig and waits for the process to end, SIGKILL after 15 s.
func (p *proc) kill(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not end within 15 s of %v; killing it", p.name, sig)
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitLog waits until the process's output holds want n times.
func (p *proc) waitLog(t *testing.T, want string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for strings.Count(p.logs(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q (%d times) within %s", p.name, want, n, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPort waits until addr accepts a TCP connection from namespace ns,
// failing early if p has exited.
func (w *world) waitPort(t *testing.T, p *proc, ns, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := w.dialer(ns)(context.Background(), "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if !p.running() {
			t.Fatalf("%s exited before listening on %s: %v\n%s", p.name, addr, p.err, tail(p.logs(), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening on %s after 30 s: %v", p.name, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// TestWithoutNamespaces: where namespaces cannot be made (here: no ip on
// the PATH), TestGuide says why, and fails under TAPWIRE_REQUIRE_TOOLS
// instead of skipping, so that CI cannot pass without running it.
func TestWithoutNamespaces(t *testing.T) {
	if os.Getenv("TAPWIRE_E2E_CHILD") != "" {
		t.Skip("in the child")
	}
	tests := []struct {
		name    string
		require string
		wantErr bool   // the child fails
		want    string // in its output
	}{
		{"skipped", "", false, "--- SKIP: TestGuide"},
		{"failed under TAPWIRE_REQUIRE_TOOLS", "1", true, "--- FAIL: TestGuide"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestGuide$", "-test.v")
			cmd.Env = []string{"PATH=" + t.TempDir(), "TAPWIRE_E2E_CHILD=1", "TAPWIRE_REQUIRE_TOOLS=" + tt.require, "HOME=" + t.TempDir()}
			out, err := cmd.CombinedOutput()
			if (err != nil) != tt.wantErr {
				t.Errorf("child test exited with %v, want failure %v; output:\n%s", err, tt.wantErr, out)
			}
			for _, w := range []string{tt.want, "needs iproute2's ip"} {
				if !strings.Contains(string(out), w) {
					t.Errorf("child output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
