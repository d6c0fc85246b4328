package ecstest

import (
	"strings"
	"testing"
)

// TestCatches: each mistake the checks exist for is caught.
func TestCatches(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ok", `{"family": "f", "containerDefinitions": [{"name": "a", "image": "i", "essential": false, "cpu": 0, "dependsOn": [{"containerName": "b", "condition": "SUCCESS"}]}]}`, ""},
		{"unknown field", `{"family": "f", "containerDefinitions": [{"name": "a", "depends_on": []}]}`, `unknown field "depends_on"`},
		{"wrong case", `{"family": "f", "containerDefinitions": [{"Name": "a"}]}`, ".containerDefinitions[0].Name: ours only"},
		{"wrong type", `{"family": "f", "containerDefinitions": [{"name": "a", "cpu": "256"}]}`, "cannot unmarshal string"},
		{"bad enum", `{"family": "f", "containerDefinitions": [{"name": "a", "dependsOn": [{"containerName": "b", "condition": "SUCESS"}]}]}`, `"SUCESS": not a ContainerCondition`},
		{"missing required", `{"containerDefinitions": [{"name": "a"}]}`, "the SDK refuses it"},
		{"read-only field", `{"family": "f", "revision": 3, "containerDefinitions": []}`, `unknown field "revision"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := RegisterTaskDefinition([]byte(tc.in))
			if tc.want == "" {
				if err != nil {
					t.Errorf("unexpected %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := CreateDiscoveryService([]byte(`{"Name": "x", "DnsConfig": {"DnsRecords": [{"Type": "AAA", "TTL": 10}]}}`)); err == nil || !strings.Contains(err.Error(), "RecordType") {
		t.Errorf("bad record type: %v", err)
	}
	if err := Forwarder([]byte(`{"taskDefinition": {}}`)); err == nil {
		t.Error("Forwarder took a JSON without service and serviceDiscovery")
	}
}
