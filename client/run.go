package client

// The client's life after Start, in one goroutine (run):
//
//	runTunnel: CSTP carries control (and data until DTLS is up);
//	           runDTLS, beside it, brings DTLS up and down.
//	on loss:   reconnect with the cookie (backoff, bounded), log in again
//	           if the headend forgot the cookie and Reauth allows;
//	           keep the stack when the address is the same.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocnet/ocnet/auth"
	"github.com/ocnet/ocnet/datapath"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/trust"
)

func (c *Client) run(ctx context.Context) error {
	var o outage
	for {
		up := time.Now()
		rekey, err := c.runTunnel(ctx)
		if ctx.Err() != nil || c.closing.Load() {
			return nil
		}

		if errors.Is(err, datapath.ErrTerminated) || errors.Is(err, datapath.ErrPeerDisconnect) {
			// The cookie must not be used again.
			c.log.Warn("headend ended the session", "err", err)
			if c.o.Reauth == nil {
				return fmt.Errorf("%w: %w", ErrSessionGone, err)
			}
			c.setCookie("")
		} else if rekey {
			c.log.Info("rekey: opening a new tunnel, as the headend asked")
		} else {
			c.log.Warn("tunnel lost, reconnecting", "err", err)
		}

		// A tunnel that dies soon after it came back continues the same
		// outage: a headend that takes every CONNECT and drops it at
		// once must not reset the backoff and the bound each time.
		if o.start.IsZero() || time.Since(up) >= stableTunnel {
			o = outage{start: time.Now(), backoff: minBackoff}
		} else {
			o.flapped = true
		}
		if err := c.reconnect(ctx, &o); err != nil {
			if ctx.Err() != nil || c.closing.Load() {
				return nil
			}
			return err
		}
	}
}

// stableTunnel is how long a tunnel must have lasted for its loss to
// start a new outage rather than continue the last one.
const stableTunnel = 30 * time.Second

// outage is one stretch of reconnecting: when it began, which the
// reconnect bound counts from, the next pause between attempts, and
// whether a tunnel came back during it only to be lost again at once.
type outage struct {
	start   time.Time
	backoff time.Duration
	flapped bool
}

// runTunnel runs the current tunnel's channels until CSTP ends; rekey says
// it ended because the rekey time came.
func (c *Client) runTunnel(ctx context.Context) (rekey bool, err error) {
	c.mu.Lock()
	t, cstp, of := c.tunnel, c.cstp, c.cstpOf
	c.mu.Unlock()
	if cstp == nil || of != t {
		cstp = c.attach(t)
	}

	dctx, stopDTLS := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if !c.o.NoDTLS {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runDTLS(dctx, t)
		}()
	}

	// Go's TLS cannot renegotiate, so every rekey method is done the way
	// "new-tunnel" says (protocol.md §5): at rekey time the stream is
	// dropped and the tunnel reopened with the cookie; the stack stays.
	var rekeyed atomic.Bool
	if rt := t.Config.RekeyTime; rt > 0 && t.Config.RekeyMethod != "none" {
		timer := time.AfterFunc(rt, func() {
			rekeyed.Store(true)
			cstp.Abort()
		})
		defer timer.Stop()
	}

	err = cstp.Run(ctx)
	c.sw.SetCSTP(nil)
	c.mu.Lock()
	c.cstp, c.cstpOf = nil, nil
	c.mu.Unlock()
	stopDTLS()
	wg.Wait()
	c.ended.addCSTP(cstp)
	return rekeyed.Load(), err
}

// attach makes t's CSTP channel the one data uses.
func (c *Client) attach(t *session.Tunnel) *datapath.CSTP {
	cstp := datapath.NewCSTP(datapath.CSTPOptions{
		Conn:      t.Conn,
		Reader:    t.Reader,
		DPD:       t.Config.DPD,
		Keepalive: t.Config.Keepalive,
		Deliver:   c.inject,
		Flush:     c.flush,
		Logger:    c.log,
	})
	c.mu.Lock()
	c.cstp, c.cstpOf = cstp, t
	c.mu.Unlock()
	c.sw.SetCSTP(cstp)
	return cstp
}

// dtlsRetry is the pause before a new DTLS attempt. ocserv drops a second
// UDP handover for a session within 3 s, so never retry faster than that.
const dtlsRetry = 10 * time.Second

// runDTLS brings DTLS up, moves data onto it, and when it fails moves data
// back to CSTP and tries again, until ctx ends. Flows never notice: both
// channels feed the same stack.
func (c *Client) runDTLS(ctx context.Context, t *session.Tunnel) {
	for {
		link, err := session.DialDTLS(ctx, t, c.log)
		if errors.Is(err, session.ErrNoDTLS) {
			c.log.Info("headend offers no DTLS; data stays on TLS")
			return
		}
		if err == nil {
			err = c.useDTLS(ctx, t, link)
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("DTLS down, data on TLS", "err", err, "retry_in", dtlsRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(dtlsRetry):
		}
	}
}

// useDTLS runs one DTLS association until it fails.
func (c *Client) useDTLS(ctx context.Context, t *session.Tunnel, link *session.DTLSLink) error {
	d, err := datapath.NewDTLS(datapath.DTLSOptions{
		Conn:      link.Conn,
		Pending:   link.Pending,
		Keys:      link.Keys,
		DPD:       t.Config.DTLSDPD,
		Keepalive: t.Config.DTLSKeepalive,
		Deliver:   c.inject,
		Flush:     c.flush,
		Logger:    c.log,
	})
	if err != nil {
		link.Conn.Close()
		return err
	}
	// The stack's MTU must fit the channel data uses: DTLS carries less
	// per packet than the headend's tunnel MTU when its link is small.
	stk := c.stack.Load()
	tunMTU := c.MTU()
	dtlsMTU := min(tunMTU, dtlsPayloadMTU(t.Config.BaseMTU, c.o.URL.Hostname()))
	stk.SetMTU(dtlsMTU)
	c.sw.SetDTLS(d)
	c.log.Info("data channel", "channel", "DTLS", "suite", d.CipherSuite(), "mtu", dtlsMTU)
	err = d.Run(ctx)
	c.sw.SetDTLS(nil)
	stk.SetMTU(tunMTU)
	c.ended.addDTLS(d)
	if ctx.Err() == nil {
		c.log.Info("data channel", "channel", "TLS")
	}
	return err
}

// Reconnect pacing: quick first retries, then at most every maxBackoff.
const (
	minBackoff = time.Second
	maxBackoff = 10 * time.Second
)

// connectTimeout bounds one CONNECT, the first and each reconnect's, dial
// and TLS handshake included; a variable for tests.
var connectTimeout = 15 * time.Second

// reconnect re-establishes the tunnel with the cookie, with backoff, until
// it works or the bound, counted from the outage's start, passes.
func (c *Client) reconnect(ctx context.Context, o *outage) error {
	limit := c.reconnectLimit()
	start := time.Now()
	deadline := o.start.Add(limit)
	reauthed := false

	if o.flapped {
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w after %v: the tunnel keeps dropping as soon as it "+
				"is up", ErrReconnectTimeout, limit.Round(time.Second))
		}
		wait := min(o.backoff, time.Until(deadline))
		c.log.Info("tunnel dropped soon after it came back; pausing", "retry_in",
			wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		o.backoff = min(2*o.backoff, maxBackoff)
	}

	for attempt := 1; ; attempt++ {
		// A login that fails for want of a headend (ocserv restarting
		// refuses or resets connections for a few seconds) is retried
		// like a failed CONNECT; only a refused login ends here. It used
		// to end every reconnect at the first reset connection.
		var err error
		if c.getCookie() == "" {
			if err = c.reauth(ctx); err == nil {
				reauthed = true
			}
		}
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, connectTimeout)
			var t *session.Tunnel
			t, err = c.connect(actx, c.Config().Address.Addr(), nil)
			cancel()
			if err == nil {
				c.adopt(t)
				c.reconnects.Add(1)
				c.log.Info("reconnected", "attempt", attempt,
					"took", time.Since(start).Round(time.Millisecond))
				if c.o.OnReconnect != nil {
					c.o.OnReconnect(t.Config)
				}
				return nil
			}
		}

		var te *trust.Error
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &te), errors.Is(err, ErrSessionGone), loginRefused(err):
			return err
		case errors.Is(err, session.ErrCookieRejected):
			if c.o.Reauth == nil || reauthed {
				return fmt.Errorf("%w: %w", ErrSessionGone, err)
			}
			c.log.Warn("headend no longer accepts the cookie; logging in again")
			c.setCookie("")
			continue
		}

		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w after %v: %w", ErrReconnectTimeout,
				limit.Round(time.Second), err)
		}
		wait := min(o.backoff, time.Until(deadline))
		c.log.Info("reconnect failed", "attempt", attempt, "retry_in",
			wait.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		o.backoff = min(2*o.backoff, maxBackoff)
	}
}

func (c *Client) reconnectLimit() time.Duration {
	if c.o.ReconnectTimeout > 0 {
		return c.o.ReconnectTimeout
	}
	if d := c.Config().DisconnectedTimeout; d > 0 {
		return d
	}
	return DefaultReconnectTimeout
}

// loginRefused says whether a failed re-login was the headend's answer
// rather than the network's, so that trying again cannot help.
func loginRefused(err error) bool {
	return errors.Is(err, auth.ErrAuthFailed) || errors.Is(err, auth.ErrUnknownGroup) ||
		errors.Is(err, auth.ErrNotAnyConnect)
}

func (c *Client) reauth(ctx context.Context) error {
	if c.o.Reauth == nil {
		return ErrSessionGone
	}
	cookie, err := c.o.Reauth(ctx)
	if err != nil {
		return fmt.Errorf("client: logging in again: %w", err)
	}
	c.setCookie(cookie)
	return nil
}

// adopt makes t the current tunnel. The same address keeps the stack and
// every flow in it; a new address needs a new stack, and flows in the old
// one are reset. Whatever else changed is followed (see follow).
func (c *Client) adopt(t *session.Tunnel) {
	c.mu.Lock()
	old := c.cfg
	c.tunnel, c.cfg = t, t.Config
	c.mu.Unlock()
	defer c.follow(old, t.Config)

	if slices.Equal(old.Prefixes(), t.Config.Prefixes()) {
		return
	}
	stk, err := c.newStack(t.Config)
	if err != nil {
		c.log.Error("new address, but no stack for it; keeping the old one", "err", err)
		return
	}
	prev := c.stack.Swap(stk)
	prev.Close()
	c.log.Warn("headend assigned a new address; open flows were reset",
		"old", old.Prefixes(), "new", t.Config.Prefixes())
}

func (c *Client) getCookie() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cookie
}

func (c *Client) setCookie(s string) {
	c.mu.Lock()
	c.cookie = s
	c.mu.Unlock()
}

// dtlsPayloadMTU is the largest packet a DTLS record carries over a link
// of baseMTU bytes: less the outer IP and UDP headers and the record's
// own overhead. Without a base MTU the headend's tunnel MTU governs.
func dtlsPayloadMTU(baseMTU int, host string) int {
	if baseMTU <= 0 {
		return 1 << 16
	}
	ipHdr := 20
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		ipHdr = 40
	}
	return baseMTU - ipHdr - 8 - datapath.DTLSOverhead
}
