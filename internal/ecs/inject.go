package ecs

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Names and values of the deployment guide's sidecar.
const (
	SidecarName           = "goproxy"    // the sidecar container
	InitName              = "init"       // the container that fetches the CA (the guide's "init")
	VolumeName            = "speedscale" // the task volume holding tls.crt and tls.key
	CertDir               = "/etc/ssl/speedscale"
	CertFile              = CertDir + "/tls.crt"
	InPort                = 4143 // goproxy's inbound port: the load balancer's new target
	OutPort               = 4140 // goproxy's outbound proxy: the app's HTTP_PROXY
	diagPort              = 4100 // goproxy's diagnostics, on loopback
	ProxyURL              = "http://localhost:4140"
	DefaultInitImage      = "amazon/aws-cli:2.8.4" // the guide's
	DefaultGoproxyImage   = "ghcr.io/tapwire/goproxy:latest"
	DefaultForwarderImage = "ghcr.io/tapwire/forwarder:latest"
	DefaultForwarderAddr  = "forwarder.ecs.local:8888"
	DefaultCluster        = "ecs" // the guide's CLUSTER_NAME and APP_POD_NAMESPACE
	DefaultCASecretCert   = "tls.crt"
	DefaultCASecretKey    = "tls.key"

	initMemory    = 32  // MiB reserved for init when the task sets no memory
	sidecarMemory = 128 // MiB reserved for goproxy when the task sets no memory

	// StateLabel is the docker label on the sidecar that records what
	// Inject changed in the app's container, so that Uninject can undo
	// exactly that. Its value is JSON.
	StateLabel = "io.tapwire.speedctl.inject"
)

// NoProxy are the hosts the app reaches directly, not through goproxy: the
// ECS task metadata and credentials endpoint (169.254.170.2), the EC2
// instance metadata service, and loopback (goproxy itself).
var NoProxy = []string{"169.254.170.2", "169.254.169.254", "localhost", "127.0.0.1"}

// Errors of Inject and Uninject.
var (
	ErrContainerNotFound = errors.New("container not found")
	ErrPort              = errors.New("app port")
	ErrNotInjected       = errors.New("no speedctl sidecar in this task definition")
	ErrConflict          = errors.New("conflicts with the sidecar")
	ErrNetworkMode       = errors.New("network mode")
)

// InjectOptions say how Inject wires the sidecar.
type InjectOptions struct {
	Container     string // the app's container; if zero, the task's only container
	Port          int    // the app's port (REVERSE_PROXY_PORT); if zero, the app's only containerPort
	ClusterName   string // APP_POD_NAMESPACE; if zero, DefaultCluster
	AppLabel      string // APP_LABEL and APP_POD_NAME; if zero, the container's name
	ForwarderAddr string // FORWARDER_ADDR; if zero, DefaultForwarderAddr
	CASecretCert  string // Secrets Manager id (name or ARN) of the CA certificate; if zero, "tls.crt"
	CASecretKey   string // Secrets Manager id of the CA key; if zero, "tls.key"
	Image         string // goproxy's image; if zero, DefaultGoproxyImage
	InitImage     string // the init container's image (needs bash and the AWS CLI); if zero, DefaultInitImage
	LogLevel      string // LOG_LEVEL; if zero, "info"

	// ForwarderToken is goproxy's FORWARDER_TOKEN, the forwarder's token
	// (speedctl keeps it in the config). If zero, none: the forwarder
	// must then accept batches from anyone.
	ForwarderToken string
}

func (o *InjectOptions) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.ClusterName, DefaultCluster)
	def(&o.AppLabel, o.Container)
	def(&o.ForwarderAddr, DefaultForwarderAddr)
	def(&o.CASecretCert, DefaultCASecretCert)
	def(&o.CASecretKey, DefaultCASecretKey)
	def(&o.Image, DefaultGoproxyImage)
	def(&o.InitImage, DefaultInitImage)
	def(&o.LogLevel, "info")
}

// state is what StateLabel holds.
type state struct {
	Version int                          `json:"v"`
	App     string                       `json:"app"`
	Port    int                          `json:"port"`
	Env     map[string][]json.RawMessage `json:"env"`              // the app's entries of each variable before, in order; none when unset
	AppKeys []string                     `json:"absent,omitempty"` // keys of the app's container that were absent
	TaskKey []string                     `json:"taskAbsent,omitempty"`
}

// appEnv returns the variables Inject sets on the app, in order.
func appEnv(noProxy string) [][2]string {
	return [][2]string{
		{"SSL_CERT_FILE", CertFile},
		{"HTTP_PROXY", ProxyURL},
		{"HTTPS_PROXY", ProxyURL},
		{"NO_PROXY", noProxy},
		{"REQUESTS_CA_BUNDLE", CertFile},
		{"NODE_EXTRA_CA_CERTS", CertFile},
	}
}

// SidecarEnv returns goproxy's environment as the guide sets it, with the
// values of o (defaults applied) and port.
func SidecarEnv(o InjectOptions, port int) [][2]string {
	o.setDefaults()
	env := [][2]string{
		{"LOG_LEVEL", o.LogLevel},
		{"APP_LABEL", o.AppLabel},
		{"APP_POD_NAME", o.AppLabel},
		{"APP_POD_NAMESPACE", o.ClusterName},
		{"CAPTURE_MODE", "proxy"},
		{"PROXY_TYPE", "dual"},
		{"PROXY_PROTOCOL", "tcp:http"},
		{"TLS_OUT_UNWRAP", "true"},
		{"REVERSE_PROXY_PORT", strconv.Itoa(port)},
		{"FORWARDER_ADDR", o.ForwarderAddr},
	}
	if o.ForwarderToken != "" {
		env = append(env, [2]string{TokenKey, o.ForwarderToken})
	}
	return env
}

// InitCommand is the init container's shell command: the guide's, writing
// with > so that a restarted task does not append a second copy.
func InitCommand(certSecret, keySecret string) string {
	get := func(id, file string) string {
		return "aws secretsmanager get-secret-value --secret-id " + shellQuote(id) + " --query SecretString --output text > " + CertDir + "/" + file
	}
	return get(certSecret, "tls.crt") + " && " + get(keySecret, "tls.key")
}

// Inject adds the guide's sidecar to td for the app in o.Container: the
// init container that fetches the CA from Secrets Manager into the task
// volume, the goproxy container, the app's proxy and CA variables, mount
// and dependsOn, and the volume. A task definition that already has
// speedctl's sidecar gets it replaced, so injecting twice is injecting
// once. Inject returns notes for the user: the load balancer change first.
func Inject(td *TaskDefinition, o InjectOptions) ([]string, error) {
	var notes []string
	if sc := td.Container(SidecarName); sc != nil {
		if _, err := readState(sc); err != nil {
			return nil, fmt.Errorf("%w: the task already has a container named %q that speedctl did not add (made by hand from the guide?); "+
				"start from the task definition without the guide's containers, or remove them (%s, %s), the %q volume and the app's proxy variables",
				ErrConflict, SidecarName, InitName, SidecarName, VolumeName)
		}
		if _, err := Uninject(td); err != nil {
			return nil, fmt.Errorf("remove the sidecar injected before: %w", err)
		}
		notes = append(notes, "the task definition already had speedctl's sidecar: replaced it")
	}
	if err := checkNetworkMode(td); err != nil {
		return nil, err
	}
	names := td.ContainerNames()
	for _, n := range []string{InitName, SidecarName} {
		if slices.Contains(names, n) {
			return nil, fmt.Errorf("%w: the task already has a container named %q", ErrConflict, n)
		}
	}
	if o.Container == "" {
		if len(names) != 1 {
			return nil, fmt.Errorf("%w: the task has %d containers (%s): say which one serves with --container", ErrContainerNotFound, len(names), strings.Join(names, ", "))
		}
		o.Container = names[0]
	}
	app := td.Container(o.Container)
	if app == nil {
		return nil, fmt.Errorf("%w: no container named %q in task family %q; its containers are %s", ErrContainerNotFound, o.Container, td.String("family"), strings.Join(names, ", "))
	}
	o.setDefaults()
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, o.LogLevel) {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", o.LogLevel)
	}
	port, portNotes, err := appPort(td, app, o.Port)
	if err != nil {
		return nil, err
	}
	notes = append(notes, portNotes...)
	for _, v := range td.Array("volumes") {
		if vo, ok := v.(*Object); ok && vo.String("name") == VolumeName {
			return nil, fmt.Errorf("%w: the task already has a volume named %q", ErrConflict, VolumeName)
		}
	}
	for _, m := range app.Array("mountPoints") {
		if mo, ok := m.(*Object); ok && strings.TrimSuffix(mo.String("containerPath"), "/") == CertDir {
			return nil, fmt.Errorf("%w: container %q already mounts something at %s", ErrConflict, o.Container, CertDir)
		}
	}

	st := state{Version: 1, App: o.Container, Port: port, Env: map[string][]json.RawMessage{}}
	for _, k := range []string{"environment", "mountPoints", "dependsOn"} {
		if !app.Has(k) {
			st.AppKeys = append(st.AppKeys, k)
		}
	}
	if !td.Has("volumes") {
		st.TaskKey = append(st.TaskKey, "volumes")
	}

	// The app: CA and proxy variables, the mount, and start after init.
	env := envList(app)
	noProxy := slices.Clone(NoProxy)
	if old, ok := lookupEnv(env, "NO_PROXY"); ok {
		for _, h := range strings.Split(old, ",") {
			if h = strings.TrimSpace(h); h != "" && !slices.Contains(noProxy, h) {
				noProxy = append(noProxy, h)
			}
		}
	}
	for _, kv := range appEnv(strings.Join(noProxy, ",")) {
		st.Env[kv[0]] = []json.RawMessage{}
		for _, e := range env {
			if envName(e) == kv[0] {
				st.Env[kv[0]] = append(st.Env[kv[0]], Compact(e))
			}
		}
		if old, ok := lookupEnv(env, kv[0]); ok && old != kv[1] && kv[0] != "NO_PROXY" {
			notes = append(notes, fmt.Sprintf("container %q had %s=%s: replaced with %s (uninject puts it back)", o.Container, kv[0], old, kv[1]))
		}
		env = setEnv(env, kv[0], kv[1])
	}
	app.Set("environment", env)
	app.Set("mountPoints", append(app.Array("mountPoints"), mountPoint(true)))
	app.Set("dependsOn", append(app.Array("dependsOn"),
		NewObject("containerName", InitName, "condition", "SUCCESS"),
		NewObject("containerName", SidecarName, "condition", "START")))

	// The init container, first; the sidecar, last.
	logs, _ := app.Get("logConfiguration")
	initC := NewObject(
		"name", InitName,
		"image", o.InitImage,
		"essential", false,
		"entryPoint", []any{"bash"},
		"command", []any{"-c", InitCommand(o.CASecretCert, o.CASecretKey)},
		"mountPoints", []any{mountPoint(false)},
	)
	label, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode the sidecar's label: %w", err)
	}
	var envs []any
	for _, kv := range SidecarEnv(o, port) {
		envs = append(envs, NewObject("name", kv[0], "value", kv[1]))
	}
	sidecar := NewObject(
		"name", SidecarName,
		"image", o.Image,
		"essential", true,
		"dependsOn", []any{NewObject("containerName", InitName, "condition", "SUCCESS")},
		"mountPoints", []any{mountPoint(true)},
		"portMappings", []any{NewObject("containerPort", InPort), NewObject("containerPort", OutPort)},
		"environment", envs,
	)
	if logs != nil {
		initC.Set("logConfiguration", clone(logs))
		sidecar.Set("logConfiguration", clone(logs))
	}
	if !td.Has("memory") {
		// Without a task-level memory, ECS (on EC2) needs one on every container.
		initC.Set("memoryReservation", initMemory)
		sidecar.Set("memoryReservation", sidecarMemory)
		notes = append(notes, fmt.Sprintf("the task sets no memory, so each container needs its own: init reserves %d MiB, goproxy %d MiB (memoryReservation)", initMemory, sidecarMemory))
	}
	sidecar.Set("dockerLabels", NewObject(StateLabel, string(label)))
	cs := td.Array("containerDefinitions")
	td.Set("containerDefinitions", append(append([]any{initC}, cs...), sidecar))
	td.Set("volumes", append(td.Array("volumes"), NewObject("name", VolumeName)))

	notes = append([]string{fmt.Sprintf("point the service's load balancer at container %q port %d instead of %q port %d "+
		"(Terraform: container_name = %q and container_port = %d in load_balancer; "+
		"CLI: aws ecs update-service --load-balancers targetGroupArn=ARN,containerName=%s,containerPort=%d), "+
		"and let the load balancer's security group reach port %d",
		SidecarName, InPort, o.Container, port, SidecarName, InPort, SidecarName, InPort, InPort)}, notes...)
	if role := td.String("taskRoleArn"); role == "" {
		notes = append(notes, fmt.Sprintf("the task has no taskRoleArn: the init container reads %s and %s from Secrets Manager with the task role; "+
			"add one allowed secretsmanager:GetSecretValue on them (and kms:Decrypt if they use a customer-managed key)", o.CASecretCert, o.CASecretKey))
	} else {
		notes = append(notes, fmt.Sprintf("the task role %s must be allowed secretsmanager:GetSecretValue on %s and %s (and kms:Decrypt if they use a customer-managed key)", role, o.CASecretCert, o.CASecretKey))
	}
	return notes, nil
}

// Uninject removes what Inject added and puts back the app's variables as
// they were. It returns notes for the user: the load balancer change.
func Uninject(td *TaskDefinition) ([]string, error) {
	sc := td.Container(SidecarName)
	if sc == nil {
		return nil, fmt.Errorf("%w: no container named %q", ErrNotInjected, SidecarName)
	}
	st, err := readState(sc)
	if err != nil {
		return nil, err
	}
	app := td.Container(st.App)
	if app == nil {
		return nil, fmt.Errorf("%w: the sidecar was injected for container %q, which is gone", ErrContainerNotFound, st.App)
	}
	env := envList(app)
	for _, kv := range appEnv("") {
		name := kv[0]
		old, recorded := st.Env[name]
		if !recorded {
			continue
		}
		if len(old) == 0 {
			env = slices.DeleteFunc(env, func(e any) bool { return envName(e) == name })
			continue
		}
		// Put back the entries of this name in order; extra ones are dropped.
		var kept []any
		n := 0
		for _, e := range env {
			if envName(e) != name {
				kept = append(kept, e)
				continue
			}
			if n < len(old) {
				v, err := Decode(old[n])
				if err != nil {
					return nil, fmt.Errorf("%w: the recorded %s is not JSON", ErrNotInjected, name)
				}
				kept = append(kept, v)
				n++
			}
		}
		env = kept
	}
	app.Set("environment", env)
	app.Set("mountPoints", slices.DeleteFunc(app.Array("mountPoints"), func(m any) bool {
		mo, ok := m.(*Object)
		return ok && mo.String("sourceVolume") == VolumeName && mo.String("containerPath") == CertDir
	}))
	app.Set("dependsOn", slices.DeleteFunc(app.Array("dependsOn"), func(d any) bool {
		do, ok := d.(*Object)
		return ok && (do.String("containerName") == InitName || do.String("containerName") == SidecarName)
	}))
	for _, k := range st.AppKeys {
		if len(app.Array(k)) == 0 {
			app.Delete(k)
		}
	}
	td.Set("containerDefinitions", slices.DeleteFunc(td.Array("containerDefinitions"), func(c any) bool {
		n := c.(*Object).String("name")
		return n == SidecarName || n == InitName
	}))
	td.Set("volumes", slices.DeleteFunc(td.Array("volumes"), func(v any) bool {
		vo, ok := v.(*Object)
		return ok && vo.String("name") == VolumeName
	}))
	if slices.Contains(st.TaskKey, "volumes") && len(td.Array("volumes")) == 0 {
		td.Delete("volumes")
	}
	return []string{fmt.Sprintf("point the service's load balancer back at container %q port %d (it targeted %q port %d)", st.App, st.Port, SidecarName, InPort)}, nil
}

func readState(sidecar *Object) (*state, error) {
	labels, _ := sidecar.Get("dockerLabels")
	lo, _ := labels.(*Object)
	if lo == nil || lo.String(StateLabel) == "" {
		return nil, fmt.Errorf("%w: container %q has no %s label (not added by speedctl ecs inject)", ErrNotInjected, SidecarName, StateLabel)
	}
	var st state
	if err := json.Unmarshal([]byte(lo.String(StateLabel)), &st); err != nil || st.Version != 1 || st.App == "" {
		return nil, fmt.Errorf("%w: container %q's %s label is not one speedctl wrote", ErrNotInjected, SidecarName, StateLabel)
	}
	return &st, nil
}

func checkNetworkMode(td *TaskDefinition) error {
	switch m := td.String("networkMode"); m {
	case "awsvpc", "host":
		return nil
	case "":
		return fmt.Errorf("%w: the task definition sets no networkMode, so it is bridge on EC2; goproxy reaches the app on localhost, "+
			"which needs containers that share the task's network: set networkMode to awsvpc (as Fargate requires)", ErrNetworkMode)
	default:
		return fmt.Errorf("%w %q: goproxy reaches the app on localhost, which needs containers that share the task's network: "+
			"set networkMode to awsvpc (as Fargate requires)", ErrNetworkMode, m)
	}
}

// appPort picks the app's port and checks that no container of the task
// uses goproxy's ports.
func appPort(td *TaskDefinition, app *Object, port int) (int, []string, error) {
	var notes []string
	var mapped []int
	for _, pm := range app.Array("portMappings") {
		if po, ok := pm.(*Object); ok {
			if n, ok := number(po.vals["containerPort"]); ok {
				mapped = append(mapped, n)
			}
		}
	}
	name := app.String("name")
	if port == 0 {
		switch len(mapped) {
		case 1:
			port = mapped[0]
		case 0:
			return 0, nil, fmt.Errorf("%w: container %q has no portMappings; say which port it serves on with --port", ErrPort, name)
		default:
			return 0, nil, fmt.Errorf("%w: container %q maps ports %s; say which one goproxy should sit in front of with --port", ErrPort, name, joinInts(mapped))
		}
	} else if !slices.Contains(mapped, port) {
		notes = append(notes, fmt.Sprintf("container %q does not map port %d (it maps %s): check that it serves on %d", name, port, orNone(joinInts(mapped)), port))
	}
	if port < 1 || port > 65535 {
		return 0, nil, fmt.Errorf("%w %d: want 1 to 65535", ErrPort, port)
	}
	for _, c := range td.Containers() {
		for _, pm := range c.Array("portMappings") {
			po, _ := pm.(*Object)
			if po == nil {
				continue
			}
			n, _ := number(po.vals["containerPort"])
			if n == InPort || n == OutPort {
				return 0, nil, fmt.Errorf("%w: container %q uses port %d, which goproxy listens on in the same network namespace", ErrConflict, c.String("name"), n)
			}
		}
	}
	if port == InPort || port == OutPort || port == diagPort {
		return 0, nil, fmt.Errorf("%w %d is one of goproxy's own ports (%d, %d, %d): the app and goproxy share localhost", ErrPort, port, InPort, OutPort, diagPort)
	}
	return port, notes, nil
}

func mountPoint(readOnly bool) *Object {
	m := NewObject("sourceVolume", VolumeName, "containerPath", CertDir)
	if readOnly {
		m.Set("readOnly", true)
	}
	return m
}

func envList(c *Object) []any { return slices.Clone(c.Array("environment")) }

func envName(e any) string {
	if o, ok := e.(*Object); ok {
		return o.String("name")
	}
	return ""
}

func lookupEnv(env []any, name string) (string, bool) {
	for _, e := range env {
		if envName(e) == name {
			return e.(*Object).String("value"), true
		}
	}
	return "", false
}

// setEnv sets name in place (every entry of that name) or appends it.
func setEnv(env []any, name, value string) []any {
	found := false
	for _, e := range env {
		if envName(e) == name {
			e.(*Object).Set("value", value)
			found = true
		}
	}
	if !found {
		env = append(env, NewObject("name", name, "value", value))
	}
	return env
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// shellQuote quotes s for bash when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
