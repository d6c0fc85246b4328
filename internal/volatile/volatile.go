// Package volatile tells the values that vary from one call of a request to the next (ids, nonces, timestamps,
// tokens) from those that identify the request: by their shape (UUIDs, timestamps, random hex and base64
// tokens, IP addresses, emails, JWTs), and by learning which fields of an endpoint's recordings differ between
// them. The mock ignores such values when it matches; replay counts them as noise when it compares.
package volatile

import (
	"net/netip"
	"strings"
	"time"
)

// Shape is the kind of a value that is volatile by its look alone.
type Shape uint8

// The shapes Classify recognises. None is a value that may well identify a request.
const (
	None      Shape = iota
	UUID            // 8-4-4-4-12 hex digits
	Timestamp       // RFC 3339 or a date, an HTTP date, AWS's 20060102T150405Z, Unix seconds, ms, µs or ns
	Token           // a random-looking run of hex (16+) or base64 (20+, mixed case and digits)
	IP              // an IPv4 or IPv6 address
	Email           // name@domain.tld
	JWT             // three base64url parts, the first a JSON header (eyJ...)
)

var shapeNames = [...]string{None: "none", UUID: "uuid", Timestamp: "timestamp", Token: "token", IP: "ip", Email: "email", JWT: "jwt"}

func (s Shape) String() string {
	if int(s) < len(shapeNames) {
		return shapeNames[s]
	}
	return "shape?"
}

// maxClassify bounds the length of a value Classify looks at; longer values are None (they are compared whole).
const maxClassify = 8 << 10

// Classify returns the volatile shape of v, or None. A value made of several parts (an Authorization header,
// a cookie, a sentence) has the shape of its first volatile part. It never panics and costs O(len(v)).
func Classify(v string) Shape {
	if len(v) < 7 || len(v) > maxClassify {
		return None
	}
	if s := whole(v); s != None {
		return s
	}
	// Look at the parts between separators.
	start := -1
	for i := 0; i <= len(v); i++ {
		sep := i == len(v) || isSep(v[i])
		if !sep {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start < len(v) {
			if s := whole(v[start:i]); s != None {
				return s
			}
		}
		start = -1
	}
	return None
}

// isSep reports whether c separates the parts of a compound value. '.', '-', '_', ':' and '/' are not
// separators: they belong inside JWTs, tokens, dates and addresses.
func isSep(c byte) bool {
	switch c {
	case ' ', ',', ';', '&', '"', '\'', '(', ')', '[', ']', '{', '}', '<', '>', '\t', '\n', '\r', '|':
		return true
	case '=':
		return true
	}
	return false
}

// whole classifies v as one value.
func whole(v string) Shape {
	if len(v) < 7 {
		return None
	}
	switch {
	case isUUID(v):
		return UUID
	case isJWT(v):
		return JWT
	case isTimestamp(v):
		return Timestamp
	case isEmail(v):
		return Email
	case isIP(v):
		return IP
	case isToken(v):
		return Token
	}
	return None
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isUUID(v string) bool {
	if len(v) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := v[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !isHex(c) {
			return false
		}
	}
	return true
}

func isB64URL(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return true
}

func isJWT(v string) bool {
	if !strings.HasPrefix(v, "eyJ") || len(v) < 20 {
		return false
	}
	a, rest, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	b, c, ok := strings.Cut(rest, ".")
	return ok && isB64URL(a) && isB64URL(b) && (c == "" || isB64URL(c))
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05",
	"2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05Z07:00", "2006-01-02"}

func isTimestamp(v string) bool {
	// Unix time in seconds (2001-09-09 to 2603), ms, µs or ns.
	if allDigits(v) {
		switch len(v) {
		case 10, 13, 16, 19:
			return v[0] == '1' || v[0] == '2'
		}
		return false
	}
	if len(v) >= 10 && isDigit(v[0]) && isDigit(v[3]) && v[4] == '-' && v[7] == '-' {
		for _, l := range timeLayouts {
			if _, err := time.Parse(l, v); err == nil {
				return true
			}
		}
		return false
	}
	// AWS's X-Amz-Date: 20250211T210754Z.
	if len(v) == 16 && v[8] == 'T' && v[15] == 'Z' && allDigits(v[:8]) && allDigits(v[9:15]) {
		return true
	}
	// HTTP dates: Mon, 02 Jan 2006 15:04:05 GMT.
	if len(v) == 29 && v[3] == ',' {
		_, err := time.Parse(time.RFC1123, v)
		return err == nil
	}
	return false
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isEmail(v string) bool {
	at := strings.IndexByte(v, '@')
	if at < 1 || at != strings.LastIndexByte(v, '@') {
		return false
	}
	dom := v[at+1:]
	dot := strings.LastIndexByte(dom, '.')
	if dot < 1 || dot > len(dom)-3 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c == '/' || c == ':' {
			return false
		}
	}
	return true
}

func isIP(v string) bool {
	if !isDigit(v[0]) && !strings.Contains(v, ":") {
		return false
	}
	_, err := netip.ParseAddr(v)
	return err == nil
}

// isToken reports a random-looking token: 16+ hex digits with both digits and letters (or 32+ of either),
// or 20+ base64 characters mixing upper case, lower case and digits.
func isToken(v string) bool {
	if len(v) < 16 {
		return false
	}
	hex, digits, lower, upper, other := true, 0, 0, 0, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case isDigit(c):
			digits++
		case 'a' <= c && c <= 'z':
			lower++
			if c > 'f' {
				hex = false
			}
		case 'A' <= c && c <= 'Z':
			upper++
			if c > 'F' {
				hex = false
			}
		case c == '+' || c == '/' || c == '-' || c == '_' || c == '=':
			hex = false
			other++
		default:
			return false
		}
	}
	letters := lower + upper
	if hex && (lower == 0 || upper == 0) {
		return (digits > 0 && letters > 0) || len(v) >= 32
	}
	if len(v) < 20 || digits == 0 {
		return false
	}
	// Mixed case base64, or lower case with enough digits (base32, base36 ids).
	return (lower > 0 && upper > 0) || digits*4 >= len(v)-other
}
