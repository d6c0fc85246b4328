package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapwire/tapwire/internal/hubclient"
)

// trafficShowOptions are the argument and flags of traffic show.
type trafficShowOptions struct {
	id   string
	json bool
}

func newTrafficShowCmd(hf *hubFlags) *cobra.Command {
	var o trafficShowOptions
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one record: request, response, bodies",
		Long: `Show one record: its identity and timing, the request and response with their
headers, and the bodies made readable by the hub (Content-Encoding undone, JSON
indented; binary bodies are only sized). --json prints the whole record as the
hub stores it (docs/record.md).`,
		Example: `  speedctl traffic show 01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e10
  speedctl traffic show 01950f6e-2a6e-7c4a-9b1e-3f6d2a8c4e10 --json | jq .http.res.status`,
		Args: cobra.ExactArgs(1),
		RunE: hf.runE(&o),
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the whole record as JSON")
	return cmd
}

func (o *trafficShowOptions) prepare(args []string) error {
	o.id = args[0]
	return nil
}

func (o *trafficShowOptions) run(ctx context.Context, c *hubclient.Client, w, _ io.Writer) error {
	r, err := c.Get(ctx, o.id)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(w, r, true)
	}
	fmt.Fprintf(w, "id:        %s\n", r.ID)
	fmt.Fprintf(w, "start:     %s\n", r.Start.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "duration:  %s\n", micros(r.DurMicros))
	fmt.Fprintf(w, "kind:      %s, direction %s\n", r.Kind, r.Direction)
	l := r.Labels
	fmt.Fprintf(w, "service:   %s (cluster %s, namespace %s, pod %s)\n", dash(l.Service), dash(l.Cluster), dash(l.Namespace), dash(l.Pod))
	if r.Net.ClientAddr != "" || r.Net.ServerAddr != "" {
		fmt.Fprintf(w, "net:       %s -> %s\n", dash(r.Net.ClientAddr), dash(r.Net.ServerAddr))
	}
	if r.Error != "" {
		fmt.Fprintf(w, "error:     %s\n", r.Error)
	}
	switch {
	case r.HTTP != nil:
		req := r.HTTP.Req
		fmt.Fprintf(w, "\n> %s %s %s\n", req.Method, req.URL, req.Proto)
		for _, h := range req.Headers {
			fmt.Fprintf(w, "> %s: %s\n", h.Name, h.Value)
		}
		if err := showBody(ctx, w, c, r.ID, "req", req.Body.Size); err != nil {
			return err
		}
		if res := r.HTTP.Res; res != nil {
			fmt.Fprintf(w, "\n< %s %d %s\n", res.Proto, res.Status, res.StatusText)
			for _, h := range res.Headers {
				fmt.Fprintf(w, "< %s: %s\n", h.Name, h.Value)
			}
			if err := showBody(ctx, w, c, r.ID, "res", res.Body.Size); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(w, "\n(no response)")
		}
	case r.TCP != nil:
		fmt.Fprintf(w, "\ntcp:       %d bytes up, %d bytes down, %d chunks captured\n", r.TCP.BytesUp, r.TCP.BytesDown, len(r.TCP.Chunks))
	}
	return nil
}

func showBody(ctx context.Context, w io.Writer, c *hubclient.Client, id, side string, size int64) error {
	if size == 0 {
		return nil
	}
	b, err := c.Body(ctx, id, side)
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	switch b.Kind {
	case "json", "text":
		fmt.Fprintln(w, strings.TrimSuffix(b.Text, "\n"))
	case "binary":
		fmt.Fprintf(w, "(binary body, %d bytes, %s)\n", b.Bytes, dash(b.ContentType))
	}
	if b.Truncated {
		fmt.Fprintf(w, "(captured only the first bytes of %d)\n", b.Size)
	}
	if b.Note != "" {
		fmt.Fprintf(w, "(%s)\n", b.Note)
	}
	return nil
}
