package envflag

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	var (
		s   string
		n   int
		b   int64
		on  bool
		d   time.Duration
		set Set
	)
	set.String(&s, "S", "s", "")
	set.Int(&n, "N", "n", "")
	set.Bytes(&b, "B", "b", "")
	set.Bool(&on, "ON", "on", "")
	set.Duration(&d, "D", "d", "")
	env := map[string]string{"S": "from env", "N": "7", "B": "16MiB", "ON": "false", "D": "3s"}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := set.Parse(fs, []string{"-n", "8", "-on"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	// The flags win over the environment.
	if s != "from env" || n != 8 || b != 16<<20 || !on || d != 3*time.Second {
		t.Errorf("got %q %d %d %v %v", s, n, b, on, d)
	}

	// A bad variable names itself, its value and what is allowed.
	env = map[string]string{"D": "soon"}
	err := (&set).Parse(flag.NewFlagSet("t", flag.ContinueOnError), nil, func(k string) string { return env[k] })
	var e *Error
	if !errors.As(err, &e) || e.Var != "D" || e.Value != "soon" || err.Error() != `D="soon": want a duration such as 10s or 1m` {
		t.Errorf("bad variable: %v", err)
	}
	// A bad flag says what is allowed, through the flag package.
	var set2 Set
	set2.Bytes(&b, "B", "b", "")
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := set2.Parse(fs, []string{"-b", "lots"}, func(string) string { return "" }); err == nil ||
		!strings.Contains(err.Error(), `invalid value "lots" for flag -b: want a byte count`) {
		t.Errorf("bad flag: %v", err)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "512KiB": 512 << 10, "16 MiB": 16 << 20, "1GB": 1 << 30, "-1": -1, "10B": 10} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-2", "-1KiB", "1.5MiB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q): no error", in)
		}
	}
}
