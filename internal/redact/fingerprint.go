package redact

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"slices"
)

// The code of this package, in the binary: a Redactor's fingerprint covers
// the code that applies its rules, so that two builds agree only when
// their redaction would be the same (TestFingerprintCoversTheCode checks
// that every source file of the package is listed here).
//
//go:embed fingerprint.go multipart.go names.go redact.go settings.go walk.go
var source embed.FS

// sourceSum is the SHA-256 of the package's source files, in name order.
var sourceSum = func() []byte {
	names, err := fs.Glob(source, "*.go")
	if err != nil {
		panic("redact: " + err.Error()) // a constant pattern: cannot happen
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		b, err := source.ReadFile(n)
		if err != nil {
			panic("redact: " + err.Error()) // embedded: cannot happen
		}
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}()

// fingerprint is the SHA-256, in hex, of the package's code and the rules
// in order (ids, entries, and the default rules' shapes of names).
func fingerprint(rules []Rule) string {
	h := sha256.New()
	h.Write(sourceSum)
	for _, r := range rules {
		b, err := json.Marshal(r) // map keys sorted
		if err != nil {
			panic("redact: " + err.Error()) // strings only: cannot happen
		}
		h.Write(b)
		h.Write([]byte{byte(r.credentials), '\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Fingerprint identifies the redaction this Redactor applies: equal for
// Redactors of the same rules built from the same code of this package,
// different otherwise. goproxy sends it with each batch it has redacted
// (wire.HeaderRedacted); a forwarder whose own Redactor has the same
// fingerprint does not apply the same rules a second time, since a second
// pass changes nothing (FuzzRedactBody checks that).
func (r *Redactor) Fingerprint() string { return r.fp }
