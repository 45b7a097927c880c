package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocnet/ocnet/proxy"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/split"
	"github.com/ocnet/ocnet/trust"
)

// OnDemand serves the proxies with no tunnel, brings a tunnel up when a
// flow needs one (the flow waits meanwhile), and takes it down again after
// an idle time with no flow through it.
//
// A flow needs the tunnel when an on-demand rule says so (never, then
// always, then if-needed when local resolution fails), or when the last
// tunnel's policy routes its name or address into the tunnel. With no
// rules and no tunnel yet, the first flow brings the tunnel up.
//
// A failure to bring the tunnel up fails the flow that asked, and the next
// flow tries again, unless trying again cannot help: a login the headend
// refused (see loginRefused), a certificate not trusted, a session gone
// with no way to log in again without a person, or a session Options.Accept
// refused. Those end the OnDemand: Done is closed, Err says why, and the
// proxies keep refusing flows until Close.
type OnDemand struct {
	o    Options
	idle time.Duration
	log  *slog.Logger

	// Cookie returns a session cookie: the first call may log in with
	// the user's credentials; later ones log in again without a person.
	cookie func(ctx context.Context) (string, error)

	router *proxy.Router
	lns    []net.Listener
	fwds   []net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex // guards the fields below; held while a tunnel comes up
	c          *Client
	pol        *split.Policy // of the latest tunnel; nil before the first
	lastCookie string

	active   atomic.Int64 // open flows through the tunnel
	lastUsed atomic.Int64 // unix nanoseconds of the last flow's end or start

	done    chan struct{} // closed by end
	endErr  error         // why it ended; written once before done closes
	endOnce sync.Once
}

// StartOnDemand listens on o's proxy addresses and returns at once; no
// tunnel exists until a flow needs one. cookie supplies session cookies.
func StartOnDemand(o Options, idle time.Duration,
	cookie func(ctx context.Context) (string, error)) (*OnDemand, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// An HTTP proxy's pooled upstream connection counts as an open flow
	// and would hold the tunnel up for its whole pool lifetime.
	o.Proxy.UpstreamIdle = time.Second
	od := &OnDemand{o: o, idle: idle, log: o.Logger, cookie: cookie,
		done: make(chan struct{})}
	od.router = &proxy.Router{Gate: od.gate, Logger: o.Logger.With("sub", "router")}

	for _, addr := range []string{o.SOCKSAddr, o.HTTPAddr} {
		var ln net.Listener
		if addr != "" {
			var err error
			if ln, err = net.Listen("tcp", addr); err != nil {
				od.closeListeners()
				return nil, fmt.Errorf("client: proxy listen: %w", err)
			}
			if err := proxy.CheckExposure(ln.Addr().String(), o.Proxy.Auth); err != nil {
				ln.Close()
				od.closeListeners()
				return nil, fmt.Errorf("client: %w", err)
			}
		}
		od.lns = append(od.lns, ln)
	}
	fwds, err := proxy.ListenForwards(o.Proxy.Forwards)
	if err != nil {
		od.closeListeners()
		return nil, fmt.Errorf("client: %w", err)
	}
	od.fwds = fwds

	ctx, cancel := context.WithCancel(context.Background())
	od.cancel = cancel
	od.serve(ctx)
	return od, nil
}

func (od *OnDemand) serve(ctx context.Context) {
	srv := &proxy.Server{Router: od.router, Options: od.o.Proxy, Logger: od.log}
	run := func(f func()) {
		od.wg.Add(1)
		go func() {
			defer od.wg.Done()
			f()
		}()
	}
	if ln := od.lns[0]; ln != nil {
		run(func() { srv.ServeSOCKS5(ctx, ln) })
	}
	if ln := od.lns[1]; ln != nil {
		run(func() { srv.ServeHTTP(ctx, ln) })
	}
	for i, ln := range od.fwds {
		run(func() { srv.ServeForward(ctx, ln, od.o.Proxy.Forwards[i]) })
	}
	run(func() { od.idleLoop(ctx) })
}

// SOCKSAddr returns where the SOCKS5 proxy listens, or "".
func (od *OnDemand) SOCKSAddr() string { return addrOf(od.lns[0]) }

// HTTPAddr returns where the HTTP proxy listens, or "".
func (od *OnDemand) HTTPAddr() string { return addrOf(od.lns[1]) }

// Done is closed when the OnDemand has ended on its own, for a reason no
// later flow can overcome (see OnDemand); Err says which. Close does not
// close it.
func (od *OnDemand) Done() <-chan struct{} { return od.done }

// Err says why the OnDemand ended on its own, or nil while it has not.
func (od *OnDemand) Err() error {
	select {
	case <-od.done:
		return od.endErr
	default:
		return nil
	}
}

// end records the first reason to stop and closes done.
func (od *OnDemand) end(err error) {
	od.endOnce.Do(func() {
		od.endErr = err
		close(od.done)
	})
}

// OnDemandStatus is the status while no tunnel is up.
type OnDemandStatus struct {
	State       string        `json:"state"`
	IdleTimeout time.Duration `json:"idle_timeout_ns"`
	SOCKS       string        `json:"socks,omitempty"`
	HTTP        string        `json:"http,omitempty"`
}

// Status returns the tunnel's Status while one is up, else an
// OnDemandStatus.
func (od *OnDemand) Status() any {
	od.mu.Lock()
	c := od.c
	od.mu.Unlock()
	if c != nil {
		return c.Status()
	}
	return OnDemandStatus{State: "down (on demand)", IdleTimeout: od.idle,
		SOCKS: od.SOCKSAddr(), HTTP: od.HTTPAddr()}
}

// gate runs before every flow: while a tunnel is up, or when this flow
// needs one, the flow goes to the tunnel's router; otherwise it goes
// direct.
func (od *OnDemand) gate(ctx context.Context, host string) (proxy.Dialer, error) {
	od.mu.Lock()
	defer od.mu.Unlock()

	if err := od.Err(); err != nil {
		return nil, fmt.Errorf("client: on demand: ended: %w", err)
	}
	if od.c != nil && od.c.Err() == nil && !isDone(od.c) {
		return tracked{od}, nil
	}
	if od.c != nil {
		od.log.Warn("on-demand tunnel had ended", "err", od.c.Err())
		od.c = nil
	}
	// An app outside the tunnel's set is refused, when the policy says
	// so, whether or not a tunnel is up.
	if apps := &od.o.Local.Apps; apps.Refuse {
		if ok, rule := apps.Check(proxy.AppFrom(ctx)); !ok {
			return nil, fmt.Errorf("client: on demand: %s: %w (%s)", host, proxy.ErrRefused,
				rule)
		}
	}
	if !od.needs(ctx, host) {
		return directDialer{}, nil
	}
	if err := od.upLocked(ctx, host); err != nil {
		return nil, err
	}
	return tracked{od}, nil
}

func isDone(c *Client) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// needs decides whether a flow to host brings the tunnel up.
func (od *OnDemand) needs(ctx context.Context, host string) bool {
	rules := &od.o.Local.OnDemand
	if ip, err := netip.ParseAddr(host); err == nil {
		if od.pol == nil {
			return !rules.Configured()
		}
		return od.pol.Route(ip) == split.Tunnel
	}

	// With lists, they alone decide, never first: a name on none of them
	// does not bring the tunnel up, whatever the last tunnel's domains.
	if rules.Configured() {
		ok, r := rules.Connect(host, false)
		if ok || r.Kind == split.RuleNever {
			return ok
		}
		if ok, _ := rules.Connect(host, true); ok {
			return !resolvesLocally(ctx, host)
		}
		return false
	}
	if od.pol != nil {
		return od.pol.TunnelName(host)
	}
	return true
}

func resolvesLocally(ctx context.Context, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	return err == nil && len(ips) > 0
}

// upLocked brings a tunnel up with the last cookie, or a fresh one if the
// headend no longer takes it. A failure that the next flow cannot
// overcome ends the OnDemand; any other is logged, once per attempt, and
// fails this flow only.
func (od *OnDemand) upLocked(ctx context.Context, host string) error {
	od.log.Info("on demand: bringing the tunnel up", "for", host)
	err := od.tryUpLocked(ctx)
	if err == nil {
		return nil
	}

	var te *trust.Error
	if ctx.Err() == nil && (loginRefused(err) || errors.As(err, &te) ||
		errors.Is(err, ErrSessionGone) || errors.Is(err, ErrNotAccepted)) {
		od.log.Error("on demand: cannot bring the tunnel up; stopping", "err", err)
		od.end(err)
		return err
	}
	od.log.Warn("on demand: tunnel not up; the next flow tries again", "for", host,
		"err", err)
	return err
}

func (od *OnDemand) tryUpLocked(ctx context.Context) error {
	inner := od.o
	inner.SOCKSAddr, inner.HTTPAddr, inner.DNSListen = "", "", ""
	inner.Proxy.Forwards = nil

	for try := 0; try < 2; try++ {
		if od.lastCookie == "" {
			cookie, err := od.cookie(ctx)
			if err != nil {
				return fmt.Errorf("client: on demand: %w", err)
			}
			od.lastCookie = cookie
		}
		inner.Cookie = od.lastCookie
		c, err := Start(ctx, inner)
		if errors.Is(err, session.ErrCookieRejected) {
			od.lastCookie = ""
			continue
		}
		if err != nil {
			return fmt.Errorf("client: on demand: %w", err)
		}
		od.c = c
		od.pol = c.Router().Policy
		od.lastUsed.Store(time.Now().UnixNano())
		return nil
	}
	return fmt.Errorf("client: on demand: %w", session.ErrCookieRejected)
}

// idleLoop takes the tunnel down once no flow has used it for the idle
// time. The cookie stays valid on the headend for the next flow.
func (od *OnDemand) idleLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		od.mu.Lock()
		last := time.Unix(0, od.lastUsed.Load())
		if od.c != nil && od.active.Load() == 0 && time.Since(last) > od.idle {
			od.log.Info("on demand: idle, taking the tunnel down",
				"idle", time.Since(last).Round(time.Second))
			od.c.Suspend()
			od.c = nil
		}
		od.mu.Unlock()
	}
}

// Close ends the tunnel, if any, logging out, and stops the proxies.
func (od *OnDemand) Close() error {
	od.mu.Lock()
	var err error
	if od.c != nil {
		err = od.c.Close()
		od.c = nil
	}
	od.mu.Unlock()
	od.cancel()
	od.closeListeners()
	od.wg.Wait()
	return err
}

func (od *OnDemand) closeListeners() {
	for _, l := range append(od.lns, od.fwds...) {
		if l != nil {
			l.Close()
		}
	}
}

// tracked dials through the current tunnel and counts the flow as active
// until it closes, so a long download keeps the tunnel from idling out.
type tracked struct{ od *OnDemand }

func (t tracked) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	t.od.mu.Lock()
	c := t.od.c
	t.od.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("client: on demand: tunnel went down")
	}
	conn, err := c.Router().DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	t.od.active.Add(1)
	t.od.lastUsed.Store(time.Now().UnixNano())
	return &activeConn{Conn: conn, od: t.od}, nil
}

type activeConn struct {
	net.Conn
	od   *OnDemand
	once sync.Once
}

func (a *activeConn) Close() error {
	a.once.Do(func() {
		a.od.active.Add(-1)
		a.od.lastUsed.Store(time.Now().UnixNano())
	})
	return a.Conn.Close()
}

type directDialer struct{}

func (directDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
