package main

import (
	"flag"
	"os"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tapwire/tapwire/internal/ecs/ecstest"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/script/*.txtar")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"speedctl": func() { os.Exit(speedctl()) },
	})
}

// TestScripts runs the command-line tests in testdata/script: each is a
// txtar archive of speedctl commands, their inputs and the expected
// output (golden files, refreshed with go test -update).
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		UpdateScripts:       *update,
		RequireExplicitExec: true,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"awsvalid": awsValid,
			"mode":     fileMode,
			"hub":      hubCmd,
			"har":      harValid,
			"adminhub": adminHubCmd, // cmd_init_test.go
			"forward":  forwardCmd,  // cmd_init_test.go
		},
	})
}

// awsValid checks a file against the AWS SDK's input types:
// awsvalid register|forwarder FILE.
func awsValid(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: awsvalid register|forwarder FILE")
	}
	data := []byte(ts.ReadFile(args[1]))
	var err error
	switch args[0] {
	case "register":
		err = ecstest.RegisterTaskDefinition(data)
	case "forwarder":
		err = ecstest.Forwarder(data)
	default:
		ts.Fatalf("awsvalid: unknown kind %q", args[0])
	}
	if neg {
		if err == nil {
			ts.Fatalf("%s is valid %s input", args[1], args[0])
		}
		return
	}
	ts.Check(err)
}

// fileMode checks a file's permission bits: mode FILE 0600.
func fileMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mode FILE PERM")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := uint64(fi.Mode().Perm()); (got == want) == neg {
		ts.Fatalf("%s has mode %04o, want %s%04o", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}
