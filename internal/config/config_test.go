package config

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseValues(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"bare", "A=b\n", map[string]string{"A": "b"}},
		{"no final newline", "A=b", map[string]string{"A": "b"}},
		{"empty", "A=\nB=''\n", map[string]string{"A": "", "B": ""}},
		{"export and comments", "# speedctl\n\nexport A=1 # one\n  B=x#y\n", map[string]string{"A": "1", "B": "x#y"}},
		{"single quotes", `A='a b $c "d" \e'` + "\n", map[string]string{"A": `a b $c "d" \e`}},
		{"quote in single quotes", `A='it'\''s'` + "\n", map[string]string{"A": "it's"}},
		{"double quotes", `A="a \$b \"c\" \\ \e"` + "\n", map[string]string{"A": `a $b "c" \ \e`}},
		{"joined words", `A=a'b c'"d"` + "\n", map[string]string{"A": "ab cd"}},
		{"multi-line", "A='{\n  \"x\": 1\n}'\nB=2\n", map[string]string{"A": "{\n  \"x\": 1\n}", "B": "2"}},
		{"backslash", `A=a\ b` + "\n", map[string]string{"A": "a b"}},
		{"last wins", "A=1\nA=2\n", map[string]string{"A": "2"}},
		{"url", "SPEEDSCALE_APP_URL=https://hub.example.com:8443/x?y=1\n", map[string]string{"SPEEDSCALE_APP_URL": "https://hub.example.com:8443/x?y=1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := string(f.Bytes()); got != tc.in {
				t.Errorf("Bytes() = %q, want the input %q", got, tc.in)
			}
			if got := len(f.Names()); got != len(tc.want) {
				t.Errorf("Names() = %q, want %d keys", f.Names(), len(tc.want))
			}
			for k, want := range tc.want {
				if got, ok := f.Get(k); !ok || got != want {
					t.Errorf("Get(%s) = %q, %v; want %q", k, got, ok, want)
				}
			}
			if sh := sourceWithShell(t, tc.in, tc.want); sh != nil {
				for k, want := range tc.want {
					if sh[k] != want {
						t.Errorf("sh sees %s=%q, Parse %q", k, sh[k], want)
					}
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"A=$HOME\n", `2: A: "$" expands`},
		{"A=`id`\n", "expands"},
		{`A="$x"` + "\n", "expands inside double quotes"},
		{"A=~/x\n", "unquoted ~"},
		{"A=b c\n", `A: a shell would run "c" as a command`},
		{"A= b\n", "would run"},
		{"A='b\n", "unterminated '"},
		{"A=\"b\n", `unterminated "`},
		{"echo hi\n", `"echo" is not a KEY=VALUE assignment`},
		{"1A=b\n", "not a KEY=VALUE assignment"},
		{"A=b;rm x\n", `";" is shell syntax`},
		{"A=b\\\nc\n", "backslash at the end of a line"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse([]byte("# first line\n" + tc.in))
			var pe *ParseError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a ParseError containing %q", err, tc.want)
			}
			if pe.Line != 2 {
				t.Errorf("line %d, want 2", pe.Line)
			}
		})
	}
}

func TestSetKeepsTheRest(t *testing.T) {
	in := "# written by hand\nTENANT_ID=old # keep?\n\nA=1\nTENANT_ID=older\nB=2"
	f, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"TENANT_ID", "t-1"}, {"C", "it's $3"}, {"A", "1"}} {
		if err := f.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	want := "# written by hand\n\nA=1\nTENANT_ID=t-1\nB=2\nC='it'\\''s $3'\n"
	if got := string(f.Bytes()); got != want {
		t.Errorf("after Set:\n%s\nwant:\n%s", got, want)
	}
	if err := f.Set("BAD-KEY", "x"); err == nil {
		t.Error("Set(BAD-KEY) succeeded")
	}
	if got := f.Names(); strings.Join(got, " ") != "A TENANT_ID B C" {
		t.Errorf("Names() = %q", got)
	}
}

// TestSaveLoad: Save writes mode 0600 in a 0700 folder, Load reads it
// back, and a shell sourcing the file sees the same values.
func TestSaveLoad(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home", ".speedctl")
	if _, err := Load(home); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "speedctl config set") {
		t.Fatalf("Load of a missing file: %v, want ErrNotFound saying how to create one", err)
	}
	values := map[string]string{
		"SPEEDSCALE_API_KEY":    "k3y'with\"quotes$and`ticks`",
		"SPEEDSCALE_APP_URL":    "https://hub.example.com",
		"SPEEDSCALE_DLP_CONFIG": "{\n  \"id\": \"x\",\n  \"redactlist\": {\"entries\": {\"http\": [\"authorization\"]}}\n}",
		"TENANT_NAME":           "a b\tc",
		"SUB_TENANT_NAME":       "",
		"CLUSTER_NAME":          "~ecs*?[x]",
	}
	f := New(home)
	for _, k := range []string{"SPEEDSCALE_API_KEY", "SPEEDSCALE_APP_URL", "SPEEDSCALE_DLP_CONFIG", "TENANT_NAME", "SUB_TENANT_NAME", "CLUSTER_NAME"} {
		if err := f.Set(k, values[k]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{home: 0o700, filepath.Join(home, FileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %04o", path, fi.Mode().Perm(), err, want)
		}
	}
	g, err := Load(home)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range values {
		if got, _ := g.Get(k); got != want {
			t.Errorf("Load: %s=%q, want %q", k, got, want)
		}
	}
	if sh := sourceWithShell(t, string(g.Bytes()), values); sh != nil {
		for k, want := range values {
			if sh[k] != want {
				t.Errorf("sh sees %s=%q, want %q", k, sh[k], want)
			}
		}
	}
	entries, _ := os.ReadDir(home)
	if len(entries) != 1 {
		t.Errorf("home holds %d files, want only %s", len(entries), FileName)
	}
}

func TestDefaultHome(t *testing.T) {
	env := map[string]string{"HOME": "/home/u"}
	if got, _ := DefaultHome(func(k string) string { return env[k] }); got != "/home/u/.speedctl" {
		t.Errorf("DefaultHome = %q, want /home/u/.speedctl", got)
	}
	env[HomeEnv] = "/etc/speedctl"
	if got, _ := DefaultHome(func(k string) string { return env[k] }); got != "/etc/speedctl" {
		t.Errorf("DefaultHome with %s = %q", HomeEnv, got)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{"abc": "abc", "": "''", "a b": "'a b'", "it's": `'it'\''s'`, "https://x:1/y": "https://x:1/y"} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
}

// sourceWithShell sources text with /bin/sh and returns the values of the
// keys of want as the shell sees them.
func sourceWithShell(t *testing.T, text string, want map[string]string) map[string]string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh to check the file against: %v", err)
	}
	file := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k := range want {
		out, err := exec.Command(sh, "-c", `. "$1" && printf '%s' "$(printf '%s.' "$`+k+`")"`, "sh", file).Output()
		if err != nil {
			t.Fatalf("sh sourcing %q: %v", text, err)
		}
		got[k] = strings.TrimSuffix(string(out), ".")
	}
	return got
}

// FuzzParse: Parse never panics, keeps the text exactly, and what Set
// writes parses back to the same value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"A=b\n", "# c\nexport A='x y'\n", `A="a\$b"` + "\nB=a'b'c", "A=$x", "A='\n'\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := Parse([]byte(in))
		if err != nil {
			return
		}
		if got := string(p.Bytes()); got != in {
			t.Fatalf("Bytes() = %q, want %q", got, in)
		}
		for _, k := range p.Names() {
			v, _ := p.Get(k)
			q := New("")
			if err := q.Set(k, v); err != nil {
				t.Fatalf("Set(%q, %q): %v", k, v, err)
			}
			r, err := Parse(q.Bytes())
			if err != nil {
				t.Fatalf("Parse(%q) of Set's output: %v", q.Bytes(), err)
			}
			if got, _ := r.Get(k); got != v {
				t.Fatalf("round trip of %s: %q, want %q", k, got, v)
			}
		}
	})
}
