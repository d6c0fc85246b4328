package ecs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// The Terraform module in deploy/ecs cannot be planned here (no provider,
// no AWS), so these tests check what can be checked without: that every
// file parses and is formatted as terraform fmt leaves it, that every
// reference names something the module declares and every variable is
// used, and that the sidecar module, evaluated with the same cty
// functions Terraform uses, writes the same containers as ecs inject.

const deployDir = "../../deploy/ecs"

// tfModule is the parsed .tf files of one module folder.
type tfModule struct {
	dir    string
	bodies []*hclsyntax.Body
}

func loadModule(t *testing.T, dir string) *tfModule {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s: %v", dir, err)
	}
	m := &tfModule{dir: dir}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted as terraform fmt leaves it; formatted:\n%s", f, got)
		}
		file, diags := hclsyntax.ParseConfig(src, f, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", f, diags)
		}
		m.bodies = append(m.bodies, file.Body.(*hclsyntax.Body))
	}
	return m
}

func (m *tfModule) blocks(typ string) []*hclsyntax.Block {
	var bs []*hclsyntax.Block
	for _, b := range m.bodies {
		for _, blk := range b.Blocks {
			if blk.Type == typ {
				bs = append(bs, blk)
			}
		}
	}
	return bs
}

func (m *tfModule) locals() map[string]hclsyntax.Expression {
	ls := map[string]hclsyntax.Expression{}
	for _, b := range m.blocks("locals") {
		for name, a := range b.Body.Attributes {
			ls[name] = a.Expr
		}
	}
	return ls
}

// traversals returns every variable reference of the module's expressions.
func (m *tfModule) traversals() []hcl.Traversal {
	var ts []hcl.Traversal
	var walk func(*hclsyntax.Body, string)
	walk = func(b *hclsyntax.Body, blockType string) {
		for name, a := range b.Attributes {
			if blockType == "variable" && name == "type" {
				continue // a type constraint (string, any), not references
			}
			ts = append(ts, a.Expr.Variables()...)
		}
		for _, blk := range b.Blocks {
			walk(blk.Body, blk.Type)
		}
	}
	for _, b := range m.bodies {
		walk(b, "")
	}
	return ts
}

func TestTerraformModulesReferences(t *testing.T) {
	for _, dir := range []string{deployDir, deployDir + "/sidecar", deployDir + "/mock"} {
		t.Run(dir, func(t *testing.T) {
			m := loadModule(t, dir)
			declared := map[string]bool{}
			for _, b := range m.blocks("variable") {
				declared["var."+b.Labels[0]] = true
			}
			for name := range m.locals() {
				declared["local."+name] = true
			}
			for _, b := range m.blocks("resource") {
				declared[b.Labels[0]+"."+b.Labels[1]] = true
			}
			for _, b := range m.blocks("data") {
				declared["data."+b.Labels[0]+"."+b.Labels[1]] = true
			}
			used := map[string]bool{}
			for _, tr := range m.traversals() {
				root := tr.RootName()
				var key string
				switch root {
				case "each", "count", "path", "self", "terraform":
					continue
				case "data":
					if len(tr) < 3 {
						t.Errorf("%s: short data reference", tr.SourceRange())
						continue
					}
					key = "data." + tr[1].(hcl.TraverseAttr).Name + "." + tr[2].(hcl.TraverseAttr).Name
				default:
					if len(tr) < 2 {
						t.Errorf("%s: reference to %q, which is not declared", tr.SourceRange(), root)
						continue
					}
					key = root + "." + tr[1].(hcl.TraverseAttr).Name
				}
				if !declared[key] {
					t.Errorf("%s: %s is not declared in %s", tr.SourceRange(), key, dir)
				}
				used[key] = true
			}
			for k := range declared {
				if strings.HasPrefix(k, "var.") && !used[k] {
					t.Errorf("%s is declared but not used", k)
				}
			}
		})
	}
}

// TestSidecarModuleMatchesInject evaluates deploy/ecs/sidecar for the
// fixtures' apps and compares its containers with Inject's.
func TestSidecarModuleMatchesInject(t *testing.T) {
	m := loadModule(t, deployDir+"/sidecar")
	tests := []struct {
		file string
		opts InjectOptions
	}{
		{"notifications.describe.json", InjectOptions{Container: "notifications", Port: 8080, Image: "goproxy:test"}},
		{"orders.register.json", InjectOptions{Container: "orders", Port: 9091, Image: "goproxy:test", ClusterName: "prod", AppLabel: "orders-api",
			ForwarderAddr: "fwd.prod.local:8888", CASecretCert: "arn:aws:secretsmanager:us-east-1:1:secret:crt", CASecretKey: "arn:aws:secretsmanager:us-east-1:1:secret:key", LogLevel: "debug"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			td := read(t, tc.file)
			app := Compact(td.Container(tc.opts.Container))
			if _, err := Inject(td, tc.opts); err != nil {
				t.Fatal(err)
			}
			o := tc.opts
			o.setDefaults()
			appVal, err := ctyjson.Unmarshal(app, mustType(t, app))
			if err != nil {
				t.Fatal(err)
			}
			vars := map[string]cty.Value{
				"app_container":  appVal,
				"app_port":       cty.NumberIntVal(int64(o.Port)),
				"forwarder_addr": cty.StringVal(o.ForwarderAddr),
				"cluster_name":   cty.StringVal(o.ClusterName),
				"app_label":      cty.StringVal(o.AppLabel),
				"ca_secret_crt":  cty.StringVal(o.CASecretCert),
				"ca_secret_key":  cty.StringVal(o.CASecretKey),
				"goproxy_image":  cty.StringVal(o.Image),
				"init_image":     cty.StringVal(o.InitImage),
				"log_level":      cty.StringVal(o.LogLevel),
			}
			outs := evalModule(t, m, vars)
			got := outs["container_definitions"]
			var want []any
			for _, name := range []string{InitName, tc.opts.Container, SidecarName} {
				c := td.Container(name).Clone()
				c.Delete("dockerLabels") // inject's record for uninject; Terraform keeps its own state
				want = append(want, c)
			}
			if g := ctyJSON(t, got); !sameJSON(g, Compact(want)) {
				t.Errorf("the sidecar module writes\n%s\nwant inject's\n%s", Encode(mustDecode(t, g)), Encode(want))
			}
			if v := outs["volume_name"]; v.AsString() != VolumeName {
				t.Errorf("volume_name %v", v)
			}
		})
	}
}

func mustType(t *testing.T, data []byte) cty.Type {
	t.Helper()
	ty, err := ctyjson.ImpliedType(data)
	if err != nil {
		t.Fatal(err)
	}
	return ty
}

func mustDecode(t *testing.T, data []byte) any {
	t.Helper()
	v, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// evalModule evaluates a module that has no resources: its locals in
// dependency order, then its outputs, with the Terraform functions it uses.
func evalModule(t *testing.T, m *tfModule, vars map[string]cty.Value) map[string]cty.Value {
	t.Helper()
	for _, b := range m.blocks("variable") {
		if _, ok := vars[b.Labels[0]]; !ok {
			t.Fatalf("no test value for variable %q", b.Labels[0])
		}
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)},
		Functions: terraformFuncs(),
	}
	pending := m.locals()
	done := map[string]cty.Value{}
	for len(pending) > 0 {
		progress := false
		for name, expr := range pending {
			ready := true
			for _, tr := range expr.Variables() {
				if tr.RootName() == "local" {
					if _, ok := done[tr[1].(hcl.TraverseAttr).Name]; !ok {
						ready = false
					}
				}
			}
			if !ready {
				continue
			}
			ctx.Variables["local"] = cty.ObjectVal(done)
			v, diags := expr.Value(ctx)
			if diags.HasErrors() {
				t.Fatalf("local.%s: %v", name, diags)
			}
			done[name] = v
			delete(pending, name)
			progress = true
		}
		if !progress {
			t.Fatalf("locals depend on each other in a cycle: %v", slices.Sorted(func(yield func(string) bool) {
				for k := range pending {
					if !yield(k) {
						return
					}
				}
			}))
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(done)
	outs := map[string]cty.Value{}
	for _, b := range m.blocks("output") {
		v, diags := b.Body.Attributes["value"].Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("output %s: %v", b.Labels[0], diags)
		}
		outs[b.Labels[0]] = v
	}
	return outs
}

// terraformFuncs are the functions the sidecar module calls, as Terraform
// defines them (Terraform takes these from cty's stdlib and HCL's tryfunc;
// index is Terraform's own, written out here).
func terraformFuncs() map[string]function.Function {
	return map[string]function.Function{
		"coalesce":  stdlib.CoalesceFunc,
		"concat":    stdlib.ConcatFunc,
		"contains":  stdlib.ContainsFunc,
		"distinct":  stdlib.DistinctFunc,
		"flatten":   stdlib.FlattenFunc,
		"join":      stdlib.JoinFunc,
		"merge":     stdlib.MergeFunc,
		"split":     stdlib.SplitFunc,
		"trimspace": stdlib.TrimSpaceFunc,
		"tostring":  stdlib.MakeToFunc(cty.String),
		"try":       tryfunc.TryFunc,
		"index": function.New(&function.Spec{
			Params: []function.Parameter{{Name: "list", Type: cty.DynamicPseudoType}, {Name: "value", Type: cty.DynamicPseudoType}},
			Type:   function.StaticReturnType(cty.Number),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				i := 0
				for it := args[0].ElementIterator(); it.Next(); i++ {
					_, v := it.Element()
					if v.Equals(args[1]).True() {
						return cty.NumberIntVal(int64(i)), nil
					}
				}
				return cty.NilVal, fmt.Errorf("item not found")
			},
		}),
	}
}
