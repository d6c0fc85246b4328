package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/config"
	"github.com/tapwire/tapwire/internal/ecs"
)

func newECSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ecs",
		Short: "Write ECS task definitions: the forwarder, and the goproxy sidecar in an app's task",
		Long: `Write Amazon ECS task definitions as the deployment guide does by hand.

  speedctl ecs forwarder    the forwarder's task definition, service-discovery
                            entry and service, filled from ~/.speedctl/config
  speedctl ecs inject       an app's task definition with the goproxy sidecar,
                            the init container that fetches the CA, and the
                            app's proxy and CA variables
  speedctl ecs uninject     the same task definition without them

Task definitions go in as "aws ecs describe-task-definition" prints them and
come out as input for "aws ecs register-task-definition --cli-input-json".
docs/ecs.md walks through a whole deployment; deploy/ecs has the same as a
Terraform module.`,
	}
	cmd.AddCommand(newECSForwarderCmd(), newECSInjectCmd(), newECSUninjectCmd())
	return cmd
}

func newECSForwarderCmd() *cobra.Command {
	var (
		o       ecs.ForwarderOptions
		format  string
		out     string
		noToken bool
	)
	cmd := &cobra.Command{
		Use:   "forwarder",
		Short: "Write the forwarder's task definition, service-discovery entry and service",
		Long: `Write the forwarder's deployment as the guide's "Setup the forwarder" does: an
ECS task definition (Fargate, 256 CPU units, 512 MiB, port 8888), a service
discovery entry (an A record, TTL 10, in your private DNS namespace, which
makes forwarder.NAMESPACE:8888, the guide's forwarder.ecs.local:8888) and an
ECS service that registers in it.

` + wrap("The forwarder's environment comes from the config file (speedctl config set): "+
			strings.Join(ecs.ForwarderVars, ", ")+". "+strings.Join(ecs.RequiredForwarderVars, ", ")+
			` are required; CLUSTER_NAME defaults to "ecs".`, 79) + `

--format terraform (the default) writes the guide's three Terraform resources.
What only your AWS account knows (execution role, cluster, namespace, subnets,
security groups) is referred to by the guide's names, e.g.
aws_iam_role.exec.arn, unless you pass the flag with a literal value.

--format json writes one object whose members are the input JSON of the AWS
CLI commands: taskDefinition (aws ecs register-task-definition),
serviceDiscovery (aws servicediscovery create-service) and service (aws ecs
create-service). Values you did not pass are <placeholders>.

FORWARDER_TOKEN authenticates the goproxies: it comes from the config, and
when the config has none a new random one is generated and saved there (mode
0600), so that "speedctl ecs inject" gives goproxy the same. A forwarder with a
token refuses every batch without it (401). --no-token leaves it out (the
guide's setup: the security group is then the only boundary).

The API key is written in clear into the task definition, as in the guide,
unless --api-key-secret names a Secrets Manager secret that holds it (the
execution role must then be allowed secretsmanager:GetSecretValue on it).
The security groups must let the apps' tasks reach port 8888.`,
		Example: `  speedctl ecs forwarder > forwarder.tf
  speedctl ecs forwarder --format json --cluster prod --namespace-id ns-abc \
      --subnets subnet-1,subnet-2 --security-groups sg-1 > forwarder.json
  jq .taskDefinition forwarder.json > td.json
  aws ecs register-task-definition --cli-input-json file://td.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "terraform" && format != "json" {
				return fmt.Errorf("--format %q: want terraform or json", format)
			}
			h, err := home()
			if err != nil {
				return err
			}
			f, err := config.Load(h)
			if err != nil {
				return err
			}
			var tokenNote []string
			if !noToken { // without a token, NewForwarder's note says so
				if tokenNote, err = ensureToken(f, false); err != nil {
					return err
				}
			}
			o.Config = f.Lookup
			if noToken {
				o.Config = func(k string) string {
					if k == ecs.TokenKey {
						return ""
					}
					return f.Lookup(k)
				}
			}
			fw, notes, err := ecs.NewForwarder(o)
			if err != nil {
				return fmt.Errorf("%s: %w", f.Path, err)
			}
			var data []byte
			if format == "json" {
				data = fw.JSON()
			} else {
				data = fw.Terraform(f.Path)
			}
			if err := writeOut(cmd, out, data); err != nil {
				return err
			}
			printNotes(cmd.ErrOrStderr(), append(tokenNote, notes...))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&noToken, "no-token", false, "write no FORWARDER_TOKEN: the forwarder then accepts batches from anyone who reaches port 8888 (the guide's setup)")
	fl.StringVar(&format, "format", "terraform", "terraform or json")
	fl.StringVarP(&out, "output", "o", "-", "file to write, - for standard output")
	fl.StringVar(&o.Image, "image", ecs.DefaultForwarderImage, "the forwarder's image (build it from deploy/docker/forwarder.Dockerfile)")
	fl.StringVar(&o.ClusterName, "cluster-name", "", `CLUSTER_NAME, the cluster label on records (default the config's CLUSTER_NAME, else "ecs")`)
	fl.StringVar(&o.APIKeySecret, "api-key-secret", "", "ARN of a Secrets Manager secret holding SPEEDSCALE_API_KEY, given to the container as a secret instead of in clear")
	fl.StringVar(&o.ExecutionRoleArn, "execution-role-arn", "", "the task's execution role (default: Terraform aws_iam_role.exec.arn)")
	fl.StringVar(&o.Cluster, "cluster", "", "the ECS cluster the service runs in (default: Terraform aws_ecs_cluster.cluster.id)")
	fl.StringVar(&o.NamespaceID, "namespace-id", "", "the private DNS namespace of the service-discovery entry (default: Terraform aws_service_discovery_private_dns_namespace.cluster.id)")
	fl.StringSliceVar(&o.Subnets, "subnets", nil, "the service's subnets, comma-separated (default: Terraform data.aws_subnets.private.ids)")
	fl.StringSliceVar(&o.SecurityGroups, "security-groups", nil, "the service's security groups, comma-separated (default: Terraform [var.sg_id])")
	fl.StringVar(&o.LogGroup, "log-group", "", "send the forwarder's logs to this CloudWatch log group (awslogs; created if missing, which needs logs:CreateLogGroup in the execution role)")
	fl.StringVar(&o.Region, "region", "", "the log group's region (default the config's TENANT_REGION)")
	return cmd
}

func newECSInjectCmd() *cobra.Command {
	var (
		o       ecs.InjectOptions
		taskDef string
		out     string
		noToken bool
	)
	cmd := &cobra.Command{
		Use:   "inject",
		Short: "Add the goproxy sidecar to an app's task definition",
		Long: `Add the goproxy sidecar to an app's task definition, as the guide's "Create new
Task Definition" does by hand. It reads the task definition as
"aws ecs describe-task-definition" prints it (or its taskDefinition, or
register-task-definition input) and writes register-task-definition input
(read-only fields such as revision and status dropped) with:

  init      a container (amazon/aws-cli) that fetches the CA, tls.crt and tls.key,
            from Secrets Manager into the task volume "speedscale" at
            /etc/ssl/speedscale, then exits
  goproxy   the sidecar, with the guide's environment (REVERSE_PROXY_PORT is
            --port, FORWARDER_ADDR is --forwarder), ports 4143 (inbound, the load
            balancer's new target) and 4140 (the app's outbound proxy), the
            volume read-only, and the app's log configuration
  the app   SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS (the CA),
            HTTP_PROXY and HTTPS_PROXY (http://localhost:4140), NO_PROXY (the ECS
            metadata and credentials endpoints and localhost stay direct; the
            app's own NO_PROXY entries are kept), the volume read-only, and
            dependsOn init (SUCCESS) and goproxy (START)

goproxy gets FORWARDER_TOKEN from the config, the token "speedctl ecs
forwarder" gave the forwarder; when the config has none, a new one is generated
and saved there for the forwarder. --no-token leaves it out.

Both new containers depend only on containers that exist (the guide's snippet
names init-crt and init-key, which it never defines). Injecting into a task
definition that already has speedctl's sidecar replaces it; "speedctl ecs
uninject" takes it out again and gives back the original. The task needs
networkMode awsvpc (Fargate's) and a task role allowed to read the secrets.

Afterwards, point the service's load balancer at container goproxy, port 4143,
instead of the app's port: speedctl prints this on standard error.`,
		Example: `  aws ecs describe-task-definition --task-definition notifications > notifications.json
  speedctl ecs inject --task-def notifications.json --container notifications --port 8080 -o captured.json
  aws ecs register-task-definition --cli-input-json file://captured.json

  aws ecs describe-task-definition --task-definition orders | speedctl ecs inject --task-def - \
      --container orders --port 9090 --forwarder forwarder.prod.local:8888 --cluster-name prod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			td, err := readTaskDef(cmd, taskDef)
			if err != nil {
				return err
			}
			var tokenNote []string
			if !cmd.Flags().Changed("cluster-name") || !noToken { // the config is needed
				h, err := home()
				if err != nil {
					return err
				}
				f, err := config.Load(h)
				switch {
				case errors.Is(err, config.ErrNotFound): // no config: the defaults, and a new one for the token
					f = config.New(h)
				case err != nil:
					return err
				}
				if !cmd.Flags().Changed("cluster-name") {
					o.ClusterName = f.Lookup("CLUSTER_NAME")
				}
				if tokenNote, err = ensureToken(f, noToken); err != nil {
					return err
				}
				if !noToken {
					o.ForwarderToken = f.Lookup(ecs.TokenKey)
				}
			} else {
				tokenNote, _ = ensureToken(nil, true)
			}
			notes, err := ecs.Inject(td, o)
			if err != nil {
				return err
			}
			if err := writeOut(cmd, out, td.Bytes()); err != nil {
				return err
			}
			printNotes(cmd.ErrOrStderr(), append(append(readNotes(td), tokenNote...), notes...))
			printNext(cmd.ErrOrStderr(), out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&noToken, "no-token", false, "give goproxy no FORWARDER_TOKEN (for a forwarder without one, as in the guide)")
	fl.StringVar(&taskDef, "task-def", "", "the task definition: a JSON file, or - for standard input (required)")
	fl.StringVar(&o.Container, "container", "", "the app's container, which goproxy sits in front of (default: the task's only container)")
	fl.IntVar(&o.Port, "port", 0, "the port the app serves on, REVERSE_PROXY_PORT (default: the container's only containerPort)")
	fl.StringVar(&o.ClusterName, "cluster-name", "", `APP_POD_NAMESPACE, the cluster label (default the config's CLUSTER_NAME, else "ecs")`)
	fl.StringVar(&o.AppLabel, "app-label", "", "APP_LABEL and APP_POD_NAME, the service label on records (default: the container's name)")
	fl.StringVar(&o.ForwarderAddr, "forwarder", ecs.DefaultForwarderAddr, "FORWARDER_ADDR: the forwarder's service-discovery name and port")
	fl.StringVar(&o.CASecretCert, "ca-secret-crt", ecs.DefaultCASecretCert, "Secrets Manager secret (name or ARN) holding the CA certificate, tls.crt")
	fl.StringVar(&o.CASecretKey, "ca-secret-key", ecs.DefaultCASecretKey, "Secrets Manager secret (name or ARN) holding the CA key, tls.key")
	fl.StringVar(&o.Image, "image", ecs.DefaultGoproxyImage, "goproxy's image (build it from deploy/docker/goproxy.Dockerfile)")
	fl.StringVar(&o.InitImage, "init-image", ecs.DefaultInitImage, "the init container's image: it needs bash and the AWS CLI")
	fl.StringVar(&o.LogLevel, "log-level", "info", "goproxy's LOG_LEVEL: debug, info, warn or error")
	fl.StringVarP(&out, "output", "o", "-", "file to write, - for standard output")
	_ = cmd.MarkFlagRequired("task-def")
	return cmd
}

func newECSUninjectCmd() *cobra.Command {
	var taskDef, out string
	cmd := &cobra.Command{
		Use:   "uninject",
		Short: "Take the goproxy sidecar out of a task definition again",
		Long: `Take out what "speedctl ecs inject" added: the init and goproxy containers, the
"speedscale" volume, and the app's mount, dependsOn entries and variables. The
app's variables that inject replaced (an HTTPS_PROXY or NO_PROXY of its own)
get their old values back: inject recorded them in a label on the goproxy
container. Injecting and then uninjecting gives back the task definition you
started from, less its read-only fields.

It refuses a goproxy container that speedctl did not add (one made by hand
from the guide). Afterwards, point the load balancer back at the app's port.`,
		Example: `  aws ecs describe-task-definition --task-definition notifications-capture \
      | speedctl ecs uninject --task-def - -o plain.json
  aws ecs register-task-definition --cli-input-json file://plain.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			td, err := readTaskDef(cmd, taskDef)
			if err != nil {
				return err
			}
			notes, err := ecs.Uninject(td)
			if err != nil {
				return err
			}
			if err := writeOut(cmd, out, td.Bytes()); err != nil {
				return err
			}
			printNotes(cmd.ErrOrStderr(), append(readNotes(td), notes...))
			printNext(cmd.ErrOrStderr(), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&taskDef, "task-def", "", "the task definition: a JSON file, or - for standard input (required)")
	cmd.Flags().StringVarP(&out, "output", "o", "-", "file to write, - for standard output")
	_ = cmd.MarkFlagRequired("task-def")
	return cmd
}

// ensureToken makes sure the config holds a FORWARDER_TOKEN, generating
// and saving one when it has none (unless noToken), and returns a note
// saying so.
func ensureToken(f *config.File, noToken bool) ([]string, error) {
	if noToken {
		return []string{"--no-token: no FORWARDER_TOKEN; the forwarder accepts batches from anyone who reaches port 8888, the security group is the only boundary"}, nil
	}
	if f.Lookup(ecs.TokenKey) != "" {
		return nil, nil
	}
	tok, err := ecs.NewToken()
	if err != nil {
		return nil, err
	}
	if err := f.Set(ecs.TokenKey, tok); err != nil {
		return nil, err
	}
	if err := f.Save(); err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("generated a FORWARDER_TOKEN and saved it in %s: the forwarder and every goproxy that speedctl writes share it", f.Path)}, nil
}

func readTaskDef(cmd *cobra.Command, path string) (*ecs.TaskDefinition, error) {
	var data []byte
	var err error
	name := path
	if path == "-" {
		name = "standard input"
		data, err = io.ReadAll(cmd.InOrStdin())
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read the task definition: %w", err)
	}
	td, err := ecs.ReadTaskDefinition(data)
	if errors.Is(err, ecs.ErrNotTaskDefinition) {
		return nil, fmt.Errorf("%s is %w", name, err)
	}
	return td, err
}

func readNotes(td *ecs.TaskDefinition) []string {
	var notes []string
	if len(td.Dropped) > 0 {
		notes = append(notes, fmt.Sprintf("dropped the read-only fields of %s: %s", td.Form, strings.Join(td.Dropped, ", ")))
	}
	if len(td.Unknown) > 0 {
		notes = append(notes, fmt.Sprintf("kept fields this speedctl does not know: %s (register-task-definition may refuse them)", strings.Join(td.Unknown, ", ")))
	}
	return notes
}

func writeOut(cmd *cobra.Command, path string, data []byte) error {
	if path == "-" || path == "" {
		_, err := cmd.OutOrStdout().Write(data)
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	return nil
}

func printNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func printNext(w io.Writer, out string) {
	file := out
	if out == "-" || out == "" {
		file = "FILE"
	}
	fmt.Fprintf(w, "next: aws ecs register-task-definition --cli-input-json file://%s\n", shellQuote(file))
}

// wrap breaks s into lines of at most width bytes at spaces.
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		if i > 0 && n+1+len(w) > width {
			b.WriteByte('\n')
			n = 0
		} else if i > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}
