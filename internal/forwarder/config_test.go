package forwarder

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(*Config) bool
		wantErr string
	}{
		{"defaults", nil, nil, func(c *Config) bool {
			return c.Listen == ":8888" && c.Dir == "tapwire-forwarded" && c.MaxBatchBytes == 32<<20 &&
				c.MaxInFlight == 4 && c.ShutdownTimeout == 20*time.Second && c.Token == "" && len(c.Pending) == 0
		}, ""},
		{"guide env", nil, map[string]string{
			"CLUSTER_NAME": "ecs", "TENANT_ID": "uuid", "SPEEDSCALE_API_KEY": "yourkey", "SPEEDSCALE_APP_URL": "app.speedscale.com",
			"SUB_TENANT_NAME": "default", "SUB_TENANT_STREAM": "s", "TENANT_BUCKET": "b", "TENANT_NAME": "n", "TENANT_REGION": "us-east-1",
		}, func(c *Config) bool {
			return c.Cluster == "ecs" && c.TenantID == "uuid" && c.HubURL == "app.speedscale.com" && c.APIKey == "yourkey" &&
				c.Bucket == "b" && c.Region == "us-east-1" && c.BucketPathStyle == "false" && c.Dir == "" &&
				c.FilterRule == "standard" && c.Redaction.Redact == "true" &&
				c.TenantName == "n" && c.SubTenantName == "default" &&
				slices.Equal(c.Pending, []string{"SUB_TENANT_STREAM"})
		}, ""},
		{"endpoint means path style", nil, map[string]string{"TENANT_BUCKET": "b", "TENANT_BUCKET_ENDPOINT": "http://127.0.0.1:9000", "FORWARDER_DIR": "/d"},
			func(c *Config) bool { return c.BucketPathStyle == "true" && c.Dir == "/d" }, ""},
		{"hub without key", nil, map[string]string{"SPEEDSCALE_APP_URL": "hub:8443"}, nil, "SPEEDSCALE_API_KEY"},
		{"bad hub", nil, map[string]string{"SPEEDSCALE_APP_URL": "ftp://hub", "SPEEDSCALE_API_KEY": "k"}, nil, "SPEEDSCALE_APP_URL"},
		{"bad endpoint", nil, map[string]string{"TENANT_BUCKET": "b", "TENANT_BUCKET_ENDPOINT": "minio:9000"}, nil, "TENANT_BUCKET_ENDPOINT"},
		{"bad redact", nil, map[string]string{"SPEEDSCALE_REDACT": "maybe"}, nil, "SPEEDSCALE_REDACT"},
		{"bodies redacted by default", nil, nil, func(c *Config) bool { return c.Redaction.RedactBodies == "true" }, ""},
		{"bodies not redacted", nil, map[string]string{"SPEEDSCALE_REDACT_BODIES": "false"}, func(c *Config) bool { return c.Redaction.RedactBodies == "false" }, ""},
		{"bodies flag", []string{"-redact-bodies", "false"}, nil, func(c *Config) bool { return c.Redaction.RedactBodies == "false" }, ""},
		{"bad redact bodies", nil, map[string]string{"SPEEDSCALE_REDACT_BODIES": "no"}, nil, `SPEEDSCALE_REDACT_BODIES="no"`},
		{"bad sync", nil, map[string]string{"FORWARDER_SPOOL_SYNC": "sometimes"}, nil, "FORWARDER_SPOOL_SYNC"},
		{"small spool", nil, map[string]string{"FORWARDER_SPOOL_BYTES": "1000000"}, nil, "FORWARDER_SPOOL_BYTES"},
		{"flag wins", []string{"-listen", "127.0.0.1:9999", "-dir", "/x"}, map[string]string{"FORWARDER_LISTEN": ":1", "FORWARDER_DIR": "/y", "FORWARDER_TOKEN": "t"},
			func(c *Config) bool { return c.Listen == "127.0.0.1:9999" && c.Dir == "/x" && c.Token == "t" }, ""},
		{"bad listen", []string{"-listen", "8888"}, nil, nil, `FORWARDER_LISTEN="8888"`},
		{"bad env number", nil, map[string]string{"FORWARDER_MAX_IN_FLIGHT": "many"}, nil, `FORWARDER_MAX_IN_FLIGHT="many": want a whole number`},
		{"small batch", []string{"-max-batch-bytes", "10"}, nil, nil, "want at least 65536"},
		{"bad level", nil, map[string]string{"LOG_LEVEL": "loud"}, nil, "LOG_LEVEL"},
		{"argument", []string{"serve"}, nil, nil, `unexpected argument "serve"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			c, err := Load(tc.args, env(tc.env), &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tc.check(c) {
				t.Errorf("config %+v does not match", c)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := Load([]string{"-help"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Load -help: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"grep Connected", "FORWARDER_TOKEN", "-dir", "SPEEDSCALE_API_KEY", "Not connected",
		"-spool-bytes size\n", "(size, default 1GiB) [$FORWARDER_SPOOL_BYTES]", "-shutdown-timeout duration\n", "-max-in-flight n\n", "-listen address\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`(?m)^  -\S+ (value|string)$`).FindAllString(out.String(), -1); m != nil {
		t.Errorf("flags without a named placeholder: %q", m)
	}
	if strings.Contains(strings.ToLower(out.String()), "not implemented") {
		t.Errorf("help says not implemented")
	}
}
