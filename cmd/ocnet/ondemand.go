package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/url"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/control"
)

// runOnDemand serves the proxies with no tunnel until a flow needs one.
// Credentials are asked for when the tunnel first comes up; later tunnels
// log in again from the answers kept in memory, or fail if a person had
// to answer.
func runOnDemand(ctx context.Context, f connectFlags, u *url.URL, tlsConf *tls.Config,
	stdin *bufio.Reader, o client.Options, log *slog.Logger) error {
	var reauth func(context.Context) (string, error)
	first := true
	cookie := func(ctx context.Context) (string, error) {
		if !first {
			if reauth == nil {
				return "", errors.New("the session cookie expired and logging in " +
					"again needs a person; use --passwd-on-stdin")
			}
			return reauth(ctx)
		}
		first = false
		if f.cookieOnStdin {
			c, err := readLine(stdin)
			if err != nil || c == "" {
				return "", errors.New("--cookie-on-stdin: no cookie on standard input")
			}
			return c, nil
		}
		res, fl, err := login(ctx, f, u, tlsConf, stdin, log)
		if err != nil {
			return "", err
		}
		reauth = fl.reauth(f, u, tlsConf, log)
		return res.Cookie, nil
	}

	od, err := client.StartOnDemand(o, f.idleTimeout, cookie)
	if err != nil {
		return err
	}
	defer od.Close()
	if f.control != "" {
		stop, err := control.Serve(ctx, f.control, od.Status, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	log.Info("proxy ready", "socks", od.SOCKSAddr(), "http", od.HTTPAddr(),
		"tunnel", "on demand", "idle_timeout", f.idleTimeout)
	<-ctx.Done()
	log.Info("signal received, disconnecting")
	return nil
}
