package main

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"path/filepath"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/config"
	"github.com/tapwire/tapwire/internal/hub"
	sinkhub "github.com/tapwire/tapwire/internal/sink/hub"
	"github.com/tapwire/tapwire/internal/store/sqlite"
	"github.com/tapwire/tapwire/internal/store/storetest"
)

// adminHubCmd starts a real, empty hub on loopback for the script, with a
// SQLite store in $WORK: `adminhub start` bootstraps it as its first start
// does and sets $HUB, $HUB_ADDR (host:port), $ADMIN_KEY and the tenant default's $DEFAULT_READ_KEY
// and $DEFAULT_INGEST_KEY.
func adminHubCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 || args[0] != "start" {
		ts.Fatalf("usage: adminhub start")
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(ts.MkAbs("adminhub-data"), "hub.db"), sqlite.Options{})
	ts.Check(err)
	keys, err := hub.BootstrapKeys(ctx, st, time.Now())
	if err != nil {
		st.Close()
		ts.Fatalf("bootstrap: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		ts.Fatalf("listen: %v", err)
	}
	srv := httptest.NewUnstartedServer(hub.NewServer(hub.Config{}, st, nil).Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	ts.Defer(func() { srv.Close(); st.Close() })
	ts.Setenv("HUB", srv.URL)
	ts.Setenv("HUB_ADDR", ln.Addr().String())
	ts.Setenv("ADMIN_KEY", keys.Admin)
	ts.Setenv("DEFAULT_READ_KEY", keys.Read)
	ts.Setenv("DEFAULT_INGEST_KEY", keys.Ingest)
}

// forwardCmd delivers one record as the forwarder does, through its hub
// sink, to the config's SPEEDSCALE_APP_URL with the config's
// SPEEDSCALE_API_KEY (or the key named by the second argument):
// `forward CONFIG-DIR [KEY-NAME] [RECORD-NUMBER]`. An error goes to
// stderr, so that `! forward` can check it.
func forwardCmd(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 3 {
		ts.Fatalf("usage: forward CONFIG-DIR [KEY-NAME] [RECORD-NUMBER]")
	}
	f, err := config.Load(ts.MkAbs(args[0]))
	ts.Check(err)
	keyName, n := "SPEEDSCALE_API_KEY", 1
	if len(args) > 1 {
		keyName = args[1]
	}
	if len(args) > 2 {
		_, err := fmt.Sscan(args[2], &n)
		ts.Check(err)
	}
	err = func() error {
		s, err := sinkhub.New(f.Lookup("SPEEDSCALE_APP_URL"), f.Lookup(keyName), sinkhub.Options{Timeout: 10 * time.Second})
		if err != nil {
			return err
		}
		defer s.Close()
		rec := storetest.Rec(n, "checkout", capture.DirIn, "POST", "http://checkout.shop/v1/pay", 201)
		rec.ID = fmt.Sprintf("01950f6e-2a6e-7c4a-9b1e-3f6d2a8c5e%02d", n)
		return s.Write(context.Background(), []*capture.Record{rec})
	}()
	if err != nil {
		fmt.Fprintln(ts.Stderr(), err)
	}
	if (err != nil) != neg {
		if neg {
			ts.Fatalf("forward with %s succeeded", keyName)
		}
		ts.Fatalf("forward with %s: %v", keyName, err)
	}
}
