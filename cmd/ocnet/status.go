package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
func serveControl(ctx context.Context, path string, c *client.Client,
	tun func() *tunStatus, log *slog.Logger) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	get := func() any {
		st := c.Status()
		return statusReply{State: "up", SOCKS: st.SOCKS, HTTP: st.HTTP, TUN: tun(), Status: &st}
	}
	return control.Serve(ctx, path, get, log, explainHandlers(c))
}

// statusReply is what the control socket answers: the tunnel's
// client.Status while one is up, nil while an on-demand tunnel is down,
// beside what is known either way. Its fields shadow Status's own SOCKS
// and HTTP, which an on-demand tunnel leaves empty.
type statusReply struct {
	State       string        `json:"state"` // "up", "up (on demand)", "down (on demand)"
	OnDemand    bool          `json:"on_demand,omitempty"`
	IdleTimeout time.Duration `json:"idle_timeout_ns,omitempty"`
	SOCKS       string        `json:"socks,omitempty"`
	HTTP        string        `json:"http,omitempty"`
	TUN         *tunStatus    `json:"tun,omitempty"`
	*client.Status
}

// onDemandStatus is statusReply for an OnDemand, up or down.
func onDemandStatus(od *client.OnDemand, idle time.Duration) func() any {
	return func() any {
		r := statusReply{State: "down (on demand)", OnDemand: true, IdleTimeout: idle,
			SOCKS: od.SOCKSAddr(), HTTP: od.HTTPAddr()}
		if st, ok := od.Status().(client.Status); ok {
			r.State, r.Status = "up (on demand)", &st
		}
		return r
	}
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
			var st statusReply
			if err := control.Get(ctx, path, &st); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(os.Stdout, st)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "control", defaultControlPath(), "status socket of the client")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(out io.Writer, st statusReply) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	defer w.Flush()
	row := func(k string, v any) { fmt.Fprintf(w, "%s:\t%v\n", k, v) }
	proxies := func() {
		if st.SOCKS != "" {
			row("SOCKS5 proxy", st.SOCKS)
		}
		if st.HTTP != "" {
			row("HTTP proxy", st.HTTP)
		}
	}

	// A client older than statusReply sends a bare client.Status.
	row("state", firstNonEmpty(st.State, "up"))
	if st.OnDemand {
		row("idle timeout", st.IdleTimeout)
	}
	if st.Status == nil {
		row("tunnel", "none; the first flow that needs the tunnel brings it up")
		proxies()
		return
	}
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
	row("proxy flows", fmt.Sprintf("%d tunnel, %d direct, %d failed (SOCKS5, HTTP, -L)",
		st.Flows.Tunnel, st.Flows.Direct, st.Flows.Failed))
	if t := st.TUN; t != nil {
		row("TUN device", t.Device)
		row("TUN packets", fmt.Sprintf("%d host->tunnel, %d host->ocnet's stack, "+
			"%d tunnel->host, %d dropped", t.FastPath, t.HostStack, t.Diverted, t.Dropped))
	}
	proxies()
}
