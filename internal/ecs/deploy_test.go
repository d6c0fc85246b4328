package ecs

import (
	"bytes"
	"fmt"
	"maps"
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
// used, and that the modules, evaluated with the same cty functions
// Terraform uses, write the same containers as ecs inject and ecs
// forwarder, but for FORWARDER_TOKEN, a secret in the modules where
// speedctl's JSON has a plain variable.

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
// fixtures' apps and compares its containers with Inject's. One difference
// is by design: where Inject writes FORWARDER_TOKEN into goproxy's
// environment in clear (JSON for the AWS CLI has no secret to refer to),
// the module gives goproxy the same variable from a Secrets Manager
// secret. So with a token, the expected goproxy is Inject's with the
// FORWARDER_TOKEN entry taken out of environment and put into secrets as
// {name FORWARDER_TOKEN, valueFrom the secret}; everything else is equal.
func TestSidecarModuleMatchesInject(t *testing.T) {
	m := loadModule(t, deployDir+"/sidecar")
	const tokenSecret = "arn:aws:secretsmanager:us-east-1:1:secret:forwarder-forwarder-token"
	tests := []struct {
		name, file string
		opts       InjectOptions
		// tokenSecret is the module's forwarder_token_secret when
		// opts.ForwarderToken is set; null otherwise.
		tokenSecret string
	}{
		{"guide without token", "notifications.describe.json", InjectOptions{Container: "notifications", Port: 8080, Image: "goproxy:test"}, ""},
		{"guide with token", "notifications.describe.json", InjectOptions{Container: "notifications", Port: 8080, Image: "goproxy:test",
			ForwarderToken: "tok-3q2+7w"}, tokenSecret},
		{"every option with token", "orders.register.json", InjectOptions{Container: "orders", Port: 9091, Image: "goproxy:test", ClusterName: "prod", AppLabel: "orders-api",
			ForwarderAddr: "fwd.prod.local:8888", CASecretCert: "arn:aws:secretsmanager:us-east-1:1:secret:crt", CASecretKey: "arn:aws:secretsmanager:us-east-1:1:secret:key", LogLevel: "debug",
			ForwarderToken: "tok-orders"}, tokenSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
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

				"forwarder_token_secret": cty.NullVal(cty.String),
			}
			if tc.tokenSecret != "" {
				vars["forwarder_token_secret"] = cty.StringVal(tc.tokenSecret)
			}
			outs, _ := evalModule(t, m, vars)
			got := outs["container_definitions"]
			var want []any
			for _, name := range []string{InitName, tc.opts.Container, SidecarName} {
				c := td.Container(name).Clone()
				c.Delete("dockerLabels") // inject's record for uninject; Terraform keeps its own state
				if name == SidecarName && tc.opts.ForwarderToken != "" {
					tokenToSecret(t, c, tc.opts.ForwarderToken, tc.tokenSecret)
				}
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

// tokenToSecret moves goproxy's FORWARDER_TOKEN, which Inject writes in
// clear, from environment to secrets, as the module writes it.
func tokenToSecret(t *testing.T, goproxy *Object, token, secret string) {
	t.Helper()
	var env []any
	found := false
	for _, e := range goproxy.Array("environment") {
		if o := e.(*Object); o.String("name") == TokenKey {
			if o.String("value") != token {
				t.Fatalf("Inject wrote %s=%q, want %q", TokenKey, o.String("value"), token)
			}
			found = true
			continue
		}
		env = append(env, e)
	}
	if !found {
		t.Fatalf("Inject wrote no %s into goproxy's environment", TokenKey)
	}
	goproxy.Set("environment", env)
	goproxy.Set("secrets", []any{NewObject("name", TokenKey, "valueFrom", secret)})
}

// TestForwarderModuleMatchesSpeedctl evaluates the root module's forwarder
// container (its environment and secrets locals, with stubs for the
// resources) and compares it with what `speedctl ecs forwarder
// --api-key-secret` writes from the same config. The difference is by
// design: the module reads FORWARDER_TOKEN from its own Secrets Manager
// secret, where speedctl's JSON has it in environment in clear; so the
// module's environment is speedctl's without FORWARDER_TOKEN, and its
// secrets are speedctl's plus {FORWARDER_TOKEN, the token secret}. The
// token is forwarder_token, else the config's, else a generated one;
// no_token (the guide's setup) leaves it out everywhere.
func TestForwarderModuleMatchesSpeedctl(t *testing.T) {
	m := loadModule(t, deployDir)
	const (
		apiKeyStub = "aws_secretsmanager_secret.api_key.arn"
		tokenStub  = "aws_secretsmanager_secret.forwarder_token.arn"
		randomStub = "random_password.forwarder_token.result"
	)
	guide := map[string]string{}
	for _, kv := range guideEnv(t, "guide-forwarder-env.txt") {
		guide[kv[0]] = kv[1]
	}
	withToken := maps.Clone(guide)
	withToken[TokenKey] = "tok-from-config"
	tests := []struct {
		name         string
		config       map[string]string
		tokenVar     string // forwarder_token; null if empty
		noToken      bool
		wantToken    string // the secret's value; empty: no secret
		wantTokenArn string
	}{
		{"the config's token", withToken, "", false, "tok-from-config", tokenStub},
		{"forwarder_token wins over the config's", withToken, "tok-from-variable", false, "tok-from-variable", tokenStub},
		{"generated without one", guide, "", false, randomStub, tokenStub},
		{"no_token: the guide's setup (unsafe)", guide, "", true, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _, err := NewForwarder(ForwarderOptions{Config: func(k string) string { return tc.config[k] }, APIKeySecret: apiKeyStub})
			if err != nil {
				t.Fatal(err)
			}
			c := f.TaskDefinition.Array("containerDefinitions")[0].(*Object)
			var wantEnv []any
			for _, e := range c.Array("environment") {
				if e.(*Object).String("name") != TokenKey {
					wantEnv = append(wantEnv, e)
				}
			}
			wantSecrets := c.Array("secrets")
			if tc.wantToken != "" {
				wantSecrets = append(wantSecrets, NewObject("name", TokenKey, "valueFrom", tc.wantTokenArn))
			}

			cfg := map[string]cty.Value{}
			for k, v := range tc.config {
				cfg[k] = cty.StringVal(v)
			}
			vars := map[string]cty.Value{
				"speedctl_config":    cty.MapVal(cfg),
				"cluster_id":         cty.StringVal("arn:aws:ecs:us-east-1:1:cluster/c"),
				"namespace_id":       cty.StringVal("ns-1"),
				"subnet_ids":         cty.ListVal([]cty.Value{cty.StringVal("subnet-1")}),
				"security_group_ids": cty.ListVal([]cty.Value{cty.StringVal("sg-1")}),
				"forwarder_image":    cty.StringVal("forwarder:test"),
				"no_token":           cty.BoolVal(tc.noToken),
			}
			if tc.tokenVar != "" {
				vars["forwarder_token"] = cty.StringVal(tc.tokenVar)
			}
			outs, locals := evalModule(t, m, vars)
			if g := ctyJSON(t, locals["forwarder_env"]); !sameJSON(g, Compact(wantEnv)) {
				t.Errorf("the module's forwarder environment\n%s\nwant speedctl's without %s\n%s", g, TokenKey, Compact(wantEnv))
			}
			if g := ctyJSON(t, locals["forwarder_secrets"]); !sameJSON(g, Compact(wantSecrets)) {
				t.Errorf("the module's forwarder secrets\n%s\nwant\n%s", g, Compact(wantSecrets))
			}
			arn := outs["forwarder_token_secret"]
			if tc.wantToken == "" {
				if !arn.IsNull() {
					t.Errorf("forwarder_token_secret = %#v, want null", arn)
				}
				return
			}
			if arn.IsNull() || arn.AsString() != tc.wantTokenArn {
				t.Errorf("forwarder_token_secret = %#v, want %s", arn, tc.wantTokenArn)
			}
			if tok := locals["forwarder_token"]; tok.IsNull() || tok.AsString() != tc.wantToken {
				t.Errorf("the token secret's value %#v, want %q", tok, tc.wantToken)
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

// evalModule evaluates a module: its locals in dependency order, then its
// outputs, with the Terraform functions it uses. A variable without a test
// value takes its default. Resources and data sources, which only a
// provider makes, are stubs: an object whose attributes arn, id, name, json
// and result are the string "TYPE.NAME.ATTR" (data sources "data.TYPE.NAME.ATTR"),
// a tuple of count of them where the block has a count, evaluated like a
// local.
func evalModule(t *testing.T, m *tfModule, vars map[string]cty.Value) (outputs, locals map[string]cty.Value) {
	t.Helper()
	vars = maps.Clone(vars)
	for _, b := range m.blocks("variable") {
		if _, ok := vars[b.Labels[0]]; ok {
			continue
		}
		def, ok := b.Body.Attributes["default"]
		if !ok {
			t.Fatalf("no test value for variable %q, which has no default", b.Labels[0])
		}
		v, diags := def.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("variable %q's default: %v", b.Labels[0], diags)
		}
		vars[b.Labels[0]] = v
	}
	// The nodes to evaluate: "local.NAME", "TYPE.NAME" and "data.TYPE.NAME".
	type node struct {
		expr  hclsyntax.Expression // the local's value or the block's count; nil: a block without count
		stub  string               // for a block, the prefix of its attributes' values
		local string
		path  []string // for a block: where its value goes in the context
	}
	pending := map[string]node{}
	for name, expr := range m.locals() {
		pending["local."+name] = node{expr: expr, local: name}
	}
	blockTypes := map[string]bool{}
	for _, typ := range []string{"resource", "data"} {
		for _, b := range m.blocks(typ) {
			n := node{stub: b.Labels[0] + "." + b.Labels[1], path: []string{b.Labels[0], b.Labels[1]}}
			if typ == "data" {
				n.stub, n.path = "data."+n.stub, append([]string{"data"}, n.path...)
			} else {
				blockTypes[b.Labels[0]] = true
			}
			if c, ok := b.Body.Attributes["count"]; ok {
				n.expr = c.Expr
			}
			pending[n.stub] = n
		}
	}
	depOf := func(tr hcl.Traversal) string {
		attr := func(i int) string {
			if len(tr) > i {
				if a, ok := tr[i].(hcl.TraverseAttr); ok {
					return a.Name
				}
			}
			return ""
		}
		switch root := tr.RootName(); {
		case root == "local":
			return "local." + attr(1)
		case root == "data":
			return "data." + attr(1) + "." + attr(2)
		case blockTypes[root]:
			return root + "." + attr(1)
		}
		return ""
	}
	locals = map[string]cty.Value{}
	blocks := map[string]map[string]cty.Value{} // root → name → value; data: "data" → type → object
	done := map[string]bool{}
	ctx := &hcl.EvalContext{Functions: terraformFuncs()}
	setCtx := func() {
		ctx.Variables = map[string]cty.Value{"var": cty.ObjectVal(vars), "local": cty.ObjectVal(locals)}
		for root, byName := range blocks {
			ctx.Variables[root] = cty.ObjectVal(byName)
		}
	}
	for len(pending) > 0 {
		progress := false
		for key, n := range pending {
			ready := true
			if n.expr != nil {
				for _, tr := range n.expr.Variables() {
					if d := depOf(tr); d != "" && !done[d] {
						ready = false
					}
				}
			}
			if !ready {
				continue
			}
			setCtx()
			var v cty.Value
			if n.expr != nil {
				var diags hcl.Diagnostics
				v, diags = n.expr.Value(ctx)
				if diags.HasErrors() {
					t.Fatalf("%s: %v", key, diags)
				}
			}
			if n.local != "" {
				locals[n.local] = v
			} else {
				attrs := map[string]cty.Value{}
				for _, a := range []string{"arn", "id", "name", "json", "result"} {
					attrs[a] = cty.StringVal(n.stub + "." + a)
				}
				obj := cty.ObjectVal(attrs)
				if n.expr != nil {
					count, _ := v.AsBigFloat().Int64()
					objs := make([]cty.Value, count)
					for i := range objs {
						objs[i] = obj
					}
					obj = cty.TupleVal(objs)
					if count == 0 {
						obj = cty.EmptyTupleVal
					}
				}
				if n.path[0] == "data" {
					byType := blocks["data"]
					if byType == nil {
						byType = map[string]cty.Value{}
						blocks["data"] = byType
					}
					inner := map[string]cty.Value{}
					if old, ok := byType[n.path[1]]; ok {
						inner = old.AsValueMap()
					}
					inner[n.path[2]] = obj
					byType[n.path[1]] = cty.ObjectVal(inner)
				} else {
					if blocks[n.path[0]] == nil {
						blocks[n.path[0]] = map[string]cty.Value{}
					}
					blocks[n.path[0]][n.path[1]] = obj
				}
			}
			done[key] = true
			delete(pending, key)
			progress = true
		}
		if !progress {
			t.Fatalf("locals and counts depend on each other in a cycle: %v", slices.Sorted(maps.Keys(pending)))
		}
	}
	setCtx()
	outputs = map[string]cty.Value{}
	for _, b := range m.blocks("output") {
		v, diags := b.Body.Attributes["value"].Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("output %s: %v", b.Labels[0], diags)
		}
		outputs[b.Labels[0]] = v
	}
	return outputs, locals
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
		// one: null for an empty list or tuple, its element for one, an error beyond.
		"one": function.New(&function.Spec{
			Params: []function.Parameter{{Name: "list", Type: cty.DynamicPseudoType}},
			Type:   function.StaticReturnType(cty.DynamicPseudoType),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				switch n := args[0].LengthInt(); n {
				case 0:
					return cty.NullVal(cty.DynamicPseudoType), nil
				case 1:
					return args[0].Index(cty.NumberIntVal(0)), nil
				default:
					return cty.NilVal, fmt.Errorf("must be a list, set, or tuple value with either zero or one elements, not %d", n)
				}
			},
		}),
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
