//go:debug tlsunsafeekm=1

// Command ocnet is an AnyConnect/OpenConnect VPN client that needs no root:
// it terminates the tunnel in its own TCP/IP stack and offers SOCKS5 and
// HTTP proxies into the corporate network.
package main

// About the go:debug line above: ocserv as Debian ships it negotiates TLS
// 1.2 without Extended Master Secret, and Go then refuses the keying-material
// exporter that derives the DTLS PSK (protocol.md §4.2). openconnect derives
// it all the same, and so does ocnet: the key only protects a channel to the
// same headend that the TLS session already authenticated.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ocnet/ocnet/auth"
	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/trust"
)

// Exit statuses, so scripts can tell failures apart (docs/design.md).
const (
	exitOK      = 0
	exitOther   = 1
	exitUsage   = 2
	exitAuth    = 3
	exitTrust   = 4
	exitNetwork = 5
	exitSession = 6 // the headend ended the session and no re-login was possible
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root := newRootCmd()
	var cpuProfile string
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile here")
	root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		return startProfile(cpuProfile)
	}
	defer pprof.StopCPUProfile()

	err := root.ExecuteContext(ctx)
	pprof.StopCPUProfile()
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintf(os.Stderr, "ocnet: %v\n", err)
	os.Exit(exitCode(err))
}

// newRootCmd is ocnet with its subcommands. Every flag that does not
// parse is a usage error (exit 2), whatever cobra's words for it
// ("unknown shorthand flag" used to exit 1).
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "ocnet",
		Short:         "AnyConnect/OpenConnect VPN client with a rootless SOCKS5/HTTP proxy",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError{err}
	})
	root.AddCommand(newConnectCmd(), newStatusCmd(), newNCCmd(), newExplainCmd(),
		newTunCleanupCmd(), newVersionCmd())
	return root
}

// newVersionCmd prints what --version prints.
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ocnet's version and the Go version it was built with",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
		},
	}
}

// versionString names the build: the module version ("(devel)" for a
// build from a checkout), the VCS revision and whether the tree had
// uncommitted changes, when the build recorded them, and the Go version.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "ocnet (devel), no build information, " + runtime.Version()
	}
	return formatVersion(bi)
}

func formatVersion(bi *debug.BuildInfo) string {
	v := firstNonEmpty(bi.Main.Version, "(devel)")
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	out := "ocnet " + v
	if rev != "" {
		out += " " + rev
		if modified == "true" {
			out += "-dirty"
		}
	}
	return out + " " + firstNonEmpty(bi.GoVersion, runtime.Version())
}

// usageError marks mistakes in the command line.
type usageError struct{ error }

// exitCode maps an error to the documented exit status.
func exitCode(err error) int {
	var ue usageError
	var te *trust.Error
	var ce *session.ConnectError
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, client.ErrSessionGone):
		return exitSession
	case errors.As(err, &te):
		return exitTrust
	case errors.Is(err, auth.ErrAuthFailed),
		errors.Is(err, auth.ErrUnknownGroup),
		errors.Is(err, session.ErrCookieRejected),
		errors.Is(err, client.ErrNotAccepted):
		return exitAuth
	case errors.As(err, &ce), errors.As(err, &oe), errors.As(err, &ne),
		errors.Is(err, session.ErrHeadendClosed),
		errors.Is(err, errTunnelLost), errors.Is(err, client.ErrReconnectTimeout):
		return exitNetwork
	}
	if isUsage(err) {
		return exitUsage
	}
	return exitOther
}

// isUsage recognises cobra's own flag errors.
func isUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown command", "flag needs", "invalid argument",
		"accepts ", "requires "} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// newLogger returns the one logger every package gets a child of.
func newLogger(verbose bool, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if verbose {
		opts.Level = slog.LevelDebug
	}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: want text or json", format)}
}

// startProfile writes a CPU profile for `go tool pprof`, for the benchmark
// suite's "what limits it" question.
func startProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return pprof.StartCPUProfile(f)
}
