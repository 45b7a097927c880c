package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"

	"golang.org/x/term"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/control"
	"github.com/ocnet/ocnet/session"
)

// runOnDemand serves the proxies with no tunnel until a flow needs one.
// Credentials are asked for when the tunnel first comes up; later tunnels
// log in again from the answers kept in memory, or end ocnet if a person
// had to answer. A refused login, an untrusted certificate or a declined
// banner ends ocnet with the status a plain connect has; a network failure
// fails the flow that asked, and the next flow tries again.
func runOnDemand(ctx context.Context, f connectFlags, u *url.URL, tlsConf *tls.Config,
	stdin *bufio.Reader, o client.Options, log *slog.Logger) error {
	// The client calls these with its lock held, one bring-up at a time.
	var reauth func(context.Context) (string, error)
	var loggedIn, cookieRead bool
	var authBanner string
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
		authBanner = res.Banner
		return res.Cookie, nil
	}
	o.Accept = onDemandBanner(ctx, f.nonInter, func() string { return authBanner }, log)

	od, err := client.StartOnDemand(o, f.idleTimeout, cookie)
	if err != nil {
		return err
	}
	defer od.Close()
	if f.control != "" {
		stop, err := control.Serve(ctx, f.control, onDemandStatus(od, f.idleTimeout), log)
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

// onDemandBanner is the Accept hook of on-demand tunnels. The first
// bring-up shows the banner as a plain connect does, prompting a person at
// the terminal (the flow that asked waits, as it waits for the password
// prompt of the same bring-up); declining ends ocnet. Without a person
// (--non-inter, no terminal) the banner is logged at INFO instead of being
// printed between log lines. A later bring-up never prompts, since nobody
// may be watching by then: a banner that changed is logged at INFO.
func onDemandBanner(ctx context.Context, nonInter bool, authBanner func() string,
	log *slog.Logger) func(*session.Config) error {
	first := true
	var last string
	return func(cfg *session.Config) error {
		b := firstNonEmpty(cfg.Banner, authBanner())
		wasFirst := first
		first = false
		if b == "" || b == last {
			return nil
		}
		interactive := !nonInter && term.IsTerminal(int(os.Stdin.Fd()))
		switch {
		case wasFirst && interactive:
			if err := showBanner(ctx, b, false); err != nil {
				return err
			}
		case wasFirst:
			log.Info("banner", "text", sanitize(b))
		default:
			log.Info("banner changed", "text", sanitize(b))
		}
		last = b
		return nil
	}
}
