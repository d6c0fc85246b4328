package mock

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ChildEnv returns env with the variables that send an app's HTTP and HTTPS calls through the proxy at
// proxyURL and make it trust the CA in caFile, in each language's way: HTTP_PROXY and HTTPS_PROXY (both
// cases), SSL_CERT_FILE (Go, Ruby, OpenSSL), REQUESTS_CA_BUNDLE (Python requests), NODE_EXTRA_CA_CERTS
// (Node), CURL_CA_BUNDLE (curl), GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (gRPC C-core). NO_PROXY is kept.
func ChildEnv(env []string, proxyURL, caFile string) []string {
	set := map[string]string{"HTTP_PROXY": proxyURL, "HTTPS_PROXY": proxyURL, "http_proxy": proxyURL, "https_proxy": proxyURL}
	if caFile != "" {
		for _, k := range []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"} {
			set[k] = caFile
		}
	}
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			out = append(out, kv)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
		"NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"} {
		if v, ok := set[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// RunChild runs argv with env, its standard streams the caller's, and passes it every signal received on
// sigs until it exits. It returns the child's exit status: its code, or 128 plus the signal that ended it.
func RunChild(ctx context.Context, argv, env []string, sigs <-chan os.Signal) (int, error) {
	c, err := StartChild(argv, ChildOptions{Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil {
		return 127, err
	}
	for {
		select {
		case s := <-sigs:
			c.Signal(s)
		case <-ctx.Done():
			c.Signal(syscall.SIGTERM)
			ctx = context.Background() // once
		case <-c.Done():
			return c.Status()
		}
	}
}

// ChildOptions say how a child runs. Nil streams are the null device.
type ChildOptions struct {
	Env            []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Tail, if above zero, keeps the last Tail bytes the child writes to Stdout and Stderr, for Child.Tail.
	Tail int
	// Group runs the child in a process group of its own (on Unix), and signals the whole group, so that
	// Stop reaches what it started too: the app a shell script runs, the binary of go run. Its Stdin must
	// then not be a terminal.
	Group bool
}

// Child is a running child process. Its owner stops it (Stop) or waits for it (Done, Status).
type Child struct {
	cmd   *exec.Cmd
	group bool
	tail  *tail
	done  chan struct{}
	code  int   // after done
	err   error // after done
}

// StartChild starts argv. A goroutine waits for it; Done is closed when it has exited.
func StartChild(argv []string, opt ChildOptions) (*Child, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command to run")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = opt.Env, opt.Stdin, opt.Stdout, opt.Stderr
	c := &Child{cmd: cmd, group: opt.Group, done: make(chan struct{})}
	if opt.Tail > 0 {
		c.tail = &tail{max: opt.Tail}
		cmd.Stdout = teeTo(opt.Stdout, c.tail)
		cmd.Stderr = cmd.Stdout // one writer: exec.Cmd then calls it from one goroutine at a time
		if opt.Stderr != opt.Stdout {
			cmd.Stderr = teeTo(opt.Stderr, c.tail)
		}
		// The output goes through pipes now: what the child left running must not hold Wait for ever.
		cmd.WaitDelay = 5 * time.Second
	}
	if opt.Group {
		setGroup(cmd)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(c.done)
		c.code, c.err = exitCode(cmd.Wait())
	}()
	return c, nil
}

// exitCode turns Wait's error into an exit status: the code, or 128 plus the signal that ended it.
func exitCode(err error) (int, error) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// Done is closed when the child has exited.
func (c *Child) Done() <-chan struct{} { return c.done }

// Status returns the child's exit status once Done is closed: its code, or 128 plus the signal that
// ended it.
func (c *Child) Status() (int, error) {
	<-c.done
	return c.code, c.err
}

// Signal sends s to the child (to its group with Group).
func (c *Child) Signal(s os.Signal) error {
	if c.group {
		return signalGroup(c.cmd.Process, s)
	}
	return c.cmd.Process.Signal(s)
}

// Stop ends the child: SIGTERM, then SIGKILL when it has not exited after grace. It returns its status.
func (c *Child) Stop(grace time.Duration) (int, error) {
	select {
	case <-c.done:
		return c.Status()
	default:
	}
	if c.Signal(syscall.SIGTERM) == nil {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-c.done:
			return c.Status()
		case <-t.C:
		}
	}
	c.Signal(os.Kill)
	return c.Status()
}

// Tail returns the last bytes the child wrote (ChildOptions.Tail), from the start of a line when it can.
func (c *Child) Tail() string {
	if c.tail == nil {
		return ""
	}
	return c.tail.String()
}

func teeTo(w io.Writer, t *tail) io.Writer {
	if w == nil {
		return t
	}
	return io.MultiWriter(w, t)
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	full bool // bytes were dropped from the front
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.full = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.buf)
	if t.full {
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
	}
	return s
}
