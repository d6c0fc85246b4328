package mock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// ChildEnv returns env with the variables that send an app's HTTP and HTTPS calls through the proxy at
// proxyURL and make it trust the CA in caFile, in each language's way: HTTP_PROXY and HTTPS_PROXY (both
// cases), SSL_CERT_FILE (Go, Ruby, OpenSSL), REQUESTS_CA_BUNDLE (Python requests), NODE_EXTRA_CA_CERTS
// (Node), CURL_CA_BUNDLE (curl), GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (gRPC C-core). NO_PROXY is kept.
func ChildEnv(env []string, proxyURL, caFile string) []string {
	set := map[string]string{"HTTP_PROXY": proxyURL, "HTTPS_PROXY": proxyURL, "http_proxy": proxyURL, "https_proxy": proxyURL}
	if caFile != "" {
		for _, k := range []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"} {
			set[k] = caFile
		}
	}
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			out = append(out, kv)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
		"NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"} {
		if v, ok := set[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// RunChild runs argv with env, its standard streams the caller's, and passes it every signal received on
// sigs until it exits. It returns the child's exit status: its code, or 128 plus the signal that ended it.
func RunChild(ctx context.Context, argv, env []string, sigs <-chan os.Signal) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return 127, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGTERM)
			ctx = context.Background() // once
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			}
			if err != nil {
				return 1, err
			}
			return 0, nil
		}
	}
}
