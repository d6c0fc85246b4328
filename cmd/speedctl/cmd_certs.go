package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/certs"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make and check the CA goproxy uses to capture outbound TLS",
		Long: `Make and check the CA goproxy uses to capture outbound TLS.

With TLS_OUT_UNWRAP=true, goproxy terminates the app's outbound TLS with leaf
certificates signed by the CA in TLS_CERT_DIR (default /etc/ssl/speedscale):
tls.crt and tls.key. The app must trust tls.crt (SSL_CERT_FILE and friends).
"certs create" replaces the guide's two openssl commands:

  openssl genrsa -out tls.key 4096
  openssl req -new -key tls.key -x509 -days 365 -out tls.crt -subj "/.../CN=speedscale.com"

"certs forwarder" signs a TLS server certificate for the forwarder with that
CA, so that goproxy (which trusts TLS_CERT_DIR's tls.crt) can verify the hop
FORWARDER_ADDR=https://forwarder.ecs.local:8888.`,
	}
	cmd.AddCommand(newCertsCreateCmd(), newCertsCheckCmd(), newCertsForwarderCmd())
	return cmd
}

func newCertsCreateCmd() *cobra.Command {
	var opts certs.Options
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Write a new CA as tls.crt and tls.key",
		Long: `Write a new self-signed CA as DIR/tls.crt and DIR/tls.key.

The certificate has basicConstraints CA:TRUE (path length 0) and key usage
certSign and cRLSign. The key is unencrypted PKCS#8 PEM ("PRIVATE KEY", what
OpenSSL 3's genrsa writes), mode 0600. Existing files are kept unless --force.
Then it prints the guide's next steps: the Secrets Manager commands and the
variables that make the app trust the CA.`,
		Example: `  speedctl certs create
  speedctl certs create --dir ./ca --key ecdsa --days 90
  speedctl certs create --dir ./ca --force      # replace an expiring CA`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.KeyType = strings.ToLower(opts.KeyType)
			c, err := certs.Create(opts)
			if err != nil {
				return err
			}
			printCreated(cmd.OutOrStdout(), c)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", ".", "folder for tls.crt and tls.key, created if missing")
	f.StringVar(&opts.KeyType, "key", certs.KeyRSA, "key type: rsa (4096 bits, as the guide) or ecdsa (P-256)")
	f.IntVar(&opts.Days, "days", 365, "days the CA is valid, 1 to 3650")
	f.StringVar(&opts.CommonName, "cn", certs.DefaultCommonName, "subject common name of the CA")
	f.BoolVar(&opts.Force, "force", false, "replace tls.crt and tls.key if they exist")
	return cmd
}

func newCertsForwarderCmd() *cobra.Command {
	var opts certs.ServerOptions
	cmd := &cobra.Command{
		Use:   "forwarder",
		Short: "Sign a TLS certificate for the forwarder with the CA",
		Long: `Sign a TLS server certificate for the forwarder with the CA in --ca-dir (the
guide's tls.crt and tls.key, or speedctl certs create's), and write it as
DIR/forwarder.crt and DIR/forwarder.key (ECDSA P-256, PKCS#8, mode 0600).

The forwarder serves TLS with them (FORWARDER_TLS_CERT, FORWARDER_TLS_KEY: a
path, or the PEM itself, as an ECS secret gives it); goproxy verifies the
certificate with the CA it already has in TLS_CERT_DIR when FORWARDER_ADDR is
https://HOST:8888. --host must be the name goproxies use, the forwarder's
service-discovery name (the guide's forwarder.ecs.local).`,
		Example: `  speedctl certs forwarder --ca-dir ca --host forwarder.ecs.local
  speedctl certs forwarder --ca-dir ca --host forwarder.prod.local --host 10.0.3.7 --dir fwd-tls`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := certs.Server(opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), `Wrote the forwarder's TLS certificate, signed by the CA in %s:
  %-24s certificate: %s, %s, valid until %s (%d days)
  %-24s private key, mode 0600: keep it secret
  SHA-256 %s

Next steps:
  1. Store both in AWS Secrets Manager and give them to the forwarder's container as
     secrets FORWARDER_TLS_CERT and FORWARDER_TLS_KEY (the PEM in the variable works):
       aws secretsmanager create-secret --name forwarder.crt --secret-string file://%s
       aws secretsmanager create-secret --name forwarder.key --secret-string file://%s
  2. On goproxy: FORWARDER_ADDR=https://%s:8888 (it trusts TLS_CERT_DIR's tls.crt).
  3. Health over TLS: curl --cacert %s https://%s:8888 | grep Connected
`,
				shellQuote(opts.CADir), c.CertPath, c.Subject, c.KeyType, c.NotAfter.Format(time.DateOnly), c.DaysLeft,
				c.KeyPath, c.Fingerprint, shellQuote(c.CertPath), shellQuote(c.KeyPath),
				opts.Hosts[0], shellQuote(opts.CADir+"/tls.crt"), opts.Hosts[0])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.CADir, "ca-dir", ".", "folder with the CA's tls.crt and tls.key")
	f.StringVar(&opts.Dir, "dir", "", "folder for forwarder.crt and forwarder.key (default --ca-dir)")
	f.StringSliceVar(&opts.Hosts, "host", nil, "a name or IP address goproxies reach the forwarder by; repeat or comma-separate for more (required)")
	f.IntVar(&opts.Days, "days", 365, "days the certificate is valid, at most the CA's remaining life")
	f.BoolVar(&opts.Force, "force", false, "replace forwarder.crt and forwarder.key if they exist")
	_ = cmd.MarkFlagRequired("host")
	return cmd
}

func printCreated(w io.Writer, c *certs.Created) {
	fmt.Fprintf(w, `Wrote a CA for goproxy (TLS_OUT_UNWRAP=true):
  %-20s certificate: %s, %s, valid until %s (%d days)
  %-20s private key, mode 0600: keep it secret
  SHA-256 %s

Next steps, as in the deployment guide:
  1. Store both in AWS Secrets Manager, where the task's init container reads them
     into /etc/ssl/speedscale:
       aws secretsmanager create-secret --name tls.crt --secret-string file://%s
       aws secretsmanager create-secret --name tls.key --secret-string file://%s
  2. Make the app trust the CA: SSL_CERT_FILE=/etc/ssl/speedscale/tls.crt (Go, Ruby,
     curl, OpenSSL-based tools); REQUESTS_CA_BUNDLE for Python requests,
     NODE_EXTRA_CA_CERTS for Node, a JKS truststore for Java.
  3. Set TLS_OUT_UNWRAP=true on goproxy (TLS_CERT_DIR defaults to /etc/ssl/speedscale).

Try it here: TLS_CERT_DIR=%s TLS_OUT_UNWRAP=true goproxy, and SSL_CERT_FILE=%s for the app.
Check the folder any time: speedctl certs check %s
`,
		c.CertPath, c.Subject, c.KeyType, c.NotAfter.Format(time.DateOnly), c.DaysLeft,
		c.KeyPath, c.Fingerprint,
		shellQuote(c.CertPath), shellQuote(c.KeyPath),
		shellQuote(dirOf(c.CertPath)), shellQuote(c.CertPath), shellQuote(dirOf(c.CertPath)))
}

func newCertsCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check [DIR]",
		Short: "Say whether a folder's tls.crt and tls.key will work as TLS_CERT_DIR",
		Long: `Say whether DIR (default .) will work as goproxy's TLS_CERT_DIR.

It loads DIR/tls.crt and DIR/tls.key exactly as goproxy does, mints a test
leaf certificate and verifies it against the CA. It prints the subject, key
type and expiry, and exits non-zero with the reason when the folder will not
work (missing files, not a CA, expired, key and certificate do not match).`,
		Example: `  speedctl certs check /etc/ssl/speedscale`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			c, err := certs.Check(dir, time.Now())
			if err != nil {
				return fmt.Errorf("%s will not work as TLS_CERT_DIR: %w", dir, err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "OK: %s will work as TLS_CERT_DIR\n", dir)
			fmt.Fprintf(w, "  subject  %s\n  key      %s\n  valid    %s to %s (%d days left)\n  SHA-256  %s\n",
				c.Subject, c.KeyType, c.NotBefore.Format(time.DateOnly), c.NotAfter.Format(time.DateOnly), c.DaysLeft, c.Fingerprint)
			for _, warn := range c.Warnings {
				fmt.Fprintf(w, "warning: %s\n", warn)
			}
			return nil
		},
	}
}

func dirOf(path string) string {
	i := strings.LastIndexAny(path, `/\`)
	if i < 0 {
		return "."
	}
	if i == 0 {
		return "/"
	}
	return path[:i]
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
