package redact

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"sync/atomic"
)

// maxDepth bounds the nesting the JSON walker follows; deeper input is
// left to the patterns.
const maxDepth = 512

// editor builds a changed copy of data lazily: replace copies what came
// before the span, then the token.
type editor struct {
	data []byte
	out  []byte
	last int // data[:last] is in out (or unchanged)
	done bool
}

func (e *editor) replace(start, end int, token []byte) {
	e.out = append(e.out, e.data[e.last:start]...)
	e.out = append(e.out, token...)
	e.last = end
	e.done = true
}

// result returns the changed copy, or nil if nothing changed.
func (e *editor) result() []byte {
	if !e.done {
		return nil
	}
	return append(e.out, e.data[e.last:]...)
}

// redactJSON replaces the values of named fields at any depth, keeping
// their JSON type: a string becomes the quoted token, a number 0, an
// object {} and an array [] (their contents gone); true, false and null
// are kept. When the card pattern is on, a number that is a card number
// becomes 0. It tolerates input that is not JSON or is cut short (a body
// truncated at the capture cap): it follows the structure as far as it can
// and skips what it does not understand (a named value that is neither
// becomes the quoted token). It returns nil when nothing changed.
func (r *Redactor) redactJSON(data []byte, h *hits) []byte {
	e := editor{data: data}
	type frame struct{ obj, wantKey bool }
	var stackBuf [32]frame
	stack := stackBuf[:0]
	over := 0     // levels deeper than maxDepth, not followed
	pending := -1 // rule whose field name introduced the next value
	// strPatterns redacts patterns inside the string token data[i:end].
	strPatterns := func(i, end int, closed bool) {
		if !r.anyPattern() {
			return
		}
		inner := data[i+1 : end]
		if closed {
			inner = data[i+1 : end-1]
		}
		if out := r.patternsIn(inner, true, h); out != nil {
			e.replace(i+1, i+1+len(inner), out)
		}
	}
	for i := 0; i < len(data); {
		c := data[i]
		switch walkClass[c] {
		case walkSkip:
			i++
		case walkComma:
			if n := len(stack); n > 0 && stack[n-1].obj {
				stack[n-1].wantKey = true
			}
			pending = -1
			i++
		case walkOpen:
			if pending >= 0 {
				end := skipComposite(data, i)
				empty := emptyObject
				if c == '[' {
					empty = emptyArray
				}
				if !bytes.Equal(data[i:end], empty) {
					e.replace(i, end, empty)
					h.add(pending)
				}
				pending = -1
				i = end
				continue
			}
			if len(stack) >= maxDepth {
				over++
			} else {
				stack = append(stack, frame{obj: c == '{', wantKey: c == '{'})
			}
			i++
		case walkClose:
			if over > 0 {
				over--
			} else if n := len(stack); n > 0 {
				stack = stack[:n-1]
			}
			pending = -1
			i++
		case walkQuote:
			// One pass finds the string's end and tells whether it holds
			// an escape and a byte a pattern can begin at: most strings of
			// a JSON body hold neither, and are not read again.
			end, closed, class := r.scanStr(data, i)
			if n := len(stack); over == 0 && n > 0 && stack[n-1].obj && stack[n-1].wantKey {
				stack[n-1].wantKey = false
				pending = -1
				if closed && r.readsFields() {
					if rule, ok := r.fieldRule(data[i+1:end-1], class&classEscape != 0); ok {
						pending = rule
					}
				}
				if class&classStart != 0 {
					strPatterns(i, end, closed)
				}
				i = end
				continue
			}
			if pending >= 0 {
				if !bytes.Equal(data[i:end], r.quoted[pending]) {
					e.replace(i, end, r.quoted[pending])
					h.add(pending)
				}
				pending = -1
			} else if class&classStart != 0 {
				strPatterns(i, end, closed)
			}
			i = end
		case walkToken:
			end := i + 1
			for end < len(data) && (isDigit(data[end]) || isLetter(data[end]) || data[end] == '.' || data[end] == '+' || data[end] == '-') {
				end++
			}
			switch tok := data[i:end]; {
			case pending >= 0:
				switch {
				case string(tok) == "true" || string(tok) == "false" || string(tok) == "null" || string(tok) == "0":
					// nothing to hide, or already redacted
				case c == '-' || isDigit(c):
					e.replace(i, end, zero)
					h.add(pending)
				default: // not JSON
					e.replace(i, end, r.quoted[pending])
					h.add(pending)
				}
				pending = -1
			case r.card >= 0 && isCard(tok):
				e.replace(i, end, zero)
				h.add(r.card)
			}
			i = end
		default:
			i++ // not JSON: skip it
		}
	}
	return e.result()
}

// walkClass sorts the bytes redactJSON meets between values, so that its
// switch is one table jump rather than a row of comparisons.
var walkClass = func() (t [256]uint8) {
	for _, c := range []byte(" \t\r\n:") {
		t[c] = walkSkip
	}
	t[','] = walkComma
	t['{'], t['['] = walkOpen, walkOpen
	t['}'], t[']'] = walkClose, walkClose
	t['"'] = walkQuote
	for c := range 256 {
		if c == '-' || isDigit(byte(c)) || isLetter(byte(c)) {
			t[c] = walkToken
		}
	}
	return t
}()

// Classes of walkClass; 0 is a byte that is not JSON.
const (
	walkOther = iota
	walkSkip  // white space, ':'
	walkComma
	walkOpen  // '{', '['
	walkClose // '}', ']'
	walkQuote
	walkToken // a number or a literal: '-', digits, letters
)

// The values a named field's value becomes, by its JSON type.
var (
	emptyObject = []byte("{}")
	emptyArray  = []byte("[]")
	zero        = []byte("0")
)

// fieldRule returns the rule that names the JSON key whose raw bytes (as
// written, between the quotes) are raw; escaped says whether they hold a
// backslash.
func (r *Redactor) fieldRule(raw []byte, escaped bool) (int, bool) {
	if escaped {
		return ruleFor(r, kindField, keyOf(raw))
	}
	// A JSON API's bodies repeat the same few dozen keys: deciding one
	// (normalised, then looked up in the rules and matched against the
	// credential names and suffixes) was 40% of redacting such a body.
	return r.cachedRule(r.keys, kindField, raw)
}

// cachedRule is ruleFor for a name of kind as it is spelt (no escape to
// decode), through c, the cache of the verdicts on names of that kind.
func (r *Redactor) cachedRule(c *keyCache, kind nameKind, name []byte) (int, bool) {
	if len(name) > maxCachedKey {
		return ruleFor(r, kind, name)
	}
	slot := &c.slots[keySlot(name)]
	if v := slot.Load(); v != nil && v.key == string(name) {
		return v.rule, v.ok
	}
	rule, ok := ruleFor(r, kind, name)
	slot.Store(&keyVerdict{key: string(name), rule: rule, ok: ok})
	return rule, ok
}

// keyCache remembers cachedRule's answers by the name's bytes: one verdict a
// slot, the last key whose hash chose it (a key met again after another
// took its slot is decided again: keys made to share slots only make
// redaction as slow as it is without the cache). Safe for concurrent use.
type keyCache struct {
	slots [keySlots]atomic.Pointer[keyVerdict]
}

// keySlot is a key's slot: a hash of its length and its first and last
// eight bytes (a general hash of the whole key cost most of what the cache
// saved; the key itself is compared).
func keySlot(k []byte) int {
	var x uint64
	if n := len(k); n >= 8 {
		x = binary.LittleEndian.Uint64(k) ^ binary.LittleEndian.Uint64(k[n-8:])<<7
	} else {
		for _, c := range k {
			x = x<<8 | uint64(c)
		}
	}
	x = (x ^ uint64(len(k))) * 0x9e3779b97f4a7c15
	return int(x >> (64 - keyBits))
}

type keyVerdict struct {
	key  string
	rule int
	ok   bool
}

const (
	keyBits      = 9
	keySlots     = 1 << keyBits
	maxCachedKey = 64 // longer keys are decided each time
)

// keyOf returns a JSON key's text: its raw bytes, or the unescaped string
// when it holds escapes.
func keyOf(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	var s string
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	if json.Unmarshal(quoted, &s) != nil {
		return string(raw)
	}
	return s
}

// Classes of a JSON string's bytes (Redactor.strClass).
const (
	classQuote  = 1 << iota // "
	classEscape             // \
	classStart              // a byte a pattern can begin at (Redactor.starts)
)

// scanStr is scanString that also returns the classes of the bytes it
// passed, the closing quote included: classEscape when the string holds a
// backslash, classStart when it holds a byte of r.starts, escaped or not
// (a superset of what r.skip finds in its contents: FuzzScanStr).
func (r *Redactor) scanStr(data []byte, i int) (end int, closed bool, class uint8) {
	cls := &r.strClass
	for j := i + 1; j < len(data); j++ {
		c := cls[data[j]]
		if c == 0 {
			continue
		}
		class |= c
		if c&classQuote != 0 {
			return j + 1, true, class
		}
		if c&classEscape != 0 {
			j++
			if j < len(data) {
				class |= cls[data[j]] & classStart
			}
		}
	}
	return len(data), false, class
}

// scanString returns the index after the string starting at data[i] (a
// quote), and whether it was closed; an unclosed string runs to the end.
func scanString(data []byte, i int) (int, bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(data), false
}

// skipComposite returns the index after the object or array starting at
// data[i], or len(data) if it is not closed.
func skipComposite(data []byte, i int) int {
	depth := 0
	for j := i; j < len(data); j++ {
		switch data[j] {
		case '"':
			end, _ := scanString(data, j)
			j = end - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(data)
}

func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }

// isCard reports whether a JSON number token is a card number: 13 to 19
// digits, nothing else, a first digit of 2 to 6, passing the Luhn check.
func isCard(tok []byte) bool {
	if len(tok) < 13 || len(tok) > 19 || tok[0] < '2' || tok[0] > '6' {
		return false
	}
	for _, c := range tok {
		if !isDigit(c) {
			return false
		}
	}
	return luhn(tok)
}

// luhn checks the Luhn sum of a string of digits.
func luhn(digits []byte) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// patterns replaces card numbers, e-mail addresses and bearer tokens in b
// with the token of the rule that lists the pattern. It returns nil when
// nothing changed.
func (r *Redactor) patterns(b []byte, h *hits) []byte { return r.patternsIn(b, false, h) }

// patternsIn is patterns; with inJSON, b is the inside of a JSON string as
// it is written, and a match never starts inside an escape (\b, \u0041):
// the token written there would leave a backslash before it, and so break
// the JSON.
//
// A text that changed is scanned again until it stays the same, so that
// redacting twice gives what redacting once gave: a match can hide
// another that only shows once it is replaced ("4111111111111111
// 4111111111111111" is read as one 32-digit number, not a card, until an
// address's local part takes the second group). Text without a match is
// scanned once.
func (r *Redactor) patternsIn(b []byte, inJSON bool, h *hits) []byte {
	if r.skip(b, 0) == len(b) {
		return nil // no byte a pattern begins with: most strings of a JSON body
	}
	if len(b) <= 128 && r.email < 0 && r.bearer < 0 && fewDigits(b) {
		return nil // too few digits for a card: most header values (a date, a length, an address)
	}
	if inJSON && bytes.IndexByte(b, '\\') < 0 {
		// Without a backslash there is no escape to keep a match out of:
		// the same scan as plain text's, without looking back for one at
		// every digit (FuzzPatternsEscapeFree).
		inJSON = false
	}
	out := r.patternsOnce(b, inJSON, h)
	for i := 0; out != nil && i < 4; i++ {
		again := r.patternsOnce(out, inJSON, h)
		if again == nil {
			break
		}
		out = again
	}
	return out
}

// patternsOnce is one scan of patternsIn.
func (r *Redactor) patternsOnce(b []byte, inJSON bool, h *hits) []byte {
	e := editor{data: b}
	inEscape := func(i int) bool { return inJSON && escapeEnd(b, i) != i }
	// boundary: b[i] does not continue a word; the end of an escape (the n
	// of \n) is not a letter of the text.
	boundary := func(i int) bool { return i == 0 || !isAlnum(b[i-1]) || inEscape(i-1) }
	for i := 0; i < len(b); {
		i = r.skip(b, i)
		if i == len(b) {
			break
		}
		c := b[i]
		if r.card >= 0 && isDigit(c) && boundary(i) && !inEscape(i) {
			if end, ok := cardAt(b, i); ok {
				end = r.emailTail(b, end)
				e.replace(i, end, r.tokens[r.card])
				h.add(r.card)
				i = end
				continue
			}
			for i < len(b) && isDigit(b[i]) {
				i++
			}
			continue
		}
		if r.email >= 0 && c == '@' {
			floor := e.last
			if inJSON {
				// The local part starts after the escape it would begin in.
				s := i
				for s > floor && isLocal(b[s-1]) {
					s--
				}
				floor = max(floor, escapeEnd(b, s))
			}
			if s, end, ok := emailAround(b, i, floor); ok {
				e.replace(s, end, r.tokens[r.email])
				h.add(r.email)
				i = end
				continue
			}
		}
		if r.bearer >= 0 && (c == 'B' || c == 'b') && boundary(i) && !inEscape(i) {
			if s, end, ok := bearerAt(b, i); ok {
				end = r.emailTail(b, end)
				e.replace(s, end, r.tokens[r.bearer])
				h.add(r.bearer)
				i = end
				continue
			}
		}
		i++
	}
	return e.result()
}

// emailTail returns where a match that ends at b[end] really ends: when
// the e-mail rule is on and "@domain" follows, the match is the local part
// of an address, and the domain goes with it. Left behind, it would make
// the token written in the match's place the local part of a new address,
// and a second pass would redact again.
func (r *Redactor) emailTail(b []byte, end int) int {
	if r.email < 0 {
		return end
	}
	return chainEnd(b, end)
}

// chainEnd returns the end of the "@domain" parts that follow b[end], or
// end when none does.
func chainEnd(b []byte, end int) int {
	for end < len(b) && b[end] == '@' {
		next, ok := domainEnd(b, end+1)
		if !ok {
			break
		}
		end = next
	}
	return end
}

// skip returns the index of the first byte at or after i where a pattern
// may begin, or len(b): eight bytes a step while none of them can.
func (r *Redactor) skip(b []byte, i int) int {
	if len(b)-i >= 64 && r.card >= 0 && r.email < 0 && r.bearer < 0 {
		// With the digits alone to find (the card pattern alone, as in
		// the default rules): 32 bytes a step, tested as four words
		// (SWAR) and masked once, then 16, rather than looked up one by
		// one; 1 KiB of text in 160-167 ns (BenchmarkRedactBody), against
		// 237-262 sixteen bytes a step and 330 a byte a step. Not for short
		// strings (most of a JSON document's), where the first test would
		// find the digit and the table read it again.
		for ; i+32 <= len(b); i += 32 {
			w := b[i : i+32 : i+32]
			if (digitBits(binary.LittleEndian.Uint64(w))|digitBits(binary.LittleEndian.Uint64(w[8:]))|
				digitBits(binary.LittleEndian.Uint64(w[16:]))|digitBits(binary.LittleEndian.Uint64(w[24:])))&highBits != 0 {
				break
			}
		}
		for ; i+16 <= len(b); i += 16 {
			if hasDigit(binary.LittleEndian.Uint64(b[i:]))|hasDigit(binary.LittleEndian.Uint64(b[i+8:])) != 0 {
				break
			}
		}
	}
	st := &r.starts
	for ; i+8 <= len(b); i += 8 {
		w := b[i : i+8 : i+8]
		if st[w[0]]|st[w[1]]|st[w[2]]|st[w[3]]|st[w[4]]|st[w[5]]|st[w[6]]|st[w[7]] != 0 {
			break
		}
	}
	for i < len(b) && st[b[i]] == 0 {
		i++
	}
	return i
}

// fewDigits reports whether b holds fewer digits than a card number has
// (13): then the card pattern cannot match in it.
func fewDigits(b []byte) bool { return countDigits(b) < 13 }

// countDigits counts b's ASCII digits, eight bytes a step: digitBits sets
// the high bit of exactly the bytes that are digits (no borrow or carry
// crosses a byte), so that a word's count is their population count.
func countDigits(b []byte) int {
	n := 0
	for ; len(b) >= 8; b = b[8:] {
		n += bits.OnesCount64(digitBits(binary.LittleEndian.Uint64(b)) & highBits)
	}
	for _, c := range b {
		if isDigit(c) {
			n++
		}
	}
	return n
}

// hasDigit is not zero when a byte of w is an ASCII digit. For a byte c
// below 0x80, 0xB9-c (no borrow) has its high bit set when c <= '9', and
// c+0x50 (no carry) when c >= '0'; ^w drops the bytes of 0x80 and above.
// Exact for every byte value (TestHasDigit).
func hasDigit(w uint64) uint64 { return digitBits(w) & highBits }

// digitBits is hasDigit before its mask: the high bit of each byte is
// set when that byte is a digit (the other bits are noise), so that the
// words of a longer step are masked once.
func digitBits(w uint64) uint64 {
	const ones, low7 = 0x0101010101010101, 0x7f7f7f7f7f7f7f7f
	t := w & low7
	return (ones*0xB9 - t) & ^w & (t + ones*0x50)
}

const highBits = 0x8080808080808080

// escapeEnd returns, when b[i] is inside a JSON escape of b (after its
// backslash: the n of \n, the u0041 of \u0041), the index just after that
// escape; otherwise i.
func escapeEnd(b []byte, i int) int {
	for k := i - 1; k >= 0 && k >= i-5; k-- {
		if b[k] != '\\' {
			continue
		}
		run := 0 // backslashes ending at k
		for j := k; j >= 0 && b[j] == '\\'; j-- {
			run++
		}
		if run%2 == 0 {
			return i // b[k] is the second of \\: an escape that ends at k
		}
		n := 2
		if k+1 < len(b) && b[k+1] == 'u' {
			n = 6
		}
		if i < k+n {
			return min(k+n, len(b))
		}
		return i
	}
	return i
}

// cardAt looks for a card number starting at b[i]: 13 to 19 digits,
// single spaces or dashes allowed between them, not followed by a letter
// or digit, first digit 2 to 6, Luhn-valid. It returns the end of the
// last digit.
func cardAt(b []byte, i int) (int, bool) {
	if b[i] < '2' || b[i] > '6' {
		return 0, false
	}
	var digits [19]byte
	n, j, end := 0, i, i
	for j < len(b) {
		c := b[j]
		if isDigit(c) {
			if n == len(digits) {
				return 0, false // a longer number is not a card
			}
			digits[n] = c
			n++
			j++
			end = j
			continue
		}
		if (c == ' ' || c == '-') && j+1 < len(b) && isDigit(b[j+1]) && isDigit(b[j-1]) {
			j++
			continue
		}
		break
	}
	if n < 13 || (end < len(b) && isLetter(b[end])) {
		return 0, false
	}
	return end, luhn(digits[:n])
}

func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func isDomain(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }

// emailAround finds an e-mail address around the '@' at b[at], starting
// no earlier than floor. A chain like "a@b.cc@d.ee" is one span: were it
// cut after "b.cc", the token written in its place would be the local part
// of a new address, and redacting twice would not give the same result.
func emailAround(b []byte, at, floor int) (start, end int, ok bool) {
	s := at
	for s > floor && isLocal(b[s-1]) {
		s--
	}
	if s == at {
		return 0, 0, false
	}
	e, ok := domainEnd(b, at+1)
	if !ok {
		return 0, 0, false
	}
	return s, chainEnd(b, e), true
}

// domainEnd reads a domain with a top-level label of two letters or more
// starting at b[from], and returns where it ends.
func domainEnd(b []byte, from int) (int, bool) {
	e := from
	for e < len(b) && isDomain(b[e]) {
		e++
	}
	for e > from && (b[e-1] == '.' || b[e-1] == '-') {
		e--
	}
	domain := b[from:e]
	dot := bytes.LastIndexByte(domain, '.')
	if dot <= 0 || len(domain)-dot-1 < 2 {
		return 0, false
	}
	for _, c := range domain[dot+1:] {
		if !isLetter(c) {
			return 0, false
		}
	}
	return e, true
}

// bearerAt finds "Bearer <token>" at b[i] (any case) and returns the
// token's span: at least 8 characters of the token68 alphabet, not a
// token this package wrote.
func bearerAt(b []byte, i int) (start, end int, ok bool) {
	const word = "bearer"
	if len(b)-i < len(word)+2 || !bytes.EqualFold(b[i:i+len(word)], []byte(word)) {
		return 0, 0, false
	}
	j := i + len(word)
	if b[j] != ' ' && b[j] != '\t' {
		return 0, 0, false
	}
	for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
		j++
	}
	s := j
	for j < len(b) && (isAlnum(b[j]) || bytes.IndexByte([]byte("-._~+/"), b[j]) >= 0) {
		j++
	}
	for j < len(b) && b[j] == '=' {
		j++
	}
	if j-s < 8 || bytes.HasPrefix(b[s:j], []byte(TokenPrefix)) {
		return 0, 0, false
	}
	return s, j, true
}
