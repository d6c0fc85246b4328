package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/config"
)

// homeFlag is --home: where the config file is. Read it with home().
var homeFlag string

// home returns the folder of the config file: --home, $SPEEDCTL_HOME or
// ~/.speedctl.
func home() (string, error) {
	if homeFlag != "" {
		return homeFlag, nil
	}
	return config.DefaultHome(os.Getenv)
}

// commands are the constructors of speedctl's subcommands. The file of
// each adds its own in an init function, so that a command lives in one
// file (cobra sorts them by name in the help).
var commands []func() *cobra.Command

// version is set at build time: -ldflags "-X main.version=v0.1.0".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "speedctl",
		Short: "Tapwire's command-line tool",
		Long: `speedctl is Tapwire's command-line tool. To see Tapwire work, on this
machine, with nothing else to install:

  speedctl demo                    # hub, forwarder, goproxy, a demo app and traffic; open the viewer
  speedctl capture 3000            # the same in front of your own app on port 3000

It does the deployment guide's setup steps for Amazon ECS, one command each:

  speedctl init --hub https://hub.example.com --admin-key tw_... --tenant acme
                                   # a tenant and its keys from the hub, into ~/.speedctl/config
  speedctl config set SPEEDSCALE_APP_URL=hub.example.com SPEEDSCALE_API_KEY=... TENANT_ID=...
                                   # ~/.speedctl/config, the values the forwarder needs
  speedctl certs create            # ./tls.crt and ./tls.key: the CA for TLS capture
  speedctl ecs forwarder           # the forwarder's task definition and service (Terraform)
  speedctl ecs inject --task-def app.json --container app --port 8080
                                   # the app's task definition with the goproxy sidecar
  speedctl ecs uninject --task-def app-captured.json
                                   # ...and without it again

and reads the traffic a hub holds:

  speedctl traffic list --service orders --status 5xx --since 1h
  speedctl traffic show ID
  speedctl traffic tail --service orders        # new records as they arrive
  speedctl traffic export --format har --since 1d -o traffic.har
  speedctl traffic import traffic.har           # HAR, our JSONL, raw.jsonl or a Markdown recording into a hub

and runs an app on what was recorded:

  speedctl mock --from orders.jsonl -- ./orders-service
                                   # its outbound calls answered from the recordings

and keeps what it recorded as snapshots (named, immutable sets of records):

  speedctl snapshot create --name checkout --service orders --since 1h
  speedctl snapshot pull ID -o checkout.jsonl   # or --format har|raw|md
  speedctl snapshot push --name laptop recorded-2025-03-01/

and sends recorded traffic to a new build, comparing its answers:

  speedctl replay --from orders.jsonl --target http://localhost:8080 --fail-if 'p99>200ms'

and does both in one line of a CI job: the build on mocks, its recording replayed to it:

  speedctl test --from orders.jsonl --target http://127.0.0.1:8080 -- ./bin/orders

docs/ecs.md walks through a whole ECS deployment; docs/speedctl.md describes
every command and the config file.`,
		SilenceUsage:  true, // an error is one line, not the usage
		SilenceErrors: true, // main prints it
	}
	root.PersistentFlags().StringVar(&homeFlag, "home", "",
		"speedctl's folder, holding the config file (default $"+config.HomeEnv+", else ~/.speedctl)")
	root.AddCommand(newConfigCmd(), newCertsCmd(), newECSCmd(), newTrafficCmd(), newVersionCmd())
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}
