// Package s3 is the capture.Sink that writes records to an S3 bucket (the
// tenant bucket, TENANT_BUCKET in TENANT_REGION) or an S3-compatible store
// through an endpoint override: each batch becomes compressed JSON lines
// objects under a key layout that tools can list by time,
//
//	[PREFIX/]TENANT/CLUSTER/SERVICE/YYYY-MM-DD/HH/BATCH-ID.jsonl.zst
//
// one object per tenant, cluster, service and hour of the records' start.
// Credentials come from the AWS SDK's usual chain (environment, shared
// files, the ECS task role, instance metadata). docs/forwarder.md
// describes the layout.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/wire"
)

// Suffix ends every object key the sink writes.
const Suffix = ".jsonl.zst"

// Options configure a Sink. Bucket is required.
type Options struct {
	Bucket string // TENANT_BUCKET
	Region string // TENANT_REGION; if zero, the SDK's (AWS_REGION, shared config), else us-east-1
	// Endpoint overrides the S3 endpoint (TENANT_BUCKET_ENDPOINT), for
	// S3-compatible stores such as MinIO: http://host:9000. If zero, AWS.
	Endpoint string
	// PathStyle addresses the bucket in the path (host/bucket/key) rather
	// than the host name (TENANT_BUCKET_PATH_STYLE); what MinIO and most
	// S3-compatible stores want.
	PathStyle bool
	// Prefix, if not zero, starts every key (TENANT_BUCKET_PREFIX), without
	// a trailing slash.
	Prefix string
	// Tenant is the key's first part when a record has no labels.tenant.
	// If zero, "_".
	Tenant string
	// Credentials, if not nil, replaces the SDK's chain (tests).
	Credentials aws.CredentialsProvider
	// Timeout bounds one object upload. If zero, 60s.
	Timeout time.Duration
	// HTTPClient, if not nil, is the SDK's HTTP client (tests).
	HTTPClient *http.Client
}

// Sink writes batches to a bucket.
type Sink struct {
	opts   Options
	client *s3.Client
	now    func() time.Time
}

var _ capture.Sink = (*Sink)(nil)

// New returns a Sink for opts. It loads the SDK's configuration (no
// network access) but does not check the bucket: Probe does.
func New(ctx context.Context, opts Options) (*Sink, error) {
	if opts.Bucket == "" {
		return nil, errors.New("bucket sink: the bucket name is empty")
	}
	opts.Prefix = strings.Trim(opts.Prefix, "/")
	if opts.Tenant == "" {
		opts.Tenant = "_"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	var loaders []func(*awsconfig.LoadOptions) error
	if opts.Region != "" {
		loaders = append(loaders, awsconfig.WithRegion(opts.Region))
	}
	if opts.Credentials != nil {
		loaders = append(loaders, awsconfig.WithCredentialsProvider(opts.Credentials))
	}
	if opts.HTTPClient != nil {
		loaders = append(loaders, awsconfig.WithHTTPClient(opts.HTTPClient))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loaders...)
	if err != nil {
		return nil, fmt.Errorf("bucket sink: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
	})
	return &Sink{opts: opts, client: client, now: time.Now}, nil
}

// URL returns s3://bucket/prefix, for logs and the health text.
func (s *Sink) URL() string {
	u := "s3://" + s.opts.Bucket
	if s.opts.Prefix != "" {
		u += "/" + s.opts.Prefix
	}
	if s.opts.Endpoint != "" {
		u += " at " + s.opts.Endpoint
	}
	return u
}

// group is the records of one object.
type group struct {
	key  string // without the batch id
	recs []*capture.Record
}

// Write puts recs as one object per tenant, cluster, service and hour.
// An object's name is the batch id of its records (wire.BatchID), so
// writing the same batch again overwrites the same objects. Errors from
// the store are worth retrying; a batch that cannot be encoded is not.
func (s *Sink) Write(ctx context.Context, recs []*capture.Record) error {
	if len(recs) == 0 {
		return nil
	}
	for _, g := range s.groups(recs) {
		var body bytes.Buffer
		if err := wire.EncodeBatch(&body, g.recs); err != nil {
			return &capture.PermanentError{Err: fmt.Errorf("bucket sink: %w", err)}
		}
		key := g.key + wire.BatchID(g.recs) + Suffix
		if err := s.put(ctx, key, body.Bytes(), len(g.recs)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sink) put(ctx context.Context, key string, body []byte, n int) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:          aws.String(s.opts.Bucket),
		Key:             aws.String(key),
		Body:            bytes.NewReader(body),
		ContentLength:   aws.Int64(int64(len(body))),
		ContentType:     aws.String(wire.ContentType),
		ContentEncoding: aws.String(wire.EncodingZstd),
		Metadata:        map[string]string{"tapwire-records": strconv.Itoa(n), "tapwire-schema": strconv.Itoa(capture.SchemaVersion)},
	})
	if err != nil {
		return fmt.Errorf("bucket sink: put s3://%s/%s: %w", s.opts.Bucket, key, err)
	}
	return nil
}

// groups splits recs by key prefix, keeping their order within each.
func (s *Sink) groups(recs []*capture.Record) []*group {
	var gs []*group
	byKey := map[string]*group{}
	for _, r := range recs {
		k := s.keyPrefix(r)
		g := byKey[k]
		if g == nil {
			g = &group{key: k}
			byKey[k] = g
			gs = append(gs, g)
		}
		g.recs = append(g.recs, r)
	}
	return gs
}

// keyPrefix is [PREFIX/]TENANT/CLUSTER/SERVICE/YYYY-MM-DD/HH/ of a record.
func (s *Sink) keyPrefix(r *capture.Record) string {
	t := r.Start
	if t.IsZero() {
		t = s.now()
	}
	t = t.UTC()
	tenant := r.Labels.Tenant
	if tenant == "" {
		tenant = s.opts.Tenant
	}
	var b strings.Builder
	if s.opts.Prefix != "" {
		b.WriteString(s.opts.Prefix)
		b.WriteByte('/')
	}
	for _, part := range []string{tenant, r.Labels.Cluster, r.Labels.Service} {
		b.WriteString(KeyPart(part))
		b.WriteByte('/')
	}
	b.WriteString(t.Format("2006-01-02/15/"))
	return b.String()
}

// KeyPart makes a label a safe key segment: letters, digits, '.', '_' and
// '-' stay, other bytes become %XX, and an empty label becomes "_".
func KeyPart(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.String() == "." || b.String() == ".." {
		return strings.ReplaceAll(b.String(), ".", "%2E")
	}
	return b.String()
}

// Probe checks that the bucket exists and the credentials reach it.
func (s *Sink) Probe(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.opts.Bucket)})
	if err != nil {
		return fmt.Errorf("bucket sink: head bucket %s: %w", s.opts.Bucket, err)
	}
	return nil
}

// Close does nothing: the SDK's connections close when idle.
func (s *Sink) Close() error { return nil }

// List returns the keys of the objects whose records started in the hours
// from, from+1h... up to to, for one tenant, cluster and service; "" for a
// part lists all of them (slower: it lists that level). Keys come sorted.
func (s *Sink) List(ctx context.Context, tenant, cluster, service string, from, to time.Time) ([]string, error) {
	base := ""
	if s.opts.Prefix != "" {
		base = s.opts.Prefix + "/"
	}
	prefixes := []string{base}
	for _, part := range []string{tenant, cluster, service} {
		var next []string
		for _, p := range prefixes {
			if part != "" {
				next = append(next, p+KeyPart(part)+"/")
				continue
			}
			subs, err := s.listLevel(ctx, p)
			if err != nil {
				return nil, err
			}
			next = append(next, subs...)
		}
		prefixes = next
	}
	var keys []string
	for _, p := range prefixes {
		for h := from.UTC().Truncate(time.Hour); !h.After(to); h = h.Add(time.Hour) {
			ks, err := s.listKeys(ctx, p+h.Format("2006-01-02/15/"))
			if err != nil {
				return nil, err
			}
			keys = append(keys, ks...)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

func (s *Sink) listLevel(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.opts.Bucket), Prefix: aws.String(prefix), Delimiter: aws.String("/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("bucket sink: list %s: %w", prefix, err)
		}
		for _, cp := range page.CommonPrefixes {
			out = append(out, aws.ToString(cp.Prefix))
		}
	}
	return out, nil
}

func (s *Sink) listKeys(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.opts.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("bucket sink: list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); strings.HasSuffix(k, Suffix) {
				out = append(out, k)
			}
		}
	}
	return out, nil
}

// ReadObject calls fn with each record of the object at key.
func (s *Sink) ReadObject(ctx context.Context, key string, fn func(*capture.Record) error) error {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.opts.Bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return fmt.Errorf("bucket sink: %s: no such object", key)
		}
		return fmt.Errorf("bucket sink: get %s: %w", key, err)
	}
	defer out.Body.Close()
	err = wire.DecodeBatch(io.LimitReader(out.Body, 1<<30), wire.EncodingZstd, 1<<30, fn)
	if err != nil {
		return fmt.Errorf("bucket sink: read %s: %w", key, err)
	}
	return nil
}

// AllKeys lists every object key under the sink's prefix (tests and
// small buckets).
func (s *Sink) AllKeys(ctx context.Context) ([]string, error) {
	base := ""
	if s.opts.Prefix != "" {
		base = s.opts.Prefix + "/"
	}
	return s.listKeys(ctx, base)
}
