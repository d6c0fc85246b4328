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

// TestDefaultsInHelp: the help shows each default from a second Set bound
// to a config with its defaults applied, in the setting's own syntax; a
// help that states its own conditional default keeps it.
func TestDefaultsInHelp(t *testing.T) {
	type cfg struct {
		name  string
		size  int64
		n     int
		wait  time.Duration
		on    bool
		other string
	}
	bind := func(s *Set, c *cfg) {
		s.String(&c.name, "X_NAME", "name", "a name")
		s.Bytes(&c.size, "X_SIZE", "size", "a size")
		s.Int(&c.n, "X_N", "n", "a count")
		s.Duration(&c.wait, "X_WAIT", "wait", "a wait")
		s.Bool(&c.on, "X_ON", "on", "a switch")
		s.String(&c.other, "X_OTHER", "other", "depends (default a when b)")
	}
	var set, defs Set
	var c cfg
	bind(&set, &c)
	bind(&defs, &cfg{name: "tapwire", size: 32 << 20, n: 4, wait: 20 * time.Second, on: true, other: "zzz"})
	set.Defaults(&defs)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var help strings.Builder
	fs.SetOutput(&help)
	if err := set.Parse(fs, []string{"-size", "1KiB"}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	fs.PrintDefaults()
	for _, want := range []string{"a name (string, default tapwire) [$X_NAME]", "a size (size, default 32MiB) [$X_SIZE]", "a count (n, default 4) [$X_N]",
		"a wait (duration, default 20s) [$X_WAIT]", "a switch (default true) [$X_ON]", "depends (string, default a when b) [$X_OTHER]"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, help.String())
		}
	}
	if c.size != 1024 {
		t.Errorf("size = %d, want 1024", c.size)
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{1 << 20, "1MiB"}, {512 << 10, "512KiB"}, {1536, "1536"}, {3 << 30, "3GiB"}, {-1, "-1"}, {0, "0"}, {1, "1"}} {
		if got := FormatBytes(tt.n); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
		if tt.n >= 0 || tt.n == -1 {
			if back, err := ParseBytes(FormatBytes(tt.n)); err != nil || back != tt.n {
				t.Errorf("ParseBytes(FormatBytes(%d)) = %d, %v", tt.n, back, err)
			}
		}
	}
}

// TestPlaceholders: each flag names its value, by the help's back-quoted
// word or else by its kind, never the flag package's "value".
func TestPlaceholders(t *testing.T) {
	var (
		str, named string
		n, port    int
		size       int64
		wait       time.Duration
		on         bool
		set, defs  Set
	)
	set.String(&str, "X_STR", "str", "a plain string")
	set.String(&named, "X_ADDR", "addr", "`address` to listen on")
	set.Int(&n, "X_N", "n", "batches at once")
	set.Int(&port, "X_PORT", "port", "metrics `port`")
	set.Bytes(&size, "X_SIZE", "size", "bound of the queue")
	set.Duration(&wait, "X_WAIT", "wait", "how long to wait")
	set.Bool(&on, "X_ON", "on", "a switch")
	set.Func("X_FUNC", "func", "its own syntax", func(string) error { return nil }, func() string { return "" })
	var dn, dport int
	var dstr, dnamed string
	var dsize int64 = 1 << 20
	var dwait time.Duration
	var don bool
	defs.String(&dstr, "X_STR", "str", "")
	defs.String(&dnamed, "X_ADDR", "addr", "")
	defs.Int(&dn, "X_N", "n", "")
	defs.Int(&dport, "X_PORT", "port", "")
	defs.Bytes(&dsize, "X_SIZE", "size", "")
	defs.Duration(&dwait, "X_WAIT", "wait", "")
	defs.Bool(&don, "X_ON", "on", "")
	set.Defaults(&defs)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	set.Flags(fs)
	for _, tt := range []struct {
		flag, name, usage string
	}{
		{"str", "string", "a plain string (string) [$X_STR]"},
		{"addr", "address", "address to listen on [$X_ADDR]"},
		{"n", "n", "batches at once (n) [$X_N]"},
		{"port", "port", "metrics port [$X_PORT]"},
		{"size", "size", "bound of the queue (size, default 1MiB) [$X_SIZE]"},
		{"wait", "duration", "how long to wait (duration) [$X_WAIT]"},
		{"on", "", "a switch [$X_ON]"},
		{"func", "value", "its own syntax (value) [$X_FUNC]"},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			name, usage := flag.UnquoteUsage(fs.Lookup(tt.flag))
			if name != tt.name || usage != tt.usage {
				t.Errorf("got %q, %q; want %q, %q", name, usage, tt.name, tt.usage)
			}
		})
	}
}
