package ecs

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"
)

// ErrMissingConfig is returned by Forwarder when a value it needs is not
// in the config.
var ErrMissingConfig = errors.New("missing in the config")

// ForwarderVars are the forwarder's environment variables that come from
// speedctl's config: the guide's, in the guide's order, then the
// optional ones of the contract.
var ForwarderVars = []string{
	"CLUSTER_NAME", "SPEEDSCALE_API_KEY", "SPEEDSCALE_APP_URL", "SUB_TENANT_NAME", "SUB_TENANT_STREAM",
	"TENANT_BUCKET", "TENANT_NAME", "TENANT_ID", "TENANT_REGION",
	"SPEEDSCALE_FILTER_RULE", "SPEEDSCALE_DLP_CONFIG", "SPEEDSCALE_REDACT", "FORWARDER_TOKEN",
}

// TokenKey is the config's key of the token goproxy and the forwarder
// share (FORWARDER_TOKEN on both).
const TokenKey = "FORWARDER_TOKEN"

// NewToken returns a new random token for FORWARDER_TOKEN: 32 bytes,
// base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// RequiredForwarderVars must be in the config for Forwarder.
var RequiredForwarderVars = []string{"SPEEDSCALE_APP_URL", "SPEEDSCALE_API_KEY", "TENANT_ID"}

// ForwarderName is the forwarder's family, container, service and
// service-discovery name, as in the guide.
const ForwarderName = "forwarder"

// ForwarderPort is the port goproxies post batches to.
const ForwarderPort = 8888

// ForwarderOptions say what Forwarder writes. Values the user's AWS
// account holds (roles, cluster, subnets) are optional: when zero, the
// Terraform form refers to resources by the guide's names and the JSON
// form has a <placeholder>.
type ForwarderOptions struct {
	Config           func(key string) string // the values of ~/.speedctl/config
	Image            string                  // the forwarder's image; if zero, DefaultForwarderImage
	ClusterName      string                  // CLUSTER_NAME; if zero, the config's, else DefaultCluster
	APIKeySecret     string                  // if set, the ARN of a Secrets Manager secret holding the API key, given to the container as a secret instead of in clear
	ExecutionRoleArn string                  // the task's execution role
	Cluster          string                  // the ECS cluster (name or ARN) the service runs in
	NamespaceID      string                  // the private DNS namespace (the guide's ecs.local) of the service-discovery entry
	Subnets          []string                // the service's subnets
	SecurityGroups   []string                // the service's security groups; they must let goproxies reach port 8888
	LogGroup         string                  // if set, awslogs to this CloudWatch log group
	Region           string                  // the log group's region; if zero, TENANT_REGION
}

// Forwarder is the forwarder's deployment: the three pieces of the guide.
type Forwarder struct {
	TaskDefinition *Object // register-task-definition input
	Discovery      *Object // servicediscovery create-service input
	Service        *Object // ecs create-service input
	opts           ForwarderOptions
}

// NewForwarder fills the guide's forwarder from the config. Notes are for
// the user: unset optional values, secrets in clear.
func NewForwarder(o ForwarderOptions) (*Forwarder, []string, error) {
	get := o.Config
	if get == nil {
		get = func(string) string { return "" }
	}
	var missing, notes []string
	for _, k := range RequiredForwarderVars {
		if get(k) == "" && !(k == "SPEEDSCALE_API_KEY" && o.APIKeySecret != "") {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w: %s; set them with `speedctl config set %s`", ErrMissingConfig,
			strings.Join(missing, ", "), strings.Join(missing, "=... ")+"=...")
	}
	if o.Image == "" {
		o.Image = DefaultForwarderImage
	}
	if o.ClusterName == "" {
		o.ClusterName = get("CLUSTER_NAME")
	}
	if o.ClusterName == "" {
		o.ClusterName = DefaultCluster
	}
	if o.Region == "" {
		o.Region = get("TENANT_REGION")
	}
	if o.LogGroup != "" && o.Region == "" {
		return nil, nil, fmt.Errorf("%w: the log group's region: set TENANT_REGION or pass --region", ErrMissingConfig)
	}

	var env, secrets []any
	var unset []string
	for _, k := range ForwarderVars {
		v := get(k)
		switch {
		case k == "CLUSTER_NAME":
			v = o.ClusterName
		case k == "SPEEDSCALE_API_KEY" && o.APIKeySecret != "":
			secrets = append(secrets, NewObject("name", k, "valueFrom", o.APIKeySecret))
			continue
		}
		if v == "" {
			if slices.Index(ForwarderVars, k) < 9 {
				unset = append(unset, k)
			}
			continue
		}
		env = append(env, NewObject("name", k, "value", v))
	}
	if len(unset) > 0 {
		notes = append(notes, fmt.Sprintf("not in the config, left out: %s (speedctl config set KEY=VALUE)", strings.Join(unset, ", ")))
	}
	if get(TokenKey) == "" {
		notes = append(notes, "no FORWARDER_TOKEN: the forwarder accepts batches from anyone who reaches port 8888, "+
			"and the security group is the only boundary")
	}
	if o.APIKeySecret == "" {
		notes = append(notes, "SPEEDSCALE_API_KEY is written in clear into the task definition, as in the guide; "+
			"--api-key-secret ARN reads it from Secrets Manager instead")
	}
	c := NewObject(
		"name", ForwarderName,
		"image", o.Image,
		"essential", true,
		"portMappings", []any{NewObject("containerPort", ForwarderPort)},
		"environment", env,
	)
	if len(secrets) > 0 {
		c.Set("secrets", secrets)
	}
	if o.LogGroup != "" {
		c.Set("logConfiguration", NewObject("logDriver", "awslogs", "options", NewObject(
			"awslogs-create-group", "true",
			"awslogs-group", o.LogGroup,
			"awslogs-region", o.Region,
			"awslogs-stream-prefix", "ecs",
		)))
	}
	td := NewObject("family", ForwarderName)
	td.Set("executionRoleArn", orPlaceholder(o.ExecutionRoleArn, "execution role ARN"))
	td.Set("requiresCompatibilities", []any{"FARGATE"})
	td.Set("networkMode", "awsvpc")
	td.Set("cpu", "256")
	td.Set("memory", "512")
	td.Set("containerDefinitions", []any{c})

	ns := orPlaceholder(o.NamespaceID, "private DNS namespace id, ns-...")
	disc := NewObject(
		"Name", ForwarderName,
		"NamespaceId", ns,
		"DnsConfig", NewObject("DnsRecords", []any{NewObject("Type", "A", "TTL", 10)}),
	)
	svc := NewObject(
		"cluster", orPlaceholder(o.Cluster, "cluster name"),
		"serviceName", ForwarderName,
		"taskDefinition", ForwarderName,
		"desiredCount", 1,
		"launchType", "FARGATE",
		"networkConfiguration", NewObject("awsvpcConfiguration", NewObject(
			"subnets", listOrPlaceholder(o.Subnets, "subnet id"),
			"securityGroups", listOrPlaceholder(o.SecurityGroups, "security group id"),
			"assignPublicIp", "DISABLED",
		)),
		"serviceRegistries", []any{NewObject(
			"registryArn", "<Service.Arn printed by aws servicediscovery create-service>",
			"containerName", ForwarderName,
		)},
	)
	return &Forwarder{TaskDefinition: td, Discovery: disc, Service: svc, opts: o}, notes, nil
}

// JSON returns the three pieces as one JSON object, each the input of the
// AWS CLI command that creates it: taskDefinition (aws ecs
// register-task-definition --cli-input-json), serviceDiscovery (aws
// servicediscovery create-service --cli-input-json) and service (aws ecs
// create-service --cli-input-json).
func (f *Forwarder) JSON() []byte {
	return Encode(NewObject("taskDefinition", f.TaskDefinition, "serviceDiscovery", f.Discovery, "service", f.Service))
}

// Terraform returns the guide's three resources, formatted as terraform
// fmt does.
func (f *Forwarder) Terraform(source string) []byte {
	o := f.opts
	ref := func(val, expr string) string {
		if val != "" {
			return hclString(val)
		}
		return expr
	}
	list := func(vals []string, expr string) string {
		if len(vals) == 0 {
			return expr
		}
		q := make([]any, len(vals))
		for i, v := range vals {
			q[i] = v
		}
		return hclValue(q, "")
	}
	ns := ref(o.NamespaceID, "aws_service_discovery_private_dns_namespace.cluster.id")
	var b strings.Builder
	fmt.Fprintf(&b, `# The Tapwire forwarder as in the deployment guide: its task definition, its
# service-discovery entry and its ECS service, filled from %s
# by speedctl ecs forwarder. goproxies reach it at forwarder.NAMESPACE:8888
# (the guide's forwarder.ecs.local:8888).
`, source)
	var refs []string
	for _, r := range [][3]string{
		{o.ExecutionRoleArn, "aws_iam_role.exec", "--execution-role-arn"},
		{o.Cluster, "aws_ecs_cluster.cluster", "--cluster"},
		{o.NamespaceID, "aws_service_discovery_private_dns_namespace.cluster", "--namespace-id"},
		{strings.Join(o.Subnets, ","), "data.aws_subnets.private", "--subnets"},
		{strings.Join(o.SecurityGroups, ","), "var.sg_id", "--security-groups"},
	} {
		if r[0] == "" {
			refs = append(refs, fmt.Sprintf("#   %-52s (or %s)", r[1], r[2]))
		}
	}
	if len(refs) > 0 {
		b.WriteString("#\n# It refers to what the rest of your configuration defines, by the guide's names:\n")
		b.WriteString(strings.Join(refs, "\n") + "\n")
	}
	c := f.TaskDefinition.Array("containerDefinitions")
	fmt.Fprintf(&b, `
resource "aws_ecs_task_definition" "forwarder" {
  family = %q
  execution_role_arn = %s
  requires_compatibilities = ["FARGATE"]
  network_mode = "awsvpc"
  cpu = 256
  memory = 512

  container_definitions = jsonencode(%s)
}

resource "aws_service_discovery_service" "forwarder" {
  name = %q
  namespace_id = %s

  dns_config {
    namespace_id = %s

    dns_records {
      ttl = 10
      type = "A"
    }
  }
}

resource "aws_ecs_service" "forwarder" {
  name = %q
  cluster = %s
  task_definition = aws_ecs_task_definition.forwarder.arn
  force_new_deployment = true
  desired_count = 1
  launch_type = "FARGATE"

  service_registries {
    registry_arn = aws_service_discovery_service.forwarder.arn
    container_name = %q
  }

  network_configuration {
    subnets = %s
    security_groups = %s
  }
}
`, ForwarderName, ref(o.ExecutionRoleArn, "aws_iam_role.exec.arn"), hclValue(c, "  "),
		ForwarderName, ns, ns,
		ForwarderName, ref(o.Cluster, "aws_ecs_cluster.cluster.id"), ForwarderName,
		list(o.Subnets, "data.aws_subnets.private.ids"), list(o.SecurityGroups, "[var.sg_id]"))
	return hclwrite.Format([]byte(b.String()))
}

func orPlaceholder(v, what string) string {
	if v != "" {
		return v
	}
	return "<" + what + ">"
}

func listOrPlaceholder(vs []string, what string) []any {
	if len(vs) == 0 {
		return []any{"<" + what + ">"}
	}
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}
