package testpg_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tapwire/tapwire/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// TestDSN: each DSN is a fresh database on the shared server, over TCP on
// loopback.
func TestDSN(t *testing.T) {
	ctx := context.Background()
	a, b := testpg.DSN(t), testpg.DSN(t)
	if a == b {
		t.Fatalf("two DSNs are the same: %s", a)
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE x (n int)"); err != nil {
		t.Fatal(err)
	}
	var addr string
	if err := conn.QueryRow(ctx, "SELECT host(inet_server_addr())").Scan(&addr); err != nil || addr != "127.0.0.1" {
		t.Errorf("server address %q %v, want 127.0.0.1", addr, err)
	}
	conn2, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	var n int
	if err := conn2.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
		t.Errorf("the second database sees the first's table: %d %v", n, err)
	}
}

// TestStartStop: a server of its own starts, serves and is gone after Stop.
func TestStartStop(t *testing.T) {
	if _, err := testpg.BinDir(); err != nil {
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx := context.Background()
	s, err := testpg.Start(testpg.Options{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := s.CreateDB(ctx)
	if err != nil {
		s.Stop()
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		s.Stop()
		t.Fatal(err)
	}
	var fsync string
	err = conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync)
	conn.Close(ctx)
	if err != nil || fsync != "on" {
		t.Errorf("Durable server: fsync %q %v, want on", fsync, err)
	}
	s.Stop()
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Errorf("connected after Stop")
	}
}
