// Package memtest measures what a batch costs a server in memory: it
// builds one of Tapwire's commands, runs it as a child process, reads its
// peak resident set (VmHWM in /proc/PID/status, Linux only) before and
// after, and makes the batches the memory tests send (the largest legal
// ones, and hostile ones: a million tiny records, a zstd bomb).
package memtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"github.com/klauspost/compress/zstd"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/wire"
)

// MiB is a mebibyte.
const MiB = 1 << 20

var (
	buildMu  sync.Mutex
	buildDir string // one temporary folder for every binary built; RemoveBuilt removes it
	built    = map[string]string{}
)

// Build builds the command of package pkg (as "./cmd/hub", relative to the
// module's root) once per test binary and returns the binary's path. The
// binaries live in one temporary folder: call RemoveBuilt from TestMain
// after m.Run, or each run leaves them in the system's temporary folder.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("memtest reads /proc: Linux only")
	}
	bin, err := BuildCommand(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// BuildCommand is Build for any platform, with an error for a failure.
func BuildCommand(pkg string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin, nil
	}
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the module: %w", err)
	}
	if buildDir == "" {
		if buildDir, err = os.MkdirTemp("", "tapwire-memtest-*"); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(buildDir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = strings.TrimSpace(string(root))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	built[pkg] = bin
	return bin, nil
}

// RemoveBuilt removes the binaries Build made (tens of MB each); TestMain
// calls it after m.Run.
func RemoveBuilt() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir, built = "", map[string]string{}
	}
}

// CleanupMain is m whose Run removes the built binaries after the tests,
// for a TestMain that hands m on: goleak.VerifyTestMain(memtest.CleanupMain{M: m}).
type CleanupMain struct{ M interface{ Run() int } }

// Run runs the tests, then RemoveBuilt.
func (c CleanupMain) Run() int {
	defer RemoveBuilt()
	return c.M.Run()
}

// Proc is a running child process.
type Proc struct {
	cmd    *exec.Cmd
	Addr   string // host:port it listens on
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
}

// FreeAddr returns a loopback address with a port free now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Start runs bin with args and env (added to a minimal environment, with
// the test's GODEBUG, GOGC and GOMEMLIMIT when set) and
// waits until GET health on addr answers 200. The process is stopped with
// SIGTERM (then killed) when the test ends.
func Start(t testing.TB, bin, addr, health string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Addr: addr}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LOG_LEVEL=warn"}
	for _, k := range []string{"GODEBUG", "GOGC", "GOMEMLIMIT"} { // to look into a figure
		if v, ok := os.LookupEnv(k); ok {
			p.cmd.Env = append(p.cmd.Env, k+"="+v)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout = lockedWriter{&p.mu, &p.stdout}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() || os.Getenv("MEMTEST_STDERR") != "" {
			t.Logf("%s stderr:\n%s", filepath.Base(bin), p.Stderr())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-done:
			t.Fatalf("%s exited: %s", filepath.Base(bin), p.Stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer GET %s: %v\n%s", filepath.Base(bin), health, err, p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stdout returns what the process wrote on standard output so far.
func (p *Proc) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// Stderr returns what the process wrote on standard error so far.
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Peak returns the process's peak resident set (VmHWM) in bytes.
func (p *Proc) Peak(t testing.TB) int64 {
	t.Helper()
	return status(t, p.cmd.Process.Pid, "VmHWM:")
}

// ResetPeak sets the process's peak resident set to what it is now
// (writing 5 to /proc/PID/clear_refs), so that one process can measure
// one case after another.
func (p *Proc) ResetPeak(t testing.TB) {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid)
	if err := os.WriteFile(path, []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak RSS: %v", err)
	}
}

// RSS returns the process's resident set now (VmRSS) in bytes.
func (p *Proc) RSS(t testing.TB) int64 {
	t.Helper()
	return status(t, p.cmd.Process.Pid, "VmRSS:")
}

func status(t testing.TB, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read memory of %d: %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s %q: %v", field, v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Batch is a batch body and its headers.
type Batch struct {
	Name     string
	Body     []byte // as sent
	Encoding string // Content-Encoding
	Records  int    // Tapwire-Records; -1: not sent
	Decoded  int    // the decompressed size
}

// Post sends b to url with the ingest token and returns the status and
// the answer's body.
func Post(ctx context.Context, url, token string, b Batch) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b.Body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", wire.ContentType)
	req.Header.Set("Content-Encoding", b.Encoding)
	req.Header.Set(wire.HeaderProtocol, "1")
	if b.Records >= 0 {
		req.Header.Set(wire.HeaderRecords, strconv.Itoa(b.Records))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}

// Lines returns n JSON lines of records, each of about size bytes with its
// newline (at most size; the record alone is about 180 bytes): an HTTP
// record whose request body (base64) makes up the rest. A size under 184
// gives the smallest record there is, a TCP record with only its id (96
// bytes).
func Lines(n, size int) []byte {
	const minHTTP = 184
	var b bytes.Buffer
	quads := bytes.Repeat([]byte("QUFB"), max(size-minHTTP, 0)/4) // "AAA" each
	for range n {
		id := capture.NewID()
		if size < minHTTP {
			fmt.Fprintf(&b, `{"schema":1,"id":%q,"kind":"tcp","direction":"in","tcp":{}}`+"\n", id)
			continue
		}
		fmt.Fprintf(&b, `{"schema":1,"id":%q,"kind":"http","direction":"in","http":{"req":{"method":"POST","url":"http://orders/x","body":{"size":%d,"data":"`,
			id, len(quads)/4*3)
		b.Write(quads)
		b.WriteString(`"}}}}` + "\n")
	}
	return b.Bytes()
}

// Zstd compresses lines as a client would; window is the encoder's
// window (0: the wire client's).
func Zstd(lines []byte, window int) []byte {
	if window == 0 {
		window = wire.EncodeWindowBytes
	}
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(window), zstd.WithEncoderConcurrency(1))
	if err != nil {
		panic(err)
	}
	defer enc.Close()
	return enc.EncodeAll(lines, nil)
}

// ZstdBatch is a batch of lines, compressed.
func ZstdBatch(name string, lines []byte, records int) Batch {
	return Batch{Name: name, Body: Zstd(lines, 0), Encoding: "zstd", Records: records, Decoded: len(lines)}
}
