package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/apitype"
	"github.com/tapwire/tapwire/internal/config"
	"github.com/tapwire/tapwire/internal/hubclient"
	"github.com/tapwire/tapwire/internal/store"
)

func init() { commands = append(commands, newInitCmd) }

// adminKeyEnv names the environment variable of init's --admin-key.
const adminKeyEnv = "TAPWIRE_ADMIN_KEY"

// defaultTenant is the tenant a hub makes on its first start, and init's
// when --tenant is not given.
const defaultTenant = "default"

// initDefaults are the values init writes when the config has none: the
// guide's (SUB_TENANT_NAME, CLUSTER_NAME) and the forwarder's defaults.
var initDefaults = [][2]string{
	{"SUB_TENANT_NAME", "default"},
	{"CLUSTER_NAME", "ecs"},
	{"SPEEDSCALE_FILTER_RULE", "standard"},
	{"SPEEDSCALE_REDACT", "true"},
}

// initOptional are the forwarder's variables with no default, which init
// leaves for the user.
var initOptional = []struct{ key, what string }{
	{"TENANT_BUCKET", "the S3 bucket that keeps raw batches"},
	{"TENANT_REGION", "its region"},
	{"SUB_TENANT_STREAM", "the stream batches are announced on"},
	{"SPEEDSCALE_DLP_CONFIG", "more redaction rules"},
}

type initFlags struct {
	hub, appURL, adminKey, tenant, name string
	existing, force                     bool
}

func newInitCmd() *cobra.Command {
	var f initFlags
	cmd := &cobra.Command{
		Use:   "init --hub URL --admin-key KEY [--tenant ID]",
		Short: "Get a tenant and API keys from a hub and write ~/.speedctl/config",
		Long: `Get a tenant and its API keys from a Tapwire hub and write speedctl's config
file, ~/.speedctl/config (--home moves it), in one step.

init asks the hub's administration API (docs/api.md) with an admin key
(--admin-key, else $` + adminKeyEnv + `; the hub prints one on its first start,
and "hub keys create -tenant default -role admin" makes one on an older hub's
machine) to create the tenant --tenant with an ingest key and a read key. It then
writes, mode 0600:

  SPEEDSCALE_APP_URL   the hub's address for the forwarder (--app-url, else --hub)
  SPEEDSCALE_API_KEY   the new ingest key: the forwarder's
  TENANT_ID            --tenant
  TENANT_NAME          --name, else the hub's name of the tenant, else its id
  TAPWIRE_HUB_URL      --hub, for speedctl traffic
  TAPWIRE_READ_KEY     the new read key, for speedctl traffic and the viewer

and, where the file has no value yet, the guide's defaults: SUB_TENANT_NAME=default,
CLUSTER_NAME=ecs, SPEEDSCALE_FILTER_RULE=standard, SPEEDSCALE_REDACT=true. The
other forwarder variables have no default; init lists them. Other lines of an
existing file are kept. The admin key is not written anywhere.

Without --tenant, init uses the hub's first tenant, "default", and makes new
keys for it. With --tenant, the tenant must be new, unless --existing: then
init makes new keys for it if it exists.

A config that already holds an API key is not overwritten unless --force (the
old keys stay valid on their hub until revoked: hub keys revoke KEY-ID).`,
		Example: `  # the admin key the hub printed on its first start
  export ` + adminKeyEnv + `=tw_...
  speedctl init --hub http://127.0.0.1:8080
  speedctl init --hub https://hub.example.com --tenant acme --name "Acme Inc."
  speedctl init --hub https://hub.example.com --tenant acme --existing --force
  speedctl init --hub http://localhost:8080 --app-url hub.internal:8443 --tenant shop
  speedctl --home ./staging init --hub https://hub.example.com --tenant acme-staging`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.hub, "hub", "", "the hub's URL, as this machine reaches it (default $"+hubURLKey+"); a bare host[:port] means https")
	fs.StringVar(&f.appURL, "app-url", "", "the hub's address as the forwarder reaches it, SPEEDSCALE_APP_URL (default --hub)")
	fs.StringVar(&f.adminKey, "admin-key", "", "an admin key of the hub, tw_... (default $"+adminKeyEnv+")")
	fs.StringVar(&f.tenant, "tenant", "", `the tenant's id: 1 to 64 of a-z 0-9 . _ - (default "default", the hub's first tenant)`)
	fs.StringVar(&f.name, "name", "", "the tenant's name for people, TENANT_NAME (default the hub's, else the id)")
	fs.BoolVar(&f.existing, "existing", false, "if the tenant exists, make new keys for it rather than fail")
	fs.BoolVar(&f.force, "force", false, "replace the keys of an existing config")
	return cmd
}

func runInit(ctx context.Context, out io.Writer, f initFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.hub == "" {
		f.hub = os.Getenv(hubURLKey)
	}
	if f.hub == "" {
		return errors.New("no hub: pass --hub URL, the address of a running hub (`hub` serves on http://127.0.0.1:8080 by default)")
	}
	base, err := hubclient.ParseURL(f.hub)
	if err != nil {
		return err
	}
	if f.adminKey == "" {
		f.adminKey = strings.TrimSpace(os.Getenv(adminKeyEnv))
	}
	if f.adminKey == "" {
		return fmt.Errorf("no admin key: pass --admin-key tw_... or set $%s; the hub printed one on its first start, and `hub keys create -tenant default -role admin` makes one on the hub's machine", adminKeyEnv)
	}
	if f.tenant == "" {
		f.tenant, f.existing = defaultTenant, true
	}
	if err := store.ValidTenantID(f.tenant); err != nil {
		return fmt.Errorf("--tenant: %w", err)
	}
	appURL := f.appURL
	if appURL == "" {
		appURL = strings.TrimSuffix(f.hub, "/")
	}

	// The config first: refuse before the hub makes keys nobody keeps.
	cfg, err := loadOrNewConfig()
	if err != nil {
		return err
	}
	if !f.force {
		for _, k := range []string{"SPEEDSCALE_API_KEY", readKeyKey} {
			if v := cfg.Lookup(k); v != "" {
				return fmt.Errorf("%s already holds %s (%s, tenant %q, hub %s); init would replace it: add --force to replace it, or --home DIR to write a config elsewhere",
					cfg.Path, k, mask(v), cfg.Lookup("TENANT_ID"), cfg.Lookup("SPEEDSCALE_APP_URL"))
			}
		}
	}

	c, err := hubclient.New(base.String(), f.adminKey, hubclient.Options{HTTP: &http.Client{Timeout: 30 * time.Second}, UserAgent: userAgent()})
	if err != nil {
		return err
	}
	keyName := "speedctl init"
	if who := whoAmI(); who != "" {
		keyName += " by " + who
	}
	tenant := store.Tenant{ID: f.tenant, Name: f.name}
	created, err := c.CreateTenant(ctx, apitype.CreateTenantRequest{ID: f.tenant, Name: f.name, KeyName: keyName})
	isNew := err == nil
	switch status := hubclient.StatusOf(err); {
	case status == http.StatusConflict && f.existing:
		// New keys for the tenant the hub has.
		t, err := c.Tenant(ctx, f.tenant)
		if err != nil {
			return adminHints.explain(err)
		}
		tenant, created = *t, &apitype.CreatedTenant{}
		for _, role := range []store.Role{store.RoleIngest, store.RoleRead} {
			k, err := c.CreateKey(ctx, f.tenant, apitype.CreateKeyRequest{Role: role, Name: keyName})
			if err != nil {
				return adminHints.explain(err)
			}
			created.Keys = append(created.Keys, *k)
		}
	case status == http.StatusConflict:
		return fmt.Errorf("tenant %q already exists on hub %s: add --existing to make new keys for it, or choose another --tenant", f.tenant, base)
	case err != nil:
		return adminHints.explain(err)
	default:
		tenant = created.Tenant
	}
	var ingest, read, ingestID, readID string
	for _, k := range created.Keys {
		switch k.Role {
		case store.RoleIngest:
			ingest, ingestID = k.Secret, k.ID
		case store.RoleRead:
			read, readID = k.Secret, k.ID
		}
	}
	if ingest == "" || read == "" {
		return fmt.Errorf("hub %s did not answer an ingest and a read key for tenant %q; check it with `hub keys list -tenant %s`", base, f.tenant, f.tenant)
	}

	name := f.name
	if name == "" {
		name = tenant.Name
	}
	if name == "" || (!isNew && f.tenant == defaultTenant && name == "created on first start") {
		name = f.tenant
	}
	values := [][2]string{
		{"SPEEDSCALE_APP_URL", appURL},
		{"SPEEDSCALE_API_KEY", ingest},
		{"TENANT_ID", f.tenant},
		{"TENANT_NAME", name},
		{hubURLKey, base.String()},
		{readKeyKey, read},
	}
	for _, d := range initDefaults {
		if cfg.Lookup(d[0]) == "" {
			values = append(values, d)
		}
	}
	var replaced []string // the keys of the config before, which stay valid on their hub
	for _, k := range []string{"SPEEDSCALE_API_KEY", readKeyKey} {
		if v := cfg.Lookup(k); v != "" {
			replaced = append(replaced, publicID(v))
		}
	}
	oldHub := cfg.Lookup(hubURLKey)
	if oldHub == "" {
		oldHub = cfg.Lookup("SPEEDSCALE_APP_URL")
	}
	for _, kv := range values {
		if err := cfg.Set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := cfg.Save(); err != nil {
		return fmt.Errorf("the hub made keys %s and %s for tenant %s, but %w; revoke them (hub keys revoke ID) and run init again", ingestID, readID, f.tenant, err)
	}

	if isNew {
		fmt.Fprintf(out, "created tenant %q on hub %s, with an ingest key and a read key\n", f.tenant, base)
	} else {
		fmt.Fprintf(out, "made new keys for the existing tenant %q on hub %s\n", f.tenant, base)
	}
	fmt.Fprintf(out, "wrote %s (mode 0600):\n", cfg.Path)
	for _, kv := range values {
		v := kv[1]
		note := ""
		switch kv[0] {
		case "SPEEDSCALE_API_KEY":
			v, note = mask(v), "  # ingest key "+ingestID+", the forwarder's"
		case readKeyKey:
			v, note = mask(v), "  # read key "+readID+", for speedctl traffic and the viewer"
		}
		fmt.Fprintf(out, "  %s=%s%s\n", kv[0], config.Quote(v), note)
	}
	fmt.Fprintln(out, "The keys are only in this file (the hub keeps their hashes); `speedctl config show --reveal` prints them.")
	if len(replaced) > 0 {
		fmt.Fprintf(out, "The keys it held before (%s) still work on their hub (%s) until revoked: `hub keys revoke ID`, or DELETE /api/v1/keys/ID with an admin key.\n",
			strings.Join(replaced, ", "), oldHub)
	}
	var unset []string
	for _, o := range initOptional {
		if cfg.Lookup(o.key) == "" {
			unset = append(unset, fmt.Sprintf("  %-22s %s", o.key, o.what))
		}
	}
	if len(unset) > 0 {
		fmt.Fprintf(out, "\nNot set, optional (speedctl config set KEY=VALUE):\n%s\n", strings.Join(unset, "\n"))
	}
	if u, err := hubclient.ParseURL(appURL); err == nil && isLoopbackHost(u.Hostname()) {
		fmt.Fprintf(out, "\nSPEEDSCALE_APP_URL is %s, this machine: a forwarder in a cluster cannot reach it there.\n"+
			"Set the address it will use: speedctl config set SPEEDSCALE_APP_URL=hub.example.com (or init --app-url).\n", appURL)
	}
	fmt.Fprint(out, `
Next:
  speedctl traffic list        # the tenant's records, with the new read key
  speedctl certs create        # the CA goproxy needs to capture outbound TLS
  speedctl ecs forwarder       # the forwarder's task definition and service, from this config
  speedctl ecs inject --task-def app.json   # the goproxy sidecar in your app's task
`)
	return nil
}

// whoAmI names the user and machine for the keys' names: user@host.
func whoAmI() string {
	var who string
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		if who != "" {
			who += "@"
		}
		who += h
	}
	if len(who) > 100 {
		who = who[:100]
	}
	return strings.ToValidUTF8(who, "")
}

// publicID names a key without its secret: its id tw_xxxxxxxxxxxx, or
// its masked form if it is not a key of this hub's form.
func publicID(key string) string {
	if id, secret, ok := strings.Cut(strings.TrimPrefix(key, "tw_"), "_"); ok && strings.HasPrefix(key, "tw_") && len(id) == 12 && secret != "" {
		return "tw_" + id
	}
	return mask(key)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// adminHints say what to do about the hub's refusals of init's admin key.
var adminHints = keyHints{
	key:      "the admin key",
	on401:    "check --admin-key or $" + adminKeyEnv + "; the hub printed an admin key on its first start, and `hub keys create -tenant default -role admin` makes one on the hub's machine",
	on403:    "init needs an admin key, not a read or ingest key (`hub keys create -tenant default -role admin`)",
	checkHub: "check --hub",
	on404: func(e *hubclient.Error) string {
		if !e.API || strings.HasPrefix(e.Message, "no such endpoint") {
			return fmt.Sprintf("%s has no administration API (404 for %s %s): check that --hub is a Tapwire hub's URL; a hub older than this speedctl has none: upgrade it, or make the tenant and keys on its machine (`hub tenants create`, `hub keys create`) and write them with `speedctl config set`", e.Hub, e.Method, e.Path)
		}
		return fmt.Sprintf("hub %s: %s", e.Hub, e.Message)
	},
}
