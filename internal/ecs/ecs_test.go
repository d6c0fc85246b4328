package ecs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/tapwire/tapwire/internal/ecs/ecstest"
)

func read(t *testing.T, name string) *TaskDefinition {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	td, err := ReadTaskDefinition(data)
	if err != nil {
		t.Fatalf("ReadTaskDefinition(%s): %v", name, err)
	}
	return td
}

// guideEnv reads NAME=VALUE lines of a testdata file.
func guideEnv(t *testing.T, name string) [][2]string {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var env [][2]string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if l := s.Text(); l != "" && !strings.HasPrefix(l, "#") {
			k, v, _ := strings.Cut(l, "=")
			env = append(env, [2]string{k, v})
		}
	}
	return env
}

func envOf(t *testing.T, c *Object) [][2]string {
	t.Helper()
	var env [][2]string
	for _, e := range c.Array("environment") {
		o := e.(*Object)
		env = append(env, [2]string{o.String("name"), o.String("value")})
	}
	return env
}

func TestReadTaskDefinitionForms(t *testing.T) {
	describe, err := os.ReadFile("testdata/notifications.describe.json")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := Decode(describe)
	inner, _ := v.(*Object).Get("taskDefinition")
	bare := Encode(inner)
	td := read(t, "notifications.describe.json")
	if td.Form != "describe-task-definition output" {
		t.Errorf("Form %q", td.Form)
	}
	if want := []string{"taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities", "registeredAt", "registeredBy"}; !reflect.DeepEqual(td.Dropped, want) {
		t.Errorf("Dropped %q, want %q", td.Dropped, want)
	}
	if len(td.Unknown) != 0 {
		t.Errorf("Unknown %q", td.Unknown)
	}
	if tags := td.Array("tags"); len(tags) != 1 {
		t.Errorf("tags %v, want describe's tags moved in", tags)
	}
	b, err := ReadTaskDefinition(bare)
	if err != nil {
		t.Fatal(err)
	}
	if b.Form != "task definition" {
		t.Errorf("bare Form %q", b.Form)
	}
	b.Set("tags", td.Array("tags"))
	if !bytes.Equal(b.Bytes(), td.Bytes()) {
		t.Errorf("the bare taskDefinition reads differently from describe's output:\n%s\n%s", b.Bytes(), td.Bytes())
	}
	r, err := ReadTaskDefinition(td.Bytes())
	if err != nil || r.Form != "register-task-definition input" || !bytes.Equal(r.Bytes(), td.Bytes()) || len(r.Dropped) != 0 {
		t.Errorf("register input read back: %v %q dropped %q", err, r.Form, r.Dropped)
	}
	if err := ecstest.RegisterTaskDefinition(td.Bytes()); err != nil {
		t.Errorf("describe output as register input: %v", err)
	}
}

func TestReadTaskDefinitionErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`not json`, "not valid JSON"},
		{`[{"name": "app", "image": "x"}]`, "list of container definitions"},
		{`"x"`, "want a JSON object, got a string"},
		{`{"services": [], "failures": []}`, "no containerDefinitions (found services, failures)"},
		{`{"family": "f", "containerDefinitions": {}}`, "containerDefinitions is an object"},
		{`{"family": "f", "containerDefinitions": [{"image": "x"}]}`, "containerDefinitions[0] has no name"},
		{`{"containerDefinitions": [{"name": "a"}]}`, "no family"},
		{`{"taskDefinition": []}`, "taskDefinition is an array"},
		{`{"family": "f", "family": "g", "containerDefinitions": []}`, `duplicate key "family"`},
		{`{"family": "f", "containerDefinitions": []} {}`, "data after"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ReadTaskDefinition([]byte(tc.in))
			if !errors.Is(err, ErrNotTaskDefinition) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrNotTaskDefinition containing %q", err, tc.want)
			}
		})
	}
}

// TestRegisterFieldsMatchSDK holds RegisterFields to the SDK's
// RegisterTaskDefinitionInput.
func TestRegisterFieldsMatchSDK(t *testing.T) {
	var sdk []string
	rt := reflect.TypeFor[awsecs.RegisterTaskDefinitionInput]()
	for i := 0; i < rt.NumField(); i++ {
		if f := rt.Field(i); f.IsExported() {
			r := []rune(f.Name)
			r[0] = unicode.ToLower(r[0])
			sdk = append(sdk, string(r))
		}
	}
	slices.Sort(sdk)
	ours := slices.Sorted(slices.Values(RegisterFields))
	if !reflect.DeepEqual(ours, sdk) {
		t.Errorf("RegisterFields %q\nthe SDK's       %q", ours, sdk)
	}
}

// TestSidecarMatchesGuide: with the guide's inputs, the sidecar's
// environment is the guide's, name for name and value for value; with
// other inputs only the values that name the app and the forwarder
// differ. The init command is the guide's with > for >>, and the app gets
// the guide's variables.
func TestSidecarMatchesGuide(t *testing.T) {
	guide := guideEnv(t, "guide-goproxy-env.txt")
	td := read(t, "notifications.describe.json")
	if _, err := Inject(td, InjectOptions{Container: "notifications", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	if got := envOf(t, td.Container(SidecarName)); !reflect.DeepEqual(got, guide) {
		t.Errorf("sidecar env\n got  %q\n want %q", got, guide)
	}

	o := InjectOptions{Container: "orders", Port: 9091, ClusterName: "prod", AppLabel: "orders-api", ForwarderAddr: "fwd.prod.local:8888"}
	td = read(t, "orders.register.json")
	if _, err := Inject(td, o); err != nil {
		t.Fatal(err)
	}
	differ := map[string]string{"APP_LABEL": "orders-api", "APP_POD_NAME": "orders-api", "APP_POD_NAMESPACE": "prod", "REVERSE_PROXY_PORT": "9091", "FORWARDER_ADDR": "fwd.prod.local:8888"}
	got := envOf(t, td.Container(SidecarName))
	if len(got) != len(guide) {
		t.Fatalf("sidecar env %q, want the guide's %d variables", got, len(guide))
	}
	for i, kv := range guide {
		want := kv[1]
		if v, ok := differ[kv[0]]; ok {
			want = v
		}
		if got[i] != [2]string{kv[0], want} {
			t.Errorf("sidecar env[%d] = %q, want %s=%s", i, got[i], kv[0], want)
		}
	}

	raw, _ := os.ReadFile("testdata/guide-init-command.txt")
	var guideCmd string
	for _, l := range strings.Split(string(raw), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			guideCmd = l
		}
	}
	wantCmd := strings.ReplaceAll(guideCmd, ">>", ">")
	cmd := td.Container(InitName).Array("command")
	if len(cmd) != 2 || cmd[0] != "-c" || cmd[1] != wantCmd {
		t.Errorf("init command %q, want [-c %q]", cmd, wantCmd)
	}
	if ep := td.Container(InitName).Array("entryPoint"); len(ep) != 1 || ep[0] != "bash" {
		t.Errorf("init entryPoint %q, want [bash]", ep)
	}

	td = read(t, "notifications.describe.json")
	if _, err := Inject(td, InjectOptions{Container: "notifications"}); err != nil {
		t.Fatal(err)
	}
	app := envOf(t, td.Container("notifications"))
	for _, kv := range guideEnv(t, "guide-app-env.txt") {
		if !slices.Contains(app, kv) {
			t.Errorf("app env %q lacks the guide's %s=%s", app, kv[0], kv[1])
		}
	}
}

// TestInjectUninject: inject then uninject gives back the input exactly,
// injecting twice is injecting once, and the output is what the SDK takes.
func TestInjectUninject(t *testing.T) {
	tests := []struct {
		file string
		opts InjectOptions
	}{
		{"notifications.describe.json", InjectOptions{}},
		{"orders.register.json", InjectOptions{Container: "orders", Port: 9090}},
		{"orders.register.json", InjectOptions{Container: "orders", Port: 7000, CASecretCert: "arn:aws:secretsmanager:us-east-1:1:secret:my ca", Image: "example.com/goproxy:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			orig := read(t, tc.file).Bytes()
			td := read(t, tc.file)
			notes, err := Inject(td, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(notes) == 0 || !strings.Contains(notes[0], `load balancer at container "goproxy" port 4143`) {
				t.Errorf("first note %q, want the load balancer change", notes)
			}
			once := td.Bytes()
			if err := ecstest.RegisterTaskDefinition(once); err != nil {
				t.Errorf("the SDK: %v\n%s", err, once)
			}
			checkDependsOn(t, td)

			again, err := ReadTaskDefinition(once)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Inject(again, tc.opts); err != nil {
				t.Fatalf("inject twice: %v", err)
			}
			if got := again.Bytes(); !bytes.Equal(got, once) {
				t.Errorf("inject twice differs from once:\n%s\nonce:\n%s", got, once)
			}

			back, _ := ReadTaskDefinition(once)
			if _, err := Uninject(back); err != nil {
				t.Fatal(err)
			}
			if got := back.Bytes(); !bytes.Equal(got, orig) {
				t.Errorf("uninject:\n%s\nwant the original:\n%s", got, orig)
			}
		})
	}
}

// checkDependsOn: every dependsOn names a container of the task (the
// guide's names init-crt and init-key, which do not exist).
func checkDependsOn(t *testing.T, td *TaskDefinition) {
	t.Helper()
	names := td.ContainerNames()
	for _, c := range td.Containers() {
		for _, d := range c.Array("dependsOn") {
			if n := d.(*Object).String("containerName"); !slices.Contains(names, n) {
				t.Errorf("container %q depends on %q, which is not in %q", c.String("name"), n, names)
			}
		}
	}
}

func TestInjectDetails(t *testing.T) {
	td := read(t, "orders.register.json")
	notes, err := Inject(td, InjectOptions{Container: "orders", Port: 9090})
	if err != nil {
		t.Fatal(err)
	}
	app := td.Container("orders")
	env := map[string]string{}
	for _, kv := range envOf(t, app) {
		env[kv[0]] = kv[1]
	}
	for k, want := range map[string]string{
		"HTTPS_PROXY":         ProxyURL,
		"HTTP_PROXY":          ProxyURL,
		"NO_PROXY":            "169.254.170.2,169.254.169.254,localhost,127.0.0.1,internal.example.com",
		"SSL_CERT_FILE":       CertFile,
		"REQUESTS_CA_BUNDLE":  CertFile,
		"NODE_EXTRA_CA_CERTS": CertFile,
		"DB_HOST":             "orders-db.internal",
	} {
		if env[k] != want {
			t.Errorf("app %s=%q, want %q", k, env[k], want)
		}
	}
	joined := strings.Join(notes, "\n")
	for _, want := range []string{"HTTPS_PROXY=http://corp-proxy.internal:3128: replaced", "no taskRoleArn"} {
		if !strings.Contains(joined, want) {
			t.Errorf("notes lack %q:\n%s", want, joined)
		}
	}
	if names := td.ContainerNames(); !reflect.DeepEqual(names, []string{"init", "datadog-agent", "orders", "goproxy"}) {
		t.Errorf("containers %q", names)
	}
	if td.Container("datadog-agent").Has("dependsOn") {
		t.Error("another container got a dependsOn")
	}
	if td.Container(SidecarName).Has("logConfiguration") {
		t.Error("sidecar has a logConfiguration the app lacks")
	}
	td = read(t, "notifications.describe.json")
	if _, err := Inject(td, InjectOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{SidecarName, InitName} {
		lc, _ := td.Container(n).Get("logConfiguration")
		want, _ := td.Container("notifications").Get("logConfiguration")
		if !bytes.Equal(Encode(lc), Encode(want)) {
			t.Errorf("%s logConfiguration %s, want the app's %s", n, Encode(lc), Encode(want))
		}
	}
	if env := envOf(t, td.Container(SidecarName)); env[8][1] != "8080" {
		t.Errorf("REVERSE_PROXY_PORT %q, want the only mapped port 8080", env[8])
	}
}

func TestInjectErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		opts InjectOptions
		err  error
		want string
	}{
		{"no such container", "orders.register.json", InjectOptions{Container: "order", Port: 1}, ErrContainerNotFound, `no container named "order" in task family "orders"; its containers are datadog-agent, orders`},
		{"which container", "orders.register.json", InjectOptions{}, ErrContainerNotFound, "the task has 2 containers (datadog-agent, orders): say which one serves with --container"},
		{"which port", "orders.register.json", InjectOptions{Container: "orders"}, ErrPort, "maps ports 9090, 9091; say which one"},
		{"no port", "orders.register.json", InjectOptions{Container: "datadog-agent", Port: 0}, nil, ""},
		{"goproxy's port", "orders.register.json", InjectOptions{Container: "orders", Port: 4140}, ErrPort, "one of goproxy's own ports"},
		{"bad port", "orders.register.json", InjectOptions{Container: "orders", Port: 70000}, ErrPort, "want 1 to 65535"},
		{"bridge", "bridge.json", InjectOptions{}, ErrNetworkMode, "sets no networkMode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td := read(t, tc.file)
			before := td.Bytes()
			_, err := Inject(td, tc.opts)
			if tc.err == nil {
				if err != nil {
					t.Errorf("unexpected %v", err)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %v containing %q", err, tc.err, tc.want)
			}
			if !bytes.Equal(td.Bytes(), before) {
				t.Error("a failed Inject changed the task definition")
			}
		})
	}

	// A container with no port mappings and no --port.
	td, _ := ReadTaskDefinition([]byte(`{"family": "w", "networkMode": "awsvpc", "containerDefinitions": [{"name": "worker", "image": "w"}]}`))
	if _, err := Inject(td, InjectOptions{}); !errors.Is(err, ErrPort) || !strings.Contains(err.Error(), "has no portMappings; say which port") {
		t.Errorf("no port: %v", err)
	}
	// The guide's hand-made sidecar.
	td, _ = ReadTaskDefinition([]byte(`{"family": "w", "networkMode": "awsvpc", "containerDefinitions": [{"name": "app", "image": "a"}, {"name": "goproxy", "image": "g"}]}`))
	if _, err := Inject(td, InjectOptions{Container: "app", Port: 80}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "speedctl did not add") {
		t.Errorf("hand-made goproxy: %v", err)
	}
	if _, err := Uninject(td); !errors.Is(err, ErrNotInjected) {
		t.Errorf("uninject of a hand-made goproxy: %v", err)
	}
	td, _ = ReadTaskDefinition([]byte(`{"family": "w", "networkMode": "awsvpc", "containerDefinitions": [{"name": "app", "image": "a"}]}`))
	if _, err := Uninject(td); !errors.Is(err, ErrNotInjected) {
		t.Errorf("uninject of a plain task: %v", err)
	}
	// A container on goproxy's port.
	td, _ = ReadTaskDefinition([]byte(`{"family": "w", "networkMode": "awsvpc", "containerDefinitions": [{"name": "app", "image": "a", "portMappings": [{"containerPort": 80}]}, {"name": "x", "image": "x", "portMappings": [{"containerPort": 4143}]}]}`))
	if _, err := Inject(td, InjectOptions{Container: "app"}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `container "x" uses port 4143`) {
		t.Errorf("port conflict: %v", err)
	}
}

func TestForwarder(t *testing.T) {
	cfg := map[string]string{
		"SPEEDSCALE_API_KEY": "key-123", "SPEEDSCALE_APP_URL": "hub.example.com", "TENANT_ID": "t-1",
		"TENANT_NAME": "acme", "SUB_TENANT_NAME": "default", "TENANT_BUCKET": "acme-bucket", "TENANT_REGION": "eu-west-1",
		"SUB_TENANT_STREAM": "acme-stream", "SPEEDSCALE_DLP_CONFIG": `{"id": "x", "note": "${not a template}"}`,
	}
	f, notes, err := NewForwarder(ForwarderOptions{Config: func(k string) string { return cfg[k] }, LogGroup: "/ecs/forwarder"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ecstest.Forwarder(f.JSON()); err != nil {
		t.Errorf("the SDK: %v\n%s", err, f.JSON())
	}
	env := envOf(t, f.TaskDefinition.Array("containerDefinitions")[0].(*Object))
	var names []string
	for _, kv := range env {
		names = append(names, kv[0])
	}
	if want := append(ForwarderVars[:9:9], "SPEEDSCALE_DLP_CONFIG"); !reflect.DeepEqual(names, want) {
		t.Errorf("forwarder env %q, want %q", names, want)
	}
	if env[0] != [2]string{"CLUSTER_NAME", "ecs"} {
		t.Errorf("CLUSTER_NAME %q, want the guide's ecs", env[0])
	}
	if !strings.Contains(strings.Join(notes, "\n"), "in clear") {
		t.Errorf("notes %q lack the clear-text API key warning", notes)
	}

	tf := f.Terraform("~/.speedctl/config")
	file, diags := hclsyntax.ParseConfig(tf, "forwarder.tf", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("Terraform does not parse: %v\n%s", diags, tf)
	}
	body := file.Body.(*hclsyntax.Body)
	var blocks []string
	for _, b := range body.Blocks {
		blocks = append(blocks, b.Type+" "+strings.Join(b.Labels, "."))
	}
	if want := []string{"resource aws_ecs_task_definition.forwarder", "resource aws_service_discovery_service.forwarder", "resource aws_ecs_service.forwarder"}; !reflect.DeepEqual(blocks, want) {
		t.Errorf("blocks %q, want %q", blocks, want)
	}
	// The container definitions in the Terraform are the JSON's.
	attr := body.Blocks[0].Body.Attributes["container_definitions"]
	call := attr.Expr.(*hclsyntax.FunctionCallExpr)
	v, diags := call.Args[0].Value(nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got, want := ctyJSON(t, v), Encode(f.TaskDefinition.Array("containerDefinitions")); !sameJSON(got, want) {
		t.Errorf("Terraform's container_definitions\n%s\nwant the JSON's\n%s", got, want)
	}

	_, _, err = NewForwarder(ForwarderOptions{Config: func(k string) string { return map[string]string{"TENANT_ID": "t"}[k] }})
	if !errors.Is(err, ErrMissingConfig) || !strings.Contains(err.Error(), "SPEEDSCALE_APP_URL, SPEEDSCALE_API_KEY; set them with `speedctl config set SPEEDSCALE_APP_URL=... SPEEDSCALE_API_KEY=...`") {
		t.Errorf("missing values: %v", err)
	}
	f, _, err = NewForwarder(ForwarderOptions{Config: func(k string) string { return cfg[k] }, APIKeySecret: "arn:aws:secretsmanager:eu-west-1:1:secret:api", ExecutionRoleArn: "arn:aws:iam::1:role/exec",
		Cluster: "prod", NamespaceID: "ns-1", Subnets: []string{"subnet-a", "subnet-b"}, SecurityGroups: []string{"sg-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ecstest.Forwarder(f.JSON()); err != nil {
		t.Errorf("the SDK: %v", err)
	}
	if j := string(f.JSON()); strings.Contains(j, "key-123") || !strings.Contains(j, `"valueFrom": "arn:aws:secretsmanager:eu-west-1:1:secret:api"`) || strings.Count(j, "<") != 1 {
		t.Errorf("with --api-key-secret and every value given:\n%s", j)
	}
}

func ctyJSON(t *testing.T, v cty.Value) []byte {
	t.Helper()
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestForwarderMatchesGuide: a config holding the guide's values gives the
// guide's forwarder environment, name for name, value for value, in order,
// and the guide's port, CPU and memory.
func TestForwarderMatchesGuide(t *testing.T) {
	guide := guideEnv(t, "guide-forwarder-env.txt")
	cfg := map[string]string{}
	for _, kv := range guide {
		cfg[kv[0]] = kv[1]
	}
	f, _, err := NewForwarder(ForwarderOptions{Config: func(k string) string { return cfg[k] }})
	if err != nil {
		t.Fatal(err)
	}
	c := f.TaskDefinition.Array("containerDefinitions")[0].(*Object)
	if got := envOf(t, c); !reflect.DeepEqual(got, guide) {
		t.Errorf("forwarder env\n got  %q\n want %q", got, guide)
	}
	if got := string(Compact(c.Array("portMappings"))); got != `[{"containerPort":8888}]` {
		t.Errorf("portMappings %s", got)
	}
	if f.TaskDefinition.String("cpu") != "256" || f.TaskDefinition.String("memory") != "512" || f.TaskDefinition.String("networkMode") != "awsvpc" {
		t.Errorf("task %s", Compact(f.TaskDefinition))
	}
}

func TestInjectWithoutTaskMemory(t *testing.T) {
	td, err := ReadTaskDefinition([]byte(`{"family": "w", "networkMode": "awsvpc", "requiresCompatibilities": ["EC2"], "containerDefinitions": [{"name": "app", "image": "a", "memory": 256, "portMappings": [{"containerPort": 80}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	orig := td.Bytes()
	notes, err := Inject(td, InjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "the task sets no memory") {
		t.Errorf("notes %q", notes)
	}
	for _, n := range []string{InitName, SidecarName} {
		if v, ok := number(td.Container(n).vals["memoryReservation"]); !ok || v <= 0 {
			t.Errorf("%s memoryReservation %v", n, td.Container(n).vals["memoryReservation"])
		}
	}
	if err := ecstest.RegisterTaskDefinition(td.Bytes()); err != nil {
		t.Error(err)
	}
	if _, err := Uninject(td); err != nil || !bytes.Equal(td.Bytes(), orig) {
		t.Errorf("uninject: %v\n%s", err, td.Bytes())
	}
}
