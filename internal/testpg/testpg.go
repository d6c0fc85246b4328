// Package testpg starts a private PostgreSQL server for tests and
// benchmarks: initdb in a temporary directory, a free loopback port, unix
// sockets in that directory, stopped (and the directory removed) at the
// end, or by a watchdog if the test binary dies first. A test binary
// shares one server (Main from TestMain) and each test gets a fresh
// database (DSN).
//
// It needs PostgreSQL's server binaries (scripts/deps.d/postgres installs
// Debian's postgresql-15). Without them, tests skip, or fail when
// TAPWIRE_REQUIRE_TOOLS is set (as scripts/test sets it).
package testpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tapwire/tapwire/internal/testport"
)

// InstallHint says how to get PostgreSQL.
const InstallHint = "PostgreSQL server binaries not found: run scripts/deps.d/postgres (apt-get install postgresql-15), or set TAPWIRE_PG_BIN to their directory"

// ErrNotInstalled is returned by Start when no PostgreSQL is found.
var ErrNotInstalled = errors.New(InstallHint)

// Options tune a server.
type Options struct {
	// Durable keeps PostgreSQL's default durability (fsync,
	// synchronous_commit, full_page_writes), for benchmarks. If false,
	// they are off: faster tests, nothing survives a crash.
	Durable bool
	// Settings are more -c name=value settings.
	Settings map[string]string
}

// Server is a running PostgreSQL.
type Server struct {
	dir, bin string
	port     int
	asUser   string // run commands as this user ("" for ourselves)
	n        atomic.Int64
	stopOnce sync.Once
}

// BinDir finds PostgreSQL's server binaries: $TAPWIRE_PG_BIN, Debian's
// /usr/lib/postgresql/N/bin (15 first, else the newest), or the PATH.
func BinDir() (string, error) {
	if d := os.Getenv("TAPWIRE_PG_BIN"); d != "" {
		return d, nil
	}
	has := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "initdb"))
		return err == nil
	}
	if has("/usr/lib/postgresql/15/bin") {
		return "/usr/lib/postgresql/15/bin", nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNotInstalled
}

func version(bindir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return n
}

// Start initialises and starts a server. Stop it with Stop.
func Start(opts Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "testpg-")
	if err != nil {
		return nil, fmt.Errorf("testpg: %w", err)
	}
	s := &Server{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: run the server as postgres.
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("testpg: running as root needs a postgres user (Debian's package creates it): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("testpg: %w", err)
		}
		s.asUser = "postgres"
	}
	if err := s.start(opts); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) cmd(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	if s.asUser != "" {
		return exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (s *Server) run(name string, args ...string) error {
	out, err := s.cmd(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testpg: %s: %w\n%s", name, err, out)
	}
	return nil
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) start(opts Options) error {
	if err := s.run("initdb", "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.port = port
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": s.dir,
		"max_connections":         "50",
		"shared_buffers":          "128MB",
		"logging_collector":       "off",
	}
	if !opts.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	var o []string
	o = append(o, "-p", strconv.Itoa(port))
	for k, v := range settings {
		o = append(o, "-c", k+"="+v)
	}
	if err := s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60",
		"-o", strings.Join(o, " "), "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("%w\nserver log:\n%s", err, log)
	}
	s.watchdog()
	return nil
}

// watchdog stops the server if this process dies without Stop (a test
// timeout, a kill): a shell that waits for our pid to go away.
func (s *Server) watchdog() {
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null && [ -d %q ]; do sleep 1; done
if [ -d %q ]; then %s -D %q stop -m immediate >/dev/null 2>&1; rm -rf %q; fi`,
		os.Getpid(), s.data(), s.data(), s.cmdline("pg_ctl"), s.data(), s.dir)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		go cmd.Wait() // reap it if we outlive it
	}
}

func (s *Server) cmdline(name string) string {
	path := filepath.Join(s.bin, name)
	if s.asUser != "" {
		return "runuser -u " + s.asUser + " -- " + path
	}
	return path
}

// freePort is a port for PostgreSQL to bind (internal/testport).
func freePort() (int, error) { return testport.Free() }

// Stop stops the server at once and removes its directory.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.port != 0 {
			_ = s.run("pg_ctl", "-D", s.data(), "stop", "-m", "immediate", "-w")
		}
		os.RemoveAll(s.dir)
	})
}

// URL returns the DSN of a database on the server.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// CreateDB creates a new, empty database and returns its DSN.
func (s *Server) CreateDB(ctx context.Context) (string, error) {
	name := fmt.Sprintf("test%d", s.n.Add(1))
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("testpg: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("testpg: create database: %w", err)
	}
	return s.URL(name), nil
}

var (
	mainCalled bool
	shared     struct {
		once sync.Once
		srv  *Server
		err  error
	}
)

// Main runs the tests of a binary with a shared server, started by the
// first DSN and stopped at the end. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }
func Main(m *testing.M) int {
	mainCalled = true
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	return code
}

// DSN returns the DSN of a new database on the binary's shared server. It
// skips the test when PostgreSQL is not installed, or fails it when
// TAPWIRE_REQUIRE_TOOLS is set.
func DSN(t testing.TB) string {
	t.Helper()
	if !mainCalled {
		t.Fatal("testpg: call testpg.Main from TestMain")
	}
	shared.once.Do(func() { shared.srv, shared.err = Start(Options{}) })
	if errors.Is(shared.err, ErrNotInstalled) {
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatal(InstallHint)
		}
		t.Skip(InstallHint)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := shared.srv.CreateDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}
