package har

import (
	"strings"
	"testing"

	"github.com/tapwire/tapwire/internal/format/har/hartest"
)

// TestSchema: the HAR the Writer makes of every test record is valid HAR
// 1.2 by har-validator's schema; and the schema is no rubber stamp.
func TestSchema(t *testing.T) {
	recs := testRecords(t)
	if err := hartest.Validate(writeAll(t, recs)); err != nil {
		t.Errorf("the HAR of the test records: %v", err)
	}
	if err := hartest.Validate(writeAll(t, nil)); err != nil {
		t.Errorf("the HAR of no records: %v", err)
	}
	for _, bad := range []struct{ from, to string }{
		{`"version":"1.2"`, `"version":1.2`},
		{`"startedDateTime":"2025-`, `"startedDateTime":"March 2025-`},
		{`"status":200`, `"status":"200"`},
		{`"headers":[`, `"headers":"none","_headers":[`},
		{`"serverIPAddress":"`, `"serverIPAddress":"[`},
	} {
		doc := string(writeAll(t, recs))
		if !strings.Contains(doc, bad.from) {
			t.Fatalf("no %s in the HAR", bad.from)
		}
		doc = strings.Replace(doc, bad.from, bad.to, 1)
		if err := hartest.Validate([]byte(doc)); err == nil {
			t.Errorf("a HAR with %s instead of %s is valid by the schema", bad.to, bad.from)
		}
	}
}
