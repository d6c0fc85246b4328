package hub

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/tapwire/tapwire/internal/capture"
	"github.com/tapwire/tapwire/internal/envflag"
	"github.com/tapwire/tapwire/internal/format"
	"github.com/tapwire/tapwire/internal/service"
	"github.com/tapwire/tapwire/internal/store"
)

// Main runs the hub command line: serve (the default), or one of the
// administration commands (tenants, keys, import) on the configured store.
// It returns the exit status: 0, 1 for a failure, 2 for a usage error.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serveCmd(ctx, args, getenv, stdout, stderr)
	case "tenants", "keys", "import":
		err = adminCmd(ctx, cmd, args, getenv, stdout, stderr)
	case "help":
		_, err = Load([]string{"-help"}, getenv, stderr)
	default:
		err = usageError(fmt.Sprintf("unknown command %q (see hub -help)", cmd))
	}
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "hub:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "hub:", err)
		return 1
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }

func serveCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := Load(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(err.Error())
	}
	h, err := New(*cfg, service.NewLogger(stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	PrintFirstKeys(stdout, h.FirstKeys)
	return h.Serve(ctx)
}

// adminCmd runs tenants, keys and import.
func adminCmd(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub := ""
	if cmd != "import" {
		if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
			return usageError(fmt.Sprintf("%s: want a subcommand (see hub -help)", cmd))
		}
		sub, args = args[0], args[1:]
	}
	c, d := &Config{}, &Config{}
	d.setDefaults()
	set := envflag.Bind(c, d, bindStore)
	if err := set.Env(getenv); err != nil {
		return usageError(err.Error())
	}
	fs := flag.NewFlagSet("hub "+cmd+" "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	set.Flags(fs)
	var tenant, name, role string
	switch cmd + " " + sub {
	case "tenants create":
		fs.StringVar(&name, "name", "", "a name for people")
	case "keys create":
		fs.StringVar(&tenant, "tenant", "", "the key's tenant (required)")
		fs.StringVar(&role, "role", "", "ingest (a forwarder's key), read (the API's) or admin (tenants and keys through the API; speedctl init) (required)")
		fs.StringVar(&name, "name", "", "a note, as \"forwarder prod\"")
	case "keys list":
		fs.StringVar(&tenant, "tenant", "", "only this tenant's keys")
	case "import ":
		fs.StringVar(&tenant, "tenant", "", "the tenant the records are for (required)")
	case "tenants list", "keys revoke":
	default:
		return usageError(fmt.Sprintf("unknown command %q (see hub -help)", cmd+" "+sub))
	}
	// Flags may follow the positional arguments (hub tenants create acme -name Acme).
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError(err.Error())
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	c.setDefaults()
	st, err := c.OpenStore(ctx)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	now := time.Now()

	switch cmd + " " + sub {
	case "tenants create":
		if len(pos) != 1 {
			return usageError("tenants create: want one tenant id")
		}
		if err := store.ValidTenantID(pos[0]); err != nil {
			return usageError(err.Error())
		}
		if err := st.CreateTenant(ctx, store.Tenant{ID: pos[0], Name: name, Created: now}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created tenant %s\n", pos[0])
	case "tenants list":
		ts, err := st.Tenants(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TENANT\tCREATED\tNAME")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Created.Format(time.RFC3339), t.Name)
		}
		tw.Flush()
	case "keys create":
		if tenant == "" || role == "" || len(pos) > 0 {
			return usageError("keys create: want -tenant ID -role ingest|read|admin")
		}
		r, err := store.ParseRole(role)
		if err != nil {
			return usageError(err.Error())
		}
		key, err := createKey(ctx, st, tenant, r, name, now)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no tenant %q (hub tenants list)", tenant)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created %s key for tenant %s; it is shown only now:\n", withArticle(r), tenant)
		fmt.Fprintln(stdout, key)
	case "keys list":
		ks, err := st.Keys(ctx, tenant)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY ID\tTENANT\tROLE\tCREATED\tREVOKED\tNAME")
		for _, k := range ks {
			rev := "-"
			if !k.Revoked.IsZero() {
				rev = k.Revoked.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Tenant, k.Role, k.Created.Format(time.RFC3339), rev, k.Name)
		}
		tw.Flush()
	case "keys revoke":
		if len(pos) != 1 {
			return usageError("keys revoke: want one key id (tw_...)")
		}
		id := pos[0]
		if k := keyID(id); k != "" {
			id = k // a whole key names its id
		}
		if err := st.RevokeKey(ctx, id, now); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s (a running hub stops taking it within %s)\n", id, authCacheTTL)
	case "import ":
		if tenant == "" || len(pos) == 0 {
			return usageError("import: want -tenant ID and one or more files or directories")
		}
		ts, err := st.Tenants(ctx)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(ts, func(t store.Tenant) bool { return t.ID == tenant }) {
			return fmt.Errorf("no tenant %q (hub tenants create %s)", tenant, tenant)
		}
		return importPaths(ctx, st, tenant, pos, stdout)
	}
	return nil
}

// importBatch is how many records import inserts at once.
const importBatch = 1000

// importPaths loads record files into tenant: files and directories in
// any format internal/format reads (our JSONL, the vendor's raw.jsonl, HAR,
// the vendor's Markdown recordings; the file sink's directories of
// records-*.jsonl).
func importPaths(ctx context.Context, st store.Store, tenant string, paths []string, out io.Writer) error {
	var files []format.Source
	for _, p := range paths {
		srcs, err := format.Sources(p)
		if err != nil {
			return err
		}
		files = append(files, srcs...)
	}
	var total, fresh int
	batch := make([]*capture.Record, 0, importBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := st.Insert(ctx, tenant, batch)
		if err != nil {
			return err
		}
		total += len(batch)
		fresh += n
		batch = batch[:0]
		return nil
	}
	add := func(r *capture.Record) error {
		if err := r.Validate(); err != nil {
			return err
		}
		r.Labels.Tenant = tenant
		batch = append(batch, r)
		if len(batch) == importBatch {
			return flush()
		}
		return nil
	}
	for _, src := range files {
		if _, err := src.Read(add); err != nil {
			if src.Format == format.Markdown {
				return err // the error names the file
			}
			return fmt.Errorf("%s: %w", src.Path, err)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "imported %d records (%d new) from %d files into tenant %s\n", total, fresh, len(files), tenant)
	return nil
}
