package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/control"
)

func defaultControlPath() string { return control.DefaultPath() }

// serveControl publishes the client's status on the control socket.
func serveControl(ctx context.Context, path string, c *client.Client, log *slog.Logger) (
	func(), error) {
	if path == "" {
		return func() {}, nil
	}
	return control.Serve(ctx, path, func() any { return c.Status() }, log, explainHandlers(c))
}

func newStatusCmd() *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running client's channel, traffic and addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			var st client.Status
			if err := control.Get(ctx, path, &st); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(st)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "control", defaultControlPath(), "status socket of the client")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(st client.Status) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s:\t%v\n", k, v) }
	row("server", st.Server)
	row("channel", st.Channel)
	row("cipher suite", st.CipherSuite)
	row("TLS cipher suite", st.TLSSuite)
	row("addresses", st.Addresses)
	row("DNS", st.DNS)
	row("split DNS", st.SplitDNS)
	row("routes", st.Routes)
	row("MTU", st.MTU)
	row("sent", fmt.Sprintf("%d bytes, %d packets", st.TxBytes, st.TxPackets))
	row("received", fmt.Sprintf("%d bytes, %d packets", st.RxBytes, st.RxPackets))
	row("reconnects", st.Reconnects)
	row("uptime", st.Uptime.Round(time.Second))
	row("flows", fmt.Sprintf("%d tunnel, %d direct, %d failed",
		st.Flows.Tunnel, st.Flows.Direct, st.Flows.Failed))
	if st.SOCKS != "" {
		row("SOCKS5 proxy", st.SOCKS)
	}
	if st.HTTP != "" {
		row("HTTP proxy", st.HTTP)
	}
	w.Flush()
}
