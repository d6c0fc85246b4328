package forwarder

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/spool"
	"github.com/tapwire/tapwire/internal/wire"
	"github.com/tapwire/tapwire/internal/wire/wiretest"
)

// TestSpoolFullHealth: with the hub reachable but slow (its first delivery held), a small spool reaches
// its bound; health still says Connected and says the spool is full and how full, and the metrics show it.
func TestSpoolFullHealth(t *testing.T) {
	h := wiretest.New(t)
	release := make(chan struct{})
	h.Refuse(func(r *http.Request, _ int) *wire.ServerError {
		if r.Header.Get(wire.HeaderRecords) != "0" {
			<-release // a delivery: held until the test ends
		}
		return nil
	})
	const bound = 256 << 10
	f := start(t, Config{HubURL: h.Server.URL, APIKey: "k", MaxBatchBytes: 64 << 10, SpoolBytes: bound, SpoolSegmentBytes: 64 << 10,
		ShutdownTimeout: time.Second})
	t.Cleanup(func() { close(release) }) // runs before the forwarder's shutdown
	if code, body := health(t, f.addr); code != 200 || strings.Contains(body, "spool full") {
		t.Fatalf("health of an empty spool: %d %q, want 200 without \"spool full\"", code, body)
	}
	client := newClient(t, f.addr, "")
	for range 40 { // ~1 MiB of records into a 256 KiB spool
		if err := client.Write(context.Background(), httpRecords(10, 1500)); err != nil {
			t.Fatal(err)
		}
	}
	code, body := health(t, f.addr)
	if want := fmt.Sprintf("of %d bytes", bound); code != 200 || !strings.HasPrefix(body, "Connected: ") ||
		!strings.Contains(body, "spool full: ") || !strings.Contains(body, want) {
		t.Errorf("health with the spool at its bound: %d %q, want 200 Connected ... spool full: N %s", code, body, want)
	}
	t.Logf("health: %s", body)
	_, metrics := get(t, "http://"+f.addr+"/metrics")
	if !strings.Contains(metrics, fmt.Sprintf("forwarder_spool_max_bytes %d", bound)) ||
		!strings.Contains(metrics, "forwarder_spool_no_space_errors_total 0") {
		t.Errorf("metrics lack the spool's bound or the no-space counter")
	}
	var ratio float64
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, "forwarder_spool_full_ratio "); ok {
			fmt.Sscan(v, &ratio)
		}
	}
	if ratio < 0.7 || ratio > 1 {
		t.Errorf("forwarder_spool_full_ratio = %g, want between 0.7 and 1 for a full spool", ratio)
	}
}

// TestSpoolNoSpace: a batch the spool refuses for lack of disk space is answered 503 saying the spool is
// full and how full, the health check names the spool, and the gauge is 1.
func TestSpoolNoSpace(t *testing.T) {
	enospc := fmt.Errorf("%w: %w", spool.ErrNoSpace, &os.PathError{Op: "write", Path: "x.seg", Err: syscall.ENOSPC})
	sp := spool.Stats{Bytes: 1 << 20, MaxBytes: 1 << 30, NoSpace: enospc, NoSpaceErrors: 1}
	err := spoolError(fmt.Errorf("spool: append: %w", enospc), sp)
	se := wire.StatusOf(err)
	want := "spool full: no space left on device (ENOSPC) with the spool at 1048576 of 1073741824 bytes (0%)"
	if se.Status != http.StatusServiceUnavailable || se.Message != want || se.Wait != 5*time.Second {
		t.Errorf("answer %d %q (Retry-After %s), want 503 %q (5s)", se.Status, se.Message, se.Wait, want)
	}
	if !errors.Is(err, errStore) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("error %v: want it to be errStore (counted as a spool refusal) and wrap ENOSPC", err)
	}
	if bad, note := spoolHealth(sp); !strings.HasPrefix(bad, "spool full: no space left on device") || note != "" {
		t.Errorf("health: bad %q, note %q; want the spool named as the reason", bad, note)
	}
	if got := spoolFullness(sp); got != 1 {
		t.Errorf("forwarder_spool_full_ratio = %g, want 1 on a full disk", got)
	}
	// Another spool error keeps the plain answer.
	other := spoolError(errors.New("spool: append: input/output error"), spool.Stats{MaxBytes: 1 << 30})
	if se := wire.StatusOf(other); se.Status != http.StatusServiceUnavailable || se.Message != "could not spool the batch" {
		t.Errorf("answer to EIO: %d %q, want 503 \"could not spool the batch\"", se.Status, se.Message)
	}
}
