package ecs

import (
	"encoding/json"
	"fmt"
	"strings"
)

// hclValue writes a JSON value as an HCL expression in the style of the
// deployment guide's jsonencode([...]) blocks: objects and arrays of
// objects on several lines, arrays of scalars on one. indent is the
// indentation of the line the value starts on; hclwrite.Format aligns
// the result afterwards.
func hclValue(v any, indent string) string {
	switch v := v.(type) {
	case *Object:
		if len(v.keys) == 0 {
			return "{}"
		}
		var b strings.Builder
		b.WriteString("{\n")
		for _, k := range v.keys {
			fmt.Fprintf(&b, "%s  %s = %s\n", indent, hclKey(k), hclValue(v.vals[k], indent+"  "))
		}
		b.WriteString(indent + "}")
		return b.String()
	case []any:
		if len(v) == 0 {
			return "[]"
		}
		scalars := true
		for _, x := range v {
			switch x.(type) {
			case *Object, []any:
				scalars = false
			}
		}
		if scalars {
			parts := make([]string, len(v))
			for i, x := range v {
				parts[i] = hclValue(x, indent)
			}
			return "[" + strings.Join(parts, ", ") + "]"
		}
		var b strings.Builder
		b.WriteString("[\n")
		for _, x := range v {
			fmt.Fprintf(&b, "%s  %s,\n", indent, hclValue(x, indent+"  "))
		}
		b.WriteString(indent + "]")
		return b.String()
	case string:
		return hclString(v)
	case json.Number:
		return v.String()
	case int:
		return fmt.Sprint(v)
	case bool:
		return fmt.Sprint(v)
	case nil:
		return "null"
	}
	panic(fmt.Sprintf("ecs: cannot write %T as HCL", v))
}

// hclKey writes an object key bare when HCL reads it as the same string.
func hclKey(k string) string {
	switch k {
	case "", "for", "if", "in", "null", "true", "false":
		return hclString(k)
	}
	for i, r := range k {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r == '-' || r >= '0' && r <= '9')) {
			return hclString(k)
		}
	}
	return k
}

// hclString quotes s as an HCL string literal: JSON-like escapes, and
// the template sequences ${ and %{ doubled so they stay literal.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, c)
		case (c == '$' || c == '%') && i+1 < len(s) && s[i+1] == '{':
			b.WriteByte(c)
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
