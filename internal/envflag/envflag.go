// Package envflag binds settings to an environment variable and a flag of
// the same meaning, as goproxy and the forwarder take them: the variable
// first (the deployment guide's way), then the flag over it (for local
// use). A bad value is an *Error naming the variable, the value and what is
// allowed.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Error names the variable, the bad value and what is allowed.
type Error struct {
	Var, Value, Want string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s=%q: %s", e.Var, e.Value, e.Want)
}

// Set is the settings of one command.
//
// Defaults are written once, where a command applies them to its config
// (its setDefaults): the help shows them by binding a second Set the same
// way to a config with its defaults applied (Defaults), so the help cannot
// drift from the code.
type Set struct {
	bs []binding
}

type binding struct {
	env, flag, help string
	placeholder     string // the flag's value as the help names it, by kind ("size"); a back-quoted word in help wins
	set             func(string) error
	show            func() string // the bound value as the help shows a default; "" for none
	isBool          bool
	def             string // the default, from Defaults
}

func (s *Set) add(env, fl, help, placeholder string, isBool bool, set func(string) error, show func() string) {
	s.bs = append(s.bs, binding{env: env, flag: fl, help: help, placeholder: placeholder, set: set, show: show, isBool: isBool})
}

// Defaults takes the help's defaults from d, a Set bound by the same code
// to a config whose defaults are applied: each setting whose value there is
// not zero shows it as "(default V)".
func (s *Set) Defaults(d *Set) {
	for i := range s.bs {
		if i < len(d.bs) && d.bs[i].env == s.bs[i].env {
			s.bs[i].def = d.bs[i].show()
		}
	}
}

// String binds *p. Its help should name the value with a back-quoted word,
// as the flag package reads it ("`address` to listen on" shows
// "-listen address"); otherwise the help calls it a string.
func (s *Set) String(p *string, env, fl, help string) {
	s.add(env, fl, help, "string", false, func(v string) error { *p = v; return nil }, func() string { return *p })
}

// Func binds a setting of its own syntax: set parses a value (an *Error
// for a bad one), show gives the current value for the help ("" for none).
// As for String, a back-quoted word of help names the value.
func (s *Set) Func(env, fl, help string, set func(string) error, show func() string) {
	s.add(env, fl, help, "value", false, set, show)
}

// Int binds *p, a whole number, named n unless a back-quoted word of help
// names it ("`port`").
func (s *Set) Int(p *int, env, fl, help string) {
	s.add(env, fl, help, "n", false, func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return &Error{env, v, "want a whole number"}
		}
		*p = n
		return nil
	}, func() string {
		if *p == 0 {
			return ""
		}
		return strconv.Itoa(*p)
	})
}

// Bytes binds *p, a byte count: 1048576, 512KiB, 16MiB, 1GiB (KB, MB and
// GB are read as their binary units too), or -1. The help names it a size.
func (s *Set) Bytes(p *int64, env, fl, help string) {
	s.add(env, fl, help, "size", false, func(v string) error {
		n, err := ParseBytes(v)
		if err != nil {
			return &Error{env, v, "want a byte count such as 1048576, 512KiB or 16MiB"}
		}
		*p = n
		return nil
	}, func() string {
		if *p == 0 {
			return ""
		}
		return FormatBytes(*p)
	})
}

// Bool binds *p: true or false (and strconv.ParseBool's other spellings);
// the flag may be given without a value.
func (s *Set) Bool(p *bool, env, fl, help string) {
	s.add(env, fl, help, "", true, func(v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return &Error{env, v, "want true or false"}
		}
		*p = b
		return nil
	}, func() string {
		if !*p {
			return ""
		}
		return "true"
	})
}

// Duration binds *p, a duration that is not negative. The help names it a
// duration.
func (s *Set) Duration(p *time.Duration, env, fl, help string) {
	s.add(env, fl, help, "duration", false, func(v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			return &Error{env, v, "want a duration such as 10s or 1m"}
		}
		*p = d
		return nil
	}, func() string {
		if *p == 0 {
			return ""
		}
		return p.String()
	})
}

// Parse sets every variable getenv gives (an *Error for a bad value), then
// parses args with fs, on which it defines one flag per setting whose help
// names the variable. A bad flag value is reported by fs with what is
// allowed.
func (s *Set) Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := s.Env(getenv); err != nil {
		return err
	}
	s.Flags(fs)
	return fs.Parse(args)
}

// Env sets every variable getenv gives; an *Error for a bad value.
func (s *Set) Env(getenv func(string) string) error {
	for _, b := range s.bs {
		if v := getenv(b.env); v != "" {
			if err := b.set(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Flags defines on fs one flag per setting, whose help names the variable
// and the default (see Defaults). The flag's placeholder (-listen address,
// -body-limit size) is the first back-quoted word of the help, as the flag
// package reads it; a help without one gets its kind's word in the
// parentheses of the default: "(size, default 1MiB)".
func (s *Set) Flags(fs *flag.FlagSet) {
	for _, b := range s.bs {
		set := func(v string) error {
			if err := b.set(v); err != nil {
				if e, ok := errors.AsType[*Error](err); ok {
					return errors.New(e.Want)
				}
				return err
			}
			return nil
		}
		help := b.help
		named := b.isBool || strings.Contains(help, "`")
		own := strings.Contains(help, "(default ") // a default that depends on other settings says so itself
		switch {
		case own && !named:
			help = strings.Replace(help, "(default ", "(`"+b.placeholder+"`, default ", 1)
		case own:
		case b.def != "" && named:
			help += " (default " + b.def + ")"
		case b.def != "":
			help += " (`" + b.placeholder + "`, default " + b.def + ")"
		case !named:
			help += " (`" + b.placeholder + "`)"
		}
		help += " [$" + b.env + "]"
		if b.isBool {
			fs.BoolFunc(b.flag, help, set)
		} else {
			fs.Func(b.flag, help, set)
		}
	}
}

// ParseBytes reads a byte count: a whole number with an optional unit
// (B, KiB, MiB, GiB, or KB, MB, GB read as the same binary units), or -1.
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n == -1 && mult == 1 {
		return -1, nil
	}
	if n < 0 {
		return 0, errors.New("negative")
	}
	return n * mult, nil
}

// FormatBytes writes a byte count as ParseBytes reads it, in the largest
// binary unit that divides it: 1MiB, 512KiB, 1536 (and -1).
func FormatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n > 0 && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Bind returns the Set of c's settings, bound by bind, whose help shows the
// defaults of d: a config of the same type with its defaults applied.
func Bind[T any](c, d *T, bind func(*Set, *T)) *Set {
	var set, defs Set
	bind(&set, c)
	bind(&defs, d)
	set.Defaults(&defs)
	return &set
}
