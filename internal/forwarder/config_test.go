package forwarder

import (
	"bytes"
	"errors"
	"flag"
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
			return c.Cluster == "ecs" && c.TenantID == "uuid" &&
				slices.Equal(c.Pending, []string{"SPEEDSCALE_API_KEY", "SPEEDSCALE_APP_URL", "TENANT_NAME", "SUB_TENANT_NAME", "SUB_TENANT_STREAM", "TENANT_BUCKET", "TENANT_REGION"})
		}, ""},
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
	for _, want := range []string{"grep Connected", "FORWARDER_TOKEN", "-dir", "SPEEDSCALE_API_KEY", "Not connected"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(out.String()), "not implemented") {
		t.Errorf("help says not implemented")
	}
}
