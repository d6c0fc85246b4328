// Package tests3 runs a real MinIO server on a loopback port for tests of
// the bucket sink: in a temporary directory, with generated root
// credentials, stopped when the test ends. The binary comes from
// scripts/deps.d/minio; when it is missing the test is skipped, or fails
// when TAPWIRE_REQUIRE_TOOLS is set (the README's test command sets it).
package tests3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tapwire/tapwire/internal/testport"
)

// Region is the region the server answers for.
const Region = "us-east-1"

// Server is a running MinIO.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string

	bin, dir, addr string
	cmd            *exec.Cmd
	done           chan error
	log            *os.File
	buckets        atomic.Int64
}

// Binary finds the minio binary: $TAPWIRE_MINIO, then $TAPWIRE_BIN/minio
// or ~/.cache/tapwire/bin/minio (where scripts/deps.d/minio puts it), then
// the PATH.
func Binary() (string, error) {
	var cands []string
	if p := os.Getenv("TAPWIRE_MINIO"); p != "" {
		cands = append(cands, p)
	}
	if d := os.Getenv("TAPWIRE_BIN"); d != "" {
		cands = append(cands, filepath.Join(d, "minio"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(home, ".cache", "tapwire", "bin", "minio"))
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", errors.New("minio is not installed; scripts/deps.d/minio builds it (or run scripts/install-test-deps)")
}

// Start starts a MinIO for the test, or skips (fails with
// TAPWIRE_REQUIRE_TOOLS) when the binary is missing.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	s := &Server{bin: bin, dir: t.TempDir(), AccessKey: "tapwire-" + randHex(4), SecretKey: randHex(16)}
	addr, err := testport.Addr() // for MinIO to bind
	if err != nil {
		t.Fatal(err)
	}
	s.addr = addr
	s.Endpoint = "http://" + s.addr
	s.start(t)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	consoleAddr, err := testport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	if s.log == nil {
		if s.log, err = os.Create(filepath.Join(s.dir, "minio.log")); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(s.dir, "data")
	cmd := exec.Command(s.bin, "server", "--quiet", "--address", s.addr, "--console-address", consoleAddr,
		"--certs-dir", filepath.Join(s.dir, "certs"), data)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION="+Region)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start minio: %v", err)
	}
	s.cmd, s.done = cmd, make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("minio exited at start: %v\n%s", err, s.tail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("minio not ready after 60s: %v\n%s", err, s.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) tail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "minio.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop kills the server and waits for it; the data stays for Restart.
func (s *Server) Stop(t testing.TB) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same address and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	// The port may linger a moment after the kill.
	for i := 0; i < 50; i++ {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			ln.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.start(t)
}

// Credentials returns the server's root credentials for the AWS SDK.
func (s *Server) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")
}

// Client returns an S3 client for the server (path style).
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  s.Credentials(),
	})
}

// NewBucket creates a bucket with a new name and returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("tapwire-%d-%s", s.buckets.Add(1), strings.ToLower(randHex(3)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		if _, err = s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err == nil {
			return name
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("create bucket %s: %v\n%s", name, err, s.tail())
	return ""
}
