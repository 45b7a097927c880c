package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/control"
)

// runOnDemand serves the proxies with no tunnel until a flow needs one.
// Credentials are asked for when the tunnel first comes up; later tunnels
// log in again from the answers kept in memory, or end ocnet if a person
// had to answer. A refused login or an untrusted certificate
// ends ocnet with the status a plain connect has; a network failure
// fails the flow that asked, and the next flow tries again.
func runOnDemand(ctx context.Context, f connectFlags, u *url.URL, tlsConf *tls.Config,
	stdin *bufio.Reader, o client.Options, log *slog.Logger) error {
	// The client calls these with its lock held, one bring-up at a time.
	var reauth func(context.Context) (string, error)
	var loggedIn, cookieRead bool
	cookie := func(ctx context.Context) (string, error) {
		switch {
		case reauth != nil:
			return reauth(ctx)
		case cookieRead:
			return "", fmt.Errorf("%w: the headend no longer takes the cookie "+
				"from standard input", client.ErrSessionGone)
		case loggedIn:
			return "", fmt.Errorf("%w: logging in again needs a person; "+
				"--passwd-on-stdin lets ocnet do it", client.ErrSessionGone)
		case f.cookieOnStdin:
			cookieRead = true
			c, err := readLine(stdin)
			if err != nil || c == "" {
				return "", fmt.Errorf("%w: --cookie-on-stdin: no cookie on standard input",
					client.ErrSessionGone)
			}
			return c, nil
		}
		res, fl, err := login(ctx, f, u, tlsConf, stdin, log)
		if fl != nil {
			// Answers read from stdin before a network failure are
			// not there to read again.
			reauth = fl.reauth(f, u, tlsConf, log)
		}
		if err != nil {
			return "", err
		}
		loggedIn = true
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
	select {
	case <-ctx.Done():
		log.Info("signal received, disconnecting")
		return nil
	case <-od.Done():
		return od.Err()
	}
}
