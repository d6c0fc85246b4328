package markdown

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Section names, as they appear between "### " and " ###".
const (
	secRequest   = "REQUEST"
	secResponse  = "RESPONSE"
	secSignature = "SIGNATURE"
	secMetadata  = "METADATA"
	secInternal  = "INTERNAL - DO NOT MODIFY"
)

// block is one fenced block of a section: its content (the lines between
// the fences, joined by "\n"), the info string after the opening fence, and
// the line of the file where the content starts.
type block struct {
	info    string
	content string
	line    int
}

// section is one "### NAME ###" part of a file.
type section struct {
	name   string
	line   int
	blocks []block
}

// file is a recording split into its sections, by name. A name that
// appears twice is an error.
type file struct {
	sections map[string]*section
}

// sectionName returns the name of a "### NAME ###" line.
func sectionName(line string) (string, bool) {
	s := strings.TrimRight(line, " \t\r")
	if !strings.HasPrefix(s, "### ") || !strings.HasSuffix(s, " ###") || len(s) < 8 {
		return "", false
	}
	return strings.TrimSpace(s[4 : len(s)-4]), true
}

// fenceLen returns the number of backticks that open a fence on line, or
// 0 when the line is not a fence (fewer than three).
func fenceLen(line string) int {
	n := 0
	for n < len(line) && line[n] == '`' {
		n++
	}
	if n < 3 {
		return 0
	}
	return n
}

// closes reports whether line closes a fence opened with n backticks: only
// backticks, at least n of them, white space around them allowed.
func closes(line string, n int) bool {
	s := strings.TrimSpace(line)
	return len(s) >= n && strings.Trim(s, "`") == ""
}

// parse splits b into sections of fenced blocks. Text outside the blocks
// (blank lines, prose) is ignored; sections of other names are kept but not
// read.
func parse(b []byte, name string) (*file, error) {
	f := &file{sections: map[string]*section{}}
	lines := strings.Split(string(bytes.TrimPrefix(b, []byte("\ufeff"))), "\n")
	var cur *section
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if n, ok := sectionName(line); ok {
			if f.sections[n] != nil {
				return nil, fmt.Errorf("%s: line %d: %w: section %q repeated", name, i+1, ErrBad, n)
			}
			cur = &section{name: n, line: i + 1}
			f.sections[n] = cur
			continue
		}
		n := fenceLen(strings.TrimLeft(line, " "))
		if n == 0 {
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("%s: line %d: %w: a block before the first section", name, i+1, ErrBad)
		}
		open := i
		info := strings.TrimSpace(strings.TrimLeft(line, " ")[n:])
		j := i + 1
		for j < len(lines) && !closes(lines[j], n) {
			j++
		}
		if j == len(lines) {
			return nil, fmt.Errorf("%s: line %d: %w: block not closed", name, open+1, ErrBad)
		}
		cur.blocks = append(cur.blocks, block{info: info, content: strings.Join(lines[i+1:j], "\n"), line: i + 2})
		i = j
	}
	if len(f.sections) == 0 {
		return nil, fmt.Errorf("%s: %w: no ### SECTION ### line", name, ErrNotRecording)
	}
	// Text that is not a body becomes strings of the vendor's JSON form,
	// which holds only UTF-8: an invalid byte becomes U+FFFD, as
	// encoding/json writes it, so that it reads back the same.
	for _, sec := range f.sections {
		for i := range sec.blocks {
			if i == 1 && (sec.name == secRequest || sec.name == secResponse) {
				continue
			}
			sec.blocks[i].content = validUTF8(sec.blocks[i].content)
		}
	}
	return f, nil
}

// validUTF8 replaces each byte of s that is not UTF-8 by U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// blockOf returns the n-th block of the named section, or nil.
func (f *file) blockOf(name string, n int) *block {
	s := f.sections[name]
	if s == nil || n >= len(s.blocks) {
		return nil
	}
	return &s.blocks[n]
}

// escape writes s for a header value or a tag: a backslash, a comma, a new
// line and a carriage return are written \\, \,, \n and \r; and, in a tag
// key, = is written \=.
func escape(s string, key bool) string {
	if !strings.ContainsAny(s, "\\,\n\r=") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', ',':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '=':
			if key {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// splitList splits a header value at the commas that are not escaped,
// removing the one space the writer puts after each comma, and unescapes
// each part.
func splitList(s string) []string {
	parts := splitRaw(s)
	for i, p := range parts {
		parts[i] = unescape(p)
	}
	return parts
}

// splitRaw splits s at the commas that are not escaped, removing the one
// space after each, and leaves the parts escaped.
func splitRaw(s string) []string {
	var parts []string
	last := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case ',':
			parts = append(parts, s[last:i])
			if i+1 < len(s) && s[i+1] == ' ' {
				i++
			}
			last = i + 1
		}
	}
	return append(parts, s[last:])
}

// unescape undoes escape. A backslash before another character, or at the
// end, is kept as it is, so that a hand-written backslash survives.
func unescape(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch d := s[i]; d {
		case '\\', ',', '=':
			b.WriteByte(d)
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			b.WriteByte('\\')
			b.WriteByte(d)
		}
	}
	return b.String()
}

// cutKey splits an escaped "key=value" tag at the first = that is not
// escaped, before unescaping.
func cutKey(s string) (key, value string, ok bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '=':
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
