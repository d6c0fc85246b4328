// Package hartest checks HAR documents against the HAR 1.2 JSON Schema of
// the har-schema package (version 2.0.0, ISC licence, har-schema/LICENSE):
// the schema with which har-validator, the HAR checker of the npm
// ecosystem, validates. Tests use it as a third-party reader of the HAR
// that Tapwire writes.
package hartest

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed har-schema/*.json
var files embed.FS

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	const base = "https://tapwire.test/har-schema/"
	names, err := fs.Glob(files, "har-schema/*.json")
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.DefaultDraft(jsonschema.Draft6)
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := c.AddResource(base+path.Base(name), doc); err != nil {
			return nil, err
		}
	}
	return c.Compile(base + "har.json")
})

// Validate reports whether doc is a valid HAR 1.2 document.
func Validate(doc []byte) error {
	sch, err := compiled()
	if err != nil {
		return fmt.Errorf("compile har-schema: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(inst)
}
