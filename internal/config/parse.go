package config

import (
	"fmt"
	"strings"
)

// ParseError says where a config file stops being the subset of shell
// that Parse understands.
type ParseError struct {
	Line int // 1-based
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%d: %s", e.Line, e.Msg) }

// Parse reads the text of a config file. It understands the part of the
// POSIX shell language that KEY=VALUE files use, and gives the values a
// shell sourcing the file would see:
//
//   - blank lines and # comments;
//   - KEY=VALUE, optionally after `export `, with a trailing # comment;
//   - values bare, in '...' (literal, may span lines), in "..." (\ escapes
//     $ ` " \ and newline), or several of these joined;
//   - a backslash outside quotes escapes the next character.
//
// What it cannot interpret without running a shell is an error naming
// the line: $ and ` expansions, an unquoted ~, a second word after the
// value (which a shell would run as a command), anything but an
// assignment.
func Parse(data []byte) (*File, error) {
	p := &parser{s: string(data), line: 1}
	f := &File{}
	for p.i < len(p.s) {
		start := p.i
		e, err := p.entry()
		if err != nil {
			return nil, err
		}
		e.raw = p.s[start:p.i]
		f.entries = append(f.entries, e)
	}
	return f, nil
}

type parser struct {
	s    string
	i    int
	line int
}

func (p *parser) errorf(format string, args ...any) error {
	return &ParseError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// entry parses one logical line, through its newline.
func (p *parser) entry() (entry, error) {
	p.skipBlanks()
	if p.i >= len(p.s) {
		return entry{}, nil
	}
	switch p.s[p.i] {
	case '\n':
		p.i++
		p.line++
		return entry{}, nil
	case '#':
		p.restOfLine()
		return entry{}, nil
	}
	if strings.HasPrefix(p.s[p.i:], "export") && p.i+6 < len(p.s) && (p.s[p.i+6] == ' ' || p.s[p.i+6] == '\t') {
		p.i += 6
		p.skipBlanks()
	}
	start := p.i
	for p.i < len(p.s) && isNameByte(p.s[p.i], p.i == start) {
		p.i++
	}
	key := p.s[start:p.i]
	if key == "" || p.i >= len(p.s) || p.s[p.i] != '=' {
		word := p.s[start:p.i]
		if word == "" {
			word = strings.SplitN(p.s[p.i:], "\n", 2)[0]
		}
		return entry{}, p.errorf("%q is not a KEY=VALUE assignment", truncate(word))
	}
	p.i++ // '='
	value, err := p.value(key)
	if err != nil {
		return entry{}, err
	}
	p.skipBlanks()
	if p.i < len(p.s) && p.s[p.i] != '\n' && p.s[p.i] != '#' {
		return entry{}, p.errorf("%s: a shell would run %q as a command; quote the whole value", key, truncate(strings.SplitN(p.s[p.i:], "\n", 2)[0]))
	}
	p.restOfLine()
	return entry{key: key, value: value}, nil
}

// value parses the word after '=' up to unquoted whitespace or the end.
func (p *parser) value(key string) (string, error) {
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case ' ', '\t', '\n':
			return b.String(), nil
		case '\'':
			end := strings.IndexByte(p.s[p.i+1:], '\'')
			if end < 0 {
				return "", p.errorf("%s: unterminated '", key)
			}
			part := p.s[p.i+1 : p.i+1+end]
			b.WriteString(part)
			p.line += strings.Count(part, "\n")
			p.i += end + 2
		case '"':
			if err := p.doubleQuoted(key, &b); err != nil {
				return "", err
			}
		case '\\':
			if p.i+1 >= len(p.s) || p.s[p.i+1] == '\n' {
				return "", p.errorf("%s: a backslash at the end of a line continues it; not supported here", key)
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case '$', '`':
			return "", p.errorf("%s: %q expands in a shell; put the value in single quotes", key, string(c))
		case '~':
			return "", p.errorf("%s: an unquoted ~ is the home folder in a shell; quote it or write the path out", key)
		case ';', '&', '|', '<', '>', '(', ')':
			return "", p.errorf("%s: %q is shell syntax here; quote the value", key, string(c))
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return b.String(), nil
}

func (p *parser) doubleQuoted(key string, b *strings.Builder) error {
	startLine := p.line
	p.i++ // opening "
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case '"':
			p.i++
			return nil
		case '\\':
			if p.i+1 < len(p.s) {
				switch n := p.s[p.i+1]; n {
				case '$', '`', '"', '\\':
					b.WriteByte(n)
					p.i += 2
					continue
				case '\n':
					p.line++
					p.i += 2
					continue
				}
			}
			b.WriteByte(c)
			p.i++
		case '$', '`':
			return p.errorf("%s: %q expands inside double quotes; use single quotes", key, string(c))
		case '\n':
			p.line++
			b.WriteByte(c)
			p.i++
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return (&parser{line: startLine}).errorf("%s: unterminated \"", key)
}

func (p *parser) skipBlanks() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// restOfLine skips to just after the next newline, or to the end.
func (p *parser) restOfLine() {
	if j := strings.IndexByte(p.s[p.i:], '\n'); j >= 0 {
		p.i += j + 1
		p.line++
		return
	}
	p.i = len(p.s)
}

func isNameByte(c byte, first bool) bool {
	return c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || !first && c >= '0' && c <= '9'
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
