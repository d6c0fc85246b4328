package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestECSTokenShared: with no FORWARDER_TOKEN in the config, speedctl ecs
// forwarder generates one and saves it, and ecs inject gives goproxy the
// same; a second run keeps it.
func TestECSTokenShared(t *testing.T) {
	home := t.TempDir()
	if _, err := run(t, "--home", home, "config", "set", "SPEEDSCALE_APP_URL=hub.example.com", "SPEEDSCALE_API_KEY=k", "TENANT_ID=acme"); err != nil {
		t.Fatal(err)
	}
	envOf := func(out, container string) map[string]string {
		t.Helper()
		i := strings.IndexByte(out, '{')
		if i < 0 {
			t.Fatalf("no JSON in %q", out)
		}
		var doc struct {
			TaskDefinition *struct {
				ContainerDefinitions []struct {
					Name        string
					Environment []struct{ Name, Value string }
				}
			}
			ContainerDefinitions []struct {
				Name        string
				Environment []struct{ Name, Value string }
			}
		}
		dec := json.NewDecoder(strings.NewReader(out[i:]))
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("decode: %v in %s", err, out)
		}
		cs := doc.ContainerDefinitions
		if doc.TaskDefinition != nil {
			cs = doc.TaskDefinition.ContainerDefinitions
		}
		env := map[string]string{}
		for _, c := range cs {
			if c.Name == container {
				for _, e := range c.Environment {
					env[e.Name] = e.Value
				}
			}
		}
		return env
	}

	out, err := run(t, "--home", home, "ecs", "forwarder", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	tok := envOf(out, "forwarder")["FORWARDER_TOKEN"]
	if len(tok) < 40 || !strings.Contains(out, "generated a FORWARDER_TOKEN") {
		t.Fatalf("forwarder's FORWARDER_TOKEN %q, want a generated one, and a note: %s", tok, out)
	}
	cfg, _ := os.ReadFile(filepath.Join(home, "config"))
	if !strings.Contains(string(cfg), "FORWARDER_TOKEN="+tok) {
		t.Errorf("config lacks the token:\n%s", cfg)
	}
	out, err = run(t, "--home", home, "ecs", "inject", "--task-def", "../../internal/ecs/testdata/notifications.describe.json", "--container", "notifications", "--port", "8080")
	if err != nil {
		t.Fatal(err)
	}
	if got := envOf(out, "goproxy")["FORWARDER_TOKEN"]; got != tok {
		t.Errorf("goproxy's FORWARDER_TOKEN %q, want the forwarder's %q", got, tok)
	}
	out, _ = run(t, "--home", home, "ecs", "forwarder", "--format", "json")
	if got := envOf(out, "forwarder")["FORWARDER_TOKEN"]; got != tok || strings.Contains(out, "generated") {
		t.Errorf("second run: token %q, want the saved %q and nothing generated", got, tok)
	}
	out, _ = run(t, "--home", home, "ecs", "forwarder", "--format", "json", "--no-token")
	if _, ok := envOf(out, "forwarder")["FORWARDER_TOKEN"]; ok {
		t.Errorf("--no-token still writes FORWARDER_TOKEN")
	}
}
