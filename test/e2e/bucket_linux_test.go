package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/tests3"
	"github.com/tapwire/tapwire/internal/wire"
)

// startBucket runs MinIO as the tenant bucket in its own namespace,
// creates TENANT_BUCKET in it and returns the forwarder's AWS credential
// variables. Without MinIO (scripts/deps.d/minio builds it) the run goes on
// without the bucket, or fails under TAPWIRE_REQUIRE_TOOLS.
func (g *guide) startBucket(t *testing.T, tmp string) []string {
	t.Helper()
	bin, err := tests3.Binary()
	if err != nil {
		if os.Getenv("TAPWIRE_REQUIRE_TOOLS") != "" {
			t.Fatal(err)
		}
		t.Logf("no tenant bucket in this run: %v", err)
		return nil
	}
	ns := g.host("bucket", bucketOctet)
	b := make([]byte, 16)
	rand.Read(b)
	user, secret := "tapwire-e2e", hex.EncodeToString(b)
	dir := filepath.Join(tmp, "minio")
	os.MkdirAll(dir, 0o755)
	g.minio = &proc{name: "minio", ns: ns, dir: dir,
		argv: []string{bin, "server", "--quiet", "--address", ":9000", "--console-address", "127.0.0.1:9001",
			"--certs-dir", filepath.Join(dir, "certs"), filepath.Join(dir, "data")},
		env: []string{"HOME=" + dir, "MINIO_ROOT_USER=" + user, "MINIO_ROOT_PASSWORD=" + secret,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION=" + tenantRegion}}
	g.start(g.minio)
	t.Cleanup(func() { g.minio.kill(t, syscall.SIGTERM) })

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: g.dialer(ns)}}
	for deadline := time.Now().Add(60 * time.Second); ; {
		res, err := hc.Get("http://" + bucketName + ":9000/minio/health/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if !g.minio.running() || time.Now().After(deadline) {
			t.Fatalf("MinIO is not ready: %v\n%s", err, tail(g.minio.logs(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	creds := credentials.NewStaticCredentialsProvider(user, secret, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := s3.New(s3.Options{Region: tenantRegion, BaseEndpoint: aws.String("http://" + bucketName + ":9000"),
		UsePathStyle: true, Credentials: creds, HTTPClient: hc})
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(tenantBucket)}); err != nil {
		t.Fatalf("create the bucket %s: %v", tenantBucket, err)
	}
	g.bucket = &bucketReader{client: cl, read: map[string]bool{}, seen: map[string]bool{}, lines: map[string][]byte{}}
	return []string{"AWS_ACCESS_KEY_ID=" + user, "AWS_SECRET_ACCESS_KEY=" + secret}
}

// bucketReader reads the records the forwarder put in the bucket, each
// object once.
type bucketReader struct {
	client *s3.Client
	mu     sync.Mutex
	read   map[string]bool // object keys read
	seen   map[string]bool // "in URL" and "out URL" of the records read
	keys   []string
	lines  map[string][]byte // each object's JSON lines, decompressed
}

func (b *bucketReader) refresh(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var keys []string
	pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: aws.String(tenantBucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list the bucket: %w", err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	for _, k := range keys {
		if b.read[k] {
			continue
		}
		// The sink's objects: a batch as zstd-compressed JSON lines.
		obj, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(tenantBucket), Key: aws.String(k)})
		if err != nil {
			return fmt.Errorf("get %s: %w", k, err)
		}
		data, err := io.ReadAll(obj.Body)
		obj.Body.Close()
		if err != nil {
			return fmt.Errorf("get %s: %w", k, err)
		}
		lines, err := unzstd(data)
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		err = wire.DecodeBatch(bytes.NewReader(lines), wire.EncodingIdentity, 1<<30, func(r *capture.Record) error {
			if r.HTTP != nil {
				b.seen[string(r.Direction)+" "+r.HTTP.Req.URL] = true
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		b.read[k] = true
		b.lines[k] = lines
		b.keys = append(b.keys, k)
	}
	return nil
}

// waitBucket waits until the bucket holds an inbound and an outbound record
// whose URL contains each marker.
func (g *guide) waitBucket(t *testing.T, markers []string, within time.Duration) {
	t.Helper()
	if g.bucket == nil {
		return
	}
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := g.bucket.refresh(ctx)
		cancel()
		var missing []string
		if err == nil {
			g.bucket.mu.Lock()
			for _, m := range markers {
				for _, d := range []string{"in", "out"} {
					found := false
					for k := range g.bucket.seen {
						if strings.HasPrefix(k, d+" ") && strings.Contains(k, m) {
							found = true
							break
						}
					}
					if !found {
						missing = append(missing, d+" "+m)
					}
				}
			}
			g.bucket.mu.Unlock()
			if len(missing) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("read the bucket: %v", err)
			}
			t.Fatalf("after %s the bucket lacks %d of %d records: %s", within, len(missing), 2*len(markers), strings.Join(first(missing, 10), ", "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
