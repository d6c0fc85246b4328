package forwarder

import (
	"bytes"
	"cmp"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/capture/capturetest"
	"github.com/tapwire/tapwire/internal/filter"
	"github.com/tapwire/tapwire/internal/format/jsonl"
	"github.com/tapwire/tapwire/internal/redact"
	"github.com/tapwire/tapwire/internal/wire"
)

// decodeOne decodes line, one record, with want, and returns the record
// (a copy: a partial one is reused) and whether it was partial.
func decodeOne(t *testing.T, line []byte, want jsonl.Want) (capture.Record, bool) {
	t.Helper()
	var l jsonl.Line
	var got capture.Record
	partial, n := false, 0
	err := jsonl.Decode(bytes.NewReader(line), jsonl.Limits{Bytes: -1}, &l, want, func(r *capture.Record, _ bool) error {
		got, partial = *r, l.Partial()
		n++
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("decode %s: %v (%d records)", line, err, n)
	}
	return got, partial
}

// TestPartialFilterFacts: a record decoded for the filter from its line
// alone (jsonl.Want.Facts, what the forwarder does when it has no
// redaction to apply) gives every criterion of internal/filter, found by
// reflection so that a new one is tested too, the answer of the fully
// decoded record, for records of every kind and values taken from them.
func TestPartialFilterFacts(t *testing.T) {
	recs := capturetest.Records()
	for i, r := range capturetest.Batch(3, 40) {
		recs[string(rune('a'+i))] = r
	}
	tcpWithHTTP := capturetest.Records()["http-in"]
	tcpWithHTTP.Kind, tcpWithHTTP.TCP = capture.KindTCP, &capture.TCP{BytesUp: 1}
	recs["tcp-with-http"] = tcpWithHTTP
	noStatus := capturetest.Records()["http-in"]
	noStatus.HTTP.Res.Status = 0
	recs["no-status"] = noStatus

	crit := reflect.TypeFor[filter.Criterion]()
	for name, r := range recs {
		if r.Vendor != nil {
			continue
		}
		var buf bytes.Buffer
		if err := jsonl.Append(&buf, []*capture.Record{r}); err != nil {
			t.Fatal(err)
		}
		line := buf.Bytes()
		full, _ := decodeOne(t, line, jsonl.Want{})
		part, partial := decodeOne(t, line, jsonl.Want{Partial: true, Facts: true})
		if !partial {
			t.Fatalf("%s: not decoded partially (the line is not typed?)", name)
		}
		// The values to try: every string of the full record, and some.
		values := []string{"", "x", "http", "https", "tcp", "in", "out", "200", "0", "2", "/"}
		var walk func(v reflect.Value)
		walk = func(v reflect.Value) {
			switch v.Kind() {
			case reflect.String:
				if s := v.String(); len(s) < 200 {
					values = append(values, s)
				}
			case reflect.Pointer, reflect.Interface:
				if !v.IsNil() {
					walk(v.Elem())
				}
			case reflect.Struct:
				for i := range v.NumField() {
					if v.Type().Field(i).IsExported() {
						walk(v.Field(i))
					}
				}
			case reflect.Slice, reflect.Array:
				for i := range v.Len() {
					walk(v.Index(i))
				}
			case reflect.Map:
				for it := v.MapRange(); it.Next(); {
					walk(it.Key())
					walk(it.Value())
				}
			}
		}
		walk(reflect.ValueOf(&full))
		for i := range crit.NumField() {
			f := crit.Field(i)
			var cs []filter.Criterion
			switch {
			case f.Name == "Include" || f.Name == "Operator" || f.Name == "Value":
				continue
			case f.Type.Kind() == reflect.String:
				for _, v := range values {
					var c filter.Criterion
					reflect.ValueOf(&c).Elem().Field(i).SetString(v)
					cs = append(cs, c)
					if f.Name == "Header" {
						for _, val := range values[:6] {
							c.Value = val
							cs = append(cs, c)
						}
					}
				}
			case f.Type == reflect.TypeFor[*filter.Span]():
				at := full.Start
				for _, s := range []filter.Span{{From: at}, {From: at.Add(time.Second)}, {From: at.Add(-time.Second), To: at},
					{To: at.Add(time.Microsecond)}} {
					cs = append(cs, filter.Criterion{Time: &s})
				}
			default:
				t.Fatalf("filter.Criterion.%s (%s): unknown to this test; if the filter reads a fact of the record that "+
					"jsonl's partial decode (Want.Facts) does not decode, add it there too", f.Name, f.Type)
			}
			for _, c := range cs {
				for _, op := range []string{"EQUAL", "CONTAINS"} {
					c.Include, c.Operator = true, op
					flt := &filter.Filter{ID: "t", Conditions: []filter.Condition{{Filters: []filter.Criterion{c}}}}
					if a, b := flt.Keep(&part), flt.Keep(&full); a != b {
						t.Fatalf("%s: criterion %s %+v: partial record kept %v, full %v", name, f.Name, c, a, b)
					}
				}
			}
		}
	}
}

// TestPartialSpoolsTheSameLines: the lines a forwarder stores for a
// batch are the same whether it decodes each record in full (it redacts:
// the sender did not say it had) or partially (the sender redacted with
// the same rules): stamped labels and tags included, the standard filter
// applied.
func TestPartialSpoolsTheSameLines(t *testing.T) {
	recs := httpRecords(6, 300)
	recs[1].Labels.Cluster = "set-by-goproxy"
	recs[2].HTTP.Req.URL = "http://app:4143/healthz"
	recs[3].Tags = capture.Tags{"subTenant": "other", "k": "v"}
	red, err := (&redact.Settings{}).Redactor() // the forwarder's, by default
	if err != nil {
		t.Fatal(err)
	}
	var lines [2][]byte
	for i, preRedacted := range []bool{false, true} {
		f := start(t, Config{Cluster: "ecs", TenantID: "tenant-uuid", TenantName: "sstenant-tenant", SubTenantName: "default"})
		opts := wire.ClientOptions{Timeout: 10 * time.Second}
		if preRedacted {
			opts.Redacted = red.Fingerprint()
		}
		c, err := wire.NewClient(f.addr, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := f.stop(); err != nil {
			t.Fatal(err)
		}
		lines[i] = readDirLines(t, f.dir)
		if st := f.srv.Stats(); st.PreRedacted != map[bool]int64{false: 0, true: 1}[preRedacted] || st.Filtered != 1 {
			t.Errorf("pre-redacted %v: stats %+v, want the health check filtered", preRedacted, st)
		}
	}
	if len(lines[0]) == 0 || !bytes.Equal(lines[0], lines[1]) {
		t.Errorf("decoded in full, the forwarder stored\n%s\ndecoded partially\n%s", lines[0], lines[1])
	}
}

// readDirLines is the directory sink's files' lines, in the files' order.
func readDirLines(t *testing.T, dir string) []byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(fileSeq(a), fileSeq(b)) })
	var all []byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// fileSeq is the sequence number that ends a directory sink file's name.
func fileSeq(name string) int {
	name = strings.TrimSuffix(filepath.Base(name), ".jsonl")
	n, _ := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
	return n
}
