package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocnet/ocnet/proxy"
)

// ncFlags configure `ocnet nc`.
type ncFlags struct {
	socks    string
	user     string
	passFile string
	app      string
	timeout  time.Duration
}

// newNCCmd is `ocnet nc HOST PORT`: a ProxyCommand for ssh that reaches
// HOST through a running ocnet's SOCKS5 proxy, so the name is resolved
// with split DNS and the flow routed by the split policy.
func newNCCmd() *cobra.Command {
	var f ncFlags
	cmd := &cobra.Command{
		Use:   "nc [flags] HOST PORT",
		Short: "Connect standard input and output to HOST:PORT through ocnet's SOCKS5 proxy",
		Long: "Connect standard input and output to HOST:PORT through a running ocnet's\n" +
			"SOCKS5 proxy, for ssh:\n\n" +
			"  ssh -o ProxyCommand='ocnet nc %h %p' build.corp.example\n\n" +
			"Exit status: 0 when the connection ends, 1 when it cannot be made.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runNC(cmd.Context(), f, args[0], args[1])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.socks, "socks", "127.0.0.1:1080", "the running ocnet's SOCKS5 proxy")
	fl.StringVar(&f.user, "proxy-user", "", "username, when the proxy requires one")
	fl.StringVar(&f.passFile, "proxy-pass-file", "",
		`file whose first line is the proxy password ("-" = standard input is not allowed here)`)
	fl.StringVar(&f.app, "app", "",
		"app ID to send as the SOCKS5 username, for per-app rules (proxy without credentials)")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on connecting")
	return cmd
}

// errNC is a failure to connect; main maps it to exit status 1.
type errNC struct{ msg string }

func (e errNC) Error() string { return e.msg }

func runNC(ctx context.Context, f ncFlags, host, port string) error {
	if f.passFile == "-" {
		return usageError{errors.New("nc: --proxy-pass-file -: standard input carries the connection")}
	}
	if (f.user == "") != (f.passFile == "") {
		return usageError{errors.New("nc: --proxy-user and --proxy-pass-file go together")}
	}
	c := &proxy.SOCKSClient{Server: f.socks, App: f.app}
	if f.user != "" {
		pass, err := readPassFile(f.passFile, true)
		if err != nil {
			return usageError{fmt.Errorf("nc: %w", err)}
		}
		c.Auth = &proxy.Auth{User: f.user, Pass: pass}
	}

	dst := net.JoinHostPort(host, port)
	dctx, cancel := context.WithTimeout(ctx, f.timeout)
	conn, err := c.Dial(dctx, dst)
	cancel()
	if err != nil {
		// %v, not %w: the status is 1 whatever the cause, as for nc.
		return errNC{fmt.Sprintf("nc: cannot connect to %s through SOCKS5 proxy %s: %v",
			dst, f.socks, err)}
	}
	defer conn.Close()

	return pipe(ctx, conn, os.Stdin, os.Stdout)
}

// pipe copies in to conn and conn to out. The end of in half-closes conn;
// the end of conn's data ends pipe, as ssh expects of a ProxyCommand.
func pipe(ctx context.Context, conn net.Conn, in io.Reader, out io.Writer) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	go func() {
		io.Copy(conn, in)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()

	_, err := io.Copy(out, conn)
	if err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
		return errNC{fmt.Sprintf("nc: %v", err)}
	}
	return nil
}
