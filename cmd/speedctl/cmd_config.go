package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Write and read ~/.speedctl/config, the values the forwarder needs",
		Long: `Write and read speedctl's config file, ~/.speedctl/config (--home moves it).

The deployment guide fills the forwarder's task definition from this file. It
holds KEY=VALUE lines that a shell can source, mode 0600 (it holds the API key):

  set -a; . ~/.speedctl/config; set +a     # every key as an environment variable

Keys:
` + keyHelp(),
	}
	cmd.AddCommand(newConfigSetCmd(), newConfigShowCmd())
	return cmd
}

func keyHelp() string {
	var b strings.Builder
	for _, k := range config.Keys {
		fmt.Fprintf(&b, "  %-23s %s\n", k.Name, k.Help)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func newConfigSetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set KEY=VALUE...",
		Short: "Set keys in the config file, creating it if needed",
		Long: `Set keys in the config file, creating it (mode 0600, in a folder of mode 0700)
if needed. Other lines, comments included, are kept as they are. A value is
written quoted for the shell when it needs it. Keys:
` + keyHelp(),
		Example: `  speedctl config set SPEEDSCALE_APP_URL=hub.example.com SPEEDSCALE_API_KEY=sk-123 TENANT_ID=acme
  speedctl config set TENANT_BUCKET=acme-captures TENANT_REGION=us-east-1 CLUSTER_NAME=prod
  speedctl --home ./team config set SPEEDSCALE_APP_URL=https://hub.internal:8443`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := loadOrNewConfig()
			if err != nil {
				return err
			}
			var keys []string
			for _, a := range args {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					return fmt.Errorf("%q: want KEY=VALUE", a)
				}
				if _, known := config.LookupKey(k); !known {
					return fmt.Errorf("unknown key %q; the keys are %s", k, strings.Join(config.KeyNames(), ", "))
				}
				if k == "SPEEDSCALE_REDACT" && v != "true" && v != "false" {
					return fmt.Errorf("SPEEDSCALE_REDACT=%q: want true or false", v)
				}
				if err := f.Set(k, v); err != nil {
					return err
				}
				keys = append(keys, k)
			}
			if err := f.Save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s)\n", f.Path, strings.Join(keys, ", "))
			return nil
		},
	}
}

func newConfigShowCmd() *cobra.Command {
	var reveal, asJSON bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the config file's values",
		Long: `Print the config file's values: every key speedctl knows, with "(not set)" for
the missing ones, then any other key the file sets. Secrets (the API key) are
masked unless --reveal. --json prints one JSON object of the keys that are set,
for scripts and for Terraform (see docs/ecs.md).`,
		Example: `  speedctl config show
  TF_VAR_speedctl_config="$(speedctl config show --json --reveal)" terraform apply`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			f, err := config.Load(h)
			if err != nil {
				return err
			}
			show := func(k, v string) string {
				if key, _ := config.LookupKey(k); key.Secret && !reveal {
					return mask(v)
				}
				return v
			}
			w := cmd.OutOrStdout()
			if asJSON {
				m := map[string]string{}
				for _, k := range f.Names() {
					m[k] = show(k, f.Lookup(k))
				}
				enc := json.NewEncoder(w)
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				return enc.Encode(m)
			}
			fmt.Fprintf(w, "# %s\n", f.Path)
			for _, k := range config.Keys {
				if v, ok := f.Get(k.Name); ok {
					fmt.Fprintf(w, "%s=%s\n", k.Name, config.Quote(show(k.Name, v)))
				} else {
					fmt.Fprintf(w, "# %s (not set)\n", k.Name)
				}
			}
			for _, k := range f.Names() {
				if _, known := config.LookupKey(k); !known {
					fmt.Fprintf(w, "%s=%s\n", k, config.Quote(f.Lookup(k)))
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&reveal, "reveal", false, "print secrets (the API key) in full")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object of the keys that are set")
	return cmd
}

// mask hides all but the last 4 characters of a secret.
func mask(s string) string {
	if len(s) <= 8 {
		return strings.Repeat("*", len(s))
	}
	return strings.Repeat("*", 8) + s[len(s)-4:]
}

// loadOrNewConfig loads the config file of home(), or returns a new,
// empty one there if there is none yet.
func loadOrNewConfig() (*config.File, error) {
	dir, err := home()
	if err != nil {
		return nil, err
	}
	f, err := config.Load(dir)
	if errors.Is(err, config.ErrNotFound) {
		return config.New(dir), nil
	}
	return f, err
}
