package redact

import (
	"github.com/tapwire/tapwire/internal/envflag"
)

// Settings are the redaction settings of the deployment guide's
// environment. goproxy and the forwarder read the same variables with the
// same flags, defaults and checks (Bind, SetDefaults, Validate) and compile
// them the same way (Redactor): goproxy redacts before a record leaves the
// task, the forwarder again (a second pass changes nothing) before it is
// spooled.
type Settings struct {
	// Redact switches the default rules (std-auth, credentials in
	// headers, query parameters and body fields; std-card, card numbers):
	// "true" or "false" (SPEEDSCALE_REDACT). If zero, true. Switching it
	// off is logged as a warning.
	Redact string
	// RedactBodies lets the default rules read bodies (credential fields
	// of JSON, form and multipart bodies, and std-card): "true" or "false"
	// (SPEEDSCALE_REDACT_BODIES). If zero, true. "false" leaves bodies and
	// TCP chunks to DLPConfig's rules, and is logged as a warning.
	RedactBodies string
	// DLPConfig adds redaction rules (SPEEDSCALE_DLP_CONFIG): the
	// vendor's redactlist form as JSON (one rule or an array), or the path
	// of a file holding it; "standard" or zero means the default rules
	// only. See docs/forwarder.md.
	DLPConfig string
}

// Bind binds the three settings to their variables and flags.
func (s *Settings) Bind(set *envflag.Set) {
	set.String(&s.Redact, "SPEEDSCALE_REDACT", "redact", "`true|false`: the default redaction of credentials (headers, query parameters, body fields) and card numbers")
	set.String(&s.RedactBodies, "SPEEDSCALE_REDACT_BODIES", "redact-bodies", "`true|false`: the default redaction reads bodies (credential fields, card numbers); false leaves bodies to SPEEDSCALE_DLP_CONFIG")
	set.String(&s.DLPConfig, "SPEEDSCALE_DLP_CONFIG", "dlp-config", "more redaction `rules`: JSON in the vendor's redactlist form, or a file holding it (see docs/forwarder.md)")
}

// SetDefaults applies the defaults: the default rules on, bodies read.
func (s *Settings) SetDefaults() {
	if s.Redact == "" {
		s.Redact = "true"
	}
	if s.RedactBodies == "" {
		s.RedactBodies = "true"
	}
}

// Validate checks the settings after defaults; the error names the
// variable. SPEEDSCALE_DLP_CONFIG is checked by Redactor, which compiles it.
func (s *Settings) Validate() error {
	if s.Redact != "true" && s.Redact != "false" {
		return &envflag.Error{Var: "SPEEDSCALE_REDACT", Value: s.Redact, Want: "want true or false"}
	}
	if s.RedactBodies != "true" && s.RedactBodies != "false" {
		return &envflag.Error{Var: "SPEEDSCALE_REDACT_BODIES", Value: s.RedactBodies, Want: "want true or false"}
	}
	return nil
}

// Redactor compiles the default rules (unless Redact is "false") and
// DLPConfig's rules; nil when there are none. A bad rule's error names
// SPEEDSCALE_DLP_CONFIG.
func (s *Settings) Redactor() (*Redactor, error) {
	var rules []Rule
	if s.Redact != "false" {
		rules = append(rules, DefaultRules(s.RedactBodies != "false")...)
	}
	more, err := ParseRules(s.DLPConfig)
	if err != nil {
		return nil, &envflag.Error{Var: "SPEEDSCALE_DLP_CONFIG", Value: abbreviate(s.DLPConfig), Want: err.Error()}
	}
	rules = append(rules, more...)
	if len(rules) == 0 {
		return nil, nil
	}
	r, err := New(rules)
	if err != nil {
		return nil, &envflag.Error{Var: "SPEEDSCALE_DLP_CONFIG", Value: abbreviate(s.DLPConfig), Want: err.Error()}
	}
	return r, nil
}

// Warning is the start-up warning the settings call for ("" for none):
// redaction off, or the default rules kept out of bodies.
func (s *Settings) Warning(r *Redactor) string {
	switch {
	case r == nil:
		return "redaction is off (SPEEDSCALE_REDACT=false and no SPEEDSCALE_DLP_CONFIG): credentials leave the task as captured"
	case s.Redact != "false" && s.RedactBodies == "false":
		return "SPEEDSCALE_REDACT_BODIES=false: the default rules do not read bodies; passwords, tokens and card numbers in bodies are kept unless SPEEDSCALE_DLP_CONFIG names them"
	}
	return ""
}

func abbreviate(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
