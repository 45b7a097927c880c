// Package proxy is the front end applications talk to: a SOCKS5 and an
// HTTP proxy listener, and the Router behind both that resolves each
// destination, asks split where the flow goes, and dials it through the
// tunnel's netstack or directly. It moves bytes between sockets; it never
// sees packets and never decides routes itself.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/split"
)

// ErrNoTunnel means a flow was routed into the tunnel but the Router has
// no tunnel dialer.
var ErrNoTunnel = errors.New("proxy: no tunnel")

// ErrRefused means the policy lets a flow use neither the tunnel nor the
// host (an app outside the tunnel's set with no bypass, say).
var ErrRefused = errors.New("proxy: refused by policy")

// ErrResolve marks a flow whose host name could not be turned into an
// address: the local resolver failed or refused, the tunnel's DNS had no
// answer, the name does not exist, or it has no address of the flow's
// family. Callers branch on it to tell a name problem from a refused or
// unreachable connection (SOCKS5 reply 4, not 5); the error text is the
// resolver's own.
var ErrResolve = errors.New("proxy: name not resolved")

// resolveError wraps a resolution failure in ErrResolve without changing
// its text, which already names the name and the resolver asked.
type resolveError struct{ err error }

func (e *resolveError) Error() string   { return e.err.Error() }
func (e *resolveError) Unwrap() []error { return []error{ErrResolve, e.err} }

// Dialer opens a connection. The netstack is the tunnel's Dialer; a
// *net.Dialer is the direct one.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Router sends each flow into the tunnel or out directly. Fill the
// exported fields before the first DialContext and leave them alone
// afterwards (SetPolicy replaces the policy while flows run);
// DialContext is then safe for concurrent use. A Router must not be
// copied after first use.
type Router struct {
	// Policy decides per destination address until SetPolicy replaces
	// it; read the one in force with CurrentPolicy. Nil means full
	// tunnel.
	Policy *split.Policy

	// Resolver turns names into addresses, through the tunnel's DNS for
	// tunnel names. Nil means one built from Policy and Tunnel, asking
	// Policy.DNSServers on port 53.
	Resolver *dnsproxy.Resolver

	// Tunnel dials through the VPN (the netstack).
	Tunnel Dialer

	// Direct dials from the host. Nil means a zero net.Dialer.
	Direct Dialer

	// Gate, when set, sees every flow's host (a name or an IP literal)
	// before anything else. It may return a Dialer that then carries the
	// whole flow, or nil to let the Router go on as usual; an error fails
	// the flow. Connect-on-demand uses it to bring a tunnel up while the
	// flow waits. Gate may block; it must honour ctx.
	Gate func(ctx context.Context, host string) (Dialer, error)

	// Logger receives one debug line per flow; nil discards.
	Logger *slog.Logger

	policy atomic.Pointer[split.Policy] // set by SetPolicy

	defaultResolver struct {
		once sync.Once
		r    *dnsproxy.Resolver
	}

	tunnelFlows atomic.Uint64
	directFlows atomic.Uint64
	failedFlows atomic.Uint64

	self selfAddrs // its proxies' own listeners, never dialled (loop.go)
}

// SetPolicy makes p decide every flow from now on, as when the tunnel
// came back with other routes; flows already connected keep their path.
// It is safe to call while flows are dialled.
func (r *Router) SetPolicy(p *split.Policy) { r.policy.Store(p) }

// CurrentPolicy returns the policy in force: the last SetPolicy's, else
// Policy.
func (r *Router) CurrentPolicy() *split.Policy {
	if p := r.policy.Load(); p != nil {
		return p
	}
	return r.Policy
}

// Stats counts the flows a Router has dialed since it was created.
type Stats struct {
	Tunnel uint64 `json:"tunnel"` // connected through the tunnel
	Direct uint64 `json:"direct"` // connected directly
	Failed uint64 `json:"failed"` // could not be resolved or connected
}

// Stats returns the flow counters. It is safe to call at any time.
func (r *Router) Stats() Stats {
	return Stats{
		Tunnel: r.tunnelFlows.Load(),
		Direct: r.directFlows.Load(),
		Failed: r.failedFlows.Load(),
	}
}

// DialContext connects to addr ("host:port"). A host name is resolved by
// the Resolver; each address is then tried in order, routed by the
// Policy, until one connects. The error names the destination, each
// address tried and the path it took.
//
// TODO: race IPv4 and IPv6 (Happy Eyeballs, RFC 8305) instead of trying
// the addresses one after the other.
func (r *Router) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if r.Gate != nil {
		if d, err := r.gate(ctx, addr); err != nil || d != nil {
			if err == nil {
				err = r.checkLoopHost(addr)
			}
			if err != nil {
				r.failedFlows.Add(1)
				return nil, err
			}
			return d.DialContext(ctx, network, addr)
		}
	}
	conn, err := r.dial(ctx, network, addr)
	if err != nil {
		r.failedFlows.Add(1)
		r.logger().Debug("flow failed", "dst", addr, "err", err)
		return nil, err
	}
	return conn, nil
}

func (r *Router) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: dial %s: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("proxy: dial %s: bad port %q", addr, portStr)
	}

	ips, err := r.resolve(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("proxy: dial %s: %w", addr, &resolveError{err})
	}
	ips = matchFamily(network, ips)
	if len(ips) == 0 {
		err := fmt.Errorf("no %s address for %s", network, host)
		return nil, fmt.Errorf("proxy: dial %s: %w", addr, &resolveError{err})
	}

	name := host
	if _, err := netip.ParseAddr(host); err == nil {
		name = "" // an IP literal has no name
	}
	app := AppFrom(ctx)

	var errs []error
	for _, ip := range ips {
		path, rule := r.decide(ip, name, app)
		dst := netip.AddrPortFrom(ip, uint16(port)).String()
		if path == split.Refuse {
			errs = append(errs, fmt.Errorf("%s: %w (%s)", dst, ErrRefused, rule))
			continue
		}

		conn, err := r.dialVia(ctx, path, network, dst)
		if err == nil {
			r.count(path)
			r.logger().Debug("flow", "dst", addr, "addr", dst, "path", path, "app", app)
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s via %s: %w", dst, path, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("proxy: dial %s: %w", addr, errors.Join(errs...))
}

func (r *Router) gate(ctx context.Context, addr string) (Dialer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: dial %s: %w", addr, err)
	}
	return r.Gate(ctx, host)
}

// resolve returns the addresses of host, an IP literal or a name.
func (r *Router) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	return r.resolver().LookupNetIP(ctx, host)
}

func (r *Router) resolver() *dnsproxy.Resolver {
	if r.Resolver != nil {
		return r.Resolver
	}
	d := &r.defaultResolver
	d.once.Do(func() {
		d.r = dnsproxy.New(dnsproxy.Options{
			Policy: r.Policy,
			Tunnel: r.Tunnel, // a nil Dialer stays nil: dnsproxy reports no servers
			Logger: r.Logger,
		})
	})
	return d.r
}

// decide asks the policy about one flow; no policy means everything goes
// to the tunnel.
func (r *Router) decide(ip netip.Addr, name, app string) (split.Decision, split.Rule) {
	pol := r.CurrentPolicy()
	if pol == nil {
		return split.Tunnel, split.Rule{}
	}
	return pol.Decide(split.Flow{Addr: ip, Name: name, App: app})
}

// dialVia dials dst on the path the policy chose.
func (r *Router) dialVia(ctx context.Context, path split.Decision,
	network, dst string) (net.Conn, error) {
	if path == split.Tunnel {
		if r.Tunnel == nil {
			return nil, ErrNoTunnel
		}
		return r.Tunnel.DialContext(ctx, network, dst)
	}
	if err := r.checkLoop(dst); err != nil {
		return nil, err
	}
	if r.Direct == nil {
		var d net.Dialer
		return d.DialContext(ctx, network, dst)
	}
	return r.Direct.DialContext(ctx, network, dst)
}

func (r *Router) count(path split.Decision) {
	if path == split.Tunnel {
		r.tunnelFlows.Add(1)
	} else {
		r.directFlows.Add(1)
	}
}

func (r *Router) logger() *slog.Logger {
	if r.Logger == nil {
		return discard
	}
	return r.Logger
}

var discard = slog.New(slog.DiscardHandler)

// matchFamily drops addresses a "tcp4"/"tcp6"-style network cannot reach.
func matchFamily(network string, ips []netip.Addr) []netip.Addr {
	var want4, want6 bool
	switch {
	case strings.HasSuffix(network, "4"):
		want4 = true
	case strings.HasSuffix(network, "6"):
		want6 = true
	default:
		return ips
	}

	out := ips[:0:0]
	for _, ip := range ips {
		if ip.Is4() && want4 || ip.Is6() && want6 {
			out = append(out, ip)
		}
	}
	return out
}
