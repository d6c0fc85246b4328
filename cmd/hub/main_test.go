package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/wire"
)

// TestBinary runs the real hub: it prints its first keys, takes a batch from
// goproxy's forwarder client with the ingest key, serves it to the read key,
// and exits 0 on SIGTERM.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "-help").CombinedOutput(); err != nil || !strings.Contains(string(out), "keys create") {
		t.Errorf("hub -help: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "-listen", "nope").CombinedOutput(); err == nil || !strings.Contains(string(out), "HUB_LISTEN") {
		t.Errorf("hub -listen nope: %v %s, want an exit naming HUB_LISTEN", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-listen", addr, "-data", t.TempDir())
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	keys := map[string]string{}
	re := regexp.MustCompile(`(ingest|read) key .*:\s+(tw_\S+)`)
	sc := bufio.NewScanner(stdout)
	for len(keys) < 2 && sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			keys[m[1]] = m[2]
		}
	}
	if len(keys) != 2 {
		t.Fatalf("keys printed: %v\nstderr: %s", keys, stderr.String())
	}
	go func() {
		for sc.Scan() {
		}
	}()

	sink, err := wire.NewClient(addr, wire.ClientOptions{Token: keys["ingest"]})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	rec := &capture.Record{Schema: 1, ID: capture.NewID(), Kind: capture.KindHTTP, Direction: capture.DirIn,
		Start: time.Now().UTC(), Labels: capture.Labels{Service: "orders"},
		HTTP: &capture.HTTP{Req: capture.Request{Method: "GET", URL: "http://orders/v1/x", Proto: "HTTP/1.1", Host: "orders"},
			Res: &capture.Response{Status: 200}}}
	var werr error
	for range 300 { // until it listens (15 s)
		if werr = sink.Write(context.Background(), []*capture.Record{rec}); werr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if werr != nil {
		t.Fatalf("write a batch: %v\nstderr: %s", werr, stderr.String())
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/records/"+rec.ID, nil)
	req.Header.Set("Authorization", "Bearer "+keys["read"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got capture.Record
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 200 || got.ID != rec.ID || got.Labels.Tenant != "default" {
		t.Errorf("GET the record: %d %+v", resp.StatusCode, got)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("hub did not exit within 15s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) || !strings.Contains(stderr.String(), `"records":1`) {
		t.Errorf("stderr lacks the stop line with the count:\n%s", stderr.String())
	}
}
