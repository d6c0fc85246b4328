package volatile

import "fmt"

// Profile learns which fields of one endpoint's recordings are volatile: those whose value differs between
// recordings, those missing from some, and those with a volatile shape. Observe every recording, then ask.
// A Profile is not safe for concurrent Observe; once built, Volatile and Why are.
type Profile struct {
	n      int // recordings observed
	fields map[string]*fieldStat
	order  []string // names in the order first seen
}

type fieldStat struct {
	first  string
	seen   int   // recordings that had it
	last   int   // the recording that counted last in seen
	varies bool  // two recordings disagree
	shape  Shape // the first volatile shape among its values
}

// Observe adds one recording's fields. A name given twice in one call counts once.
func (p *Profile) Observe(fields []Field) {
	if p.fields == nil {
		p.fields = make(map[string]*fieldStat)
	}
	p.n++
	for _, f := range fields {
		st := p.fields[f.Name]
		if st == nil {
			st = &fieldStat{first: f.Value}
			p.fields[f.Name] = st
			p.order = append(p.order, f.Name)
		} else if st.first != f.Value {
			st.varies = true
		}
		if st.last != p.n {
			st.seen, st.last = st.seen+1, p.n
		}
		if st.shape == None {
			st.shape = Classify(f.Value)
		}
	}
}

// Recordings is how many recordings were observed.
func (p *Profile) Recordings() int { return p.n }

// Seen reports whether any recording had the field.
func (p *Profile) Seen(name string) bool { _, ok := p.fields[name]; return ok }

// Volatile reports whether the field's value does not identify a request: it differs between recordings,
// is missing from some, or has a volatile shape.
func (p *Profile) Volatile(name string) bool {
	st := p.fields[name]
	return st != nil && (st.varies || st.seen < p.n || st.shape != None)
}

// Why says in a few words why a field is volatile ("" when it is not).
func (p *Profile) Why(name string) string {
	st := p.fields[name]
	switch {
	case st == nil:
		return ""
	case st.shape != None:
		return "looks like a " + st.shape.String()
	case st.varies:
		return fmt.Sprintf("varies across %d recordings", p.n)
	case st.seen < p.n:
		return fmt.Sprintf("in %d of %d recordings", st.seen, p.n)
	}
	return ""
}

// Names returns the fields observed, in the order first seen.
func (p *Profile) Names() []string { return p.order }
