// Package dnsproxy resolves names for the proxy, one query at a time. Names
// that belong to the tunnel (split-DNS and default domains, or every name
// when the headend tunnels all DNS) go to the tunnel's DNS servers through
// the tunnel; all other names go to the host's resolver. A tunnel name is
// never handed to the local resolver, not even when the tunnel's servers
// fail, so internal names do not leak onto the local network. Server offers
// the same answers to other programs over UDP and TCP (--dns-listen).
package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/ocnet/ocnet/split"
)

// Errors callers may branch on with errors.Is.
var (
	// ErrNotFound means the name has no A or AAAA records (NXDOMAIN or
	// an empty answer).
	ErrNotFound = errors.New("dnsproxy: no such host")

	// ErrNoServers means a tunnel name was asked for but the tunnel has
	// no DNS servers or no dialer to reach them.
	ErrNoServers = errors.New("dnsproxy: no tunnel DNS servers")

	// ErrServerFailed means every tunnel DNS server failed to answer.
	ErrServerFailed = errors.New("dnsproxy: tunnel DNS servers failed")
)

// Dialer opens connections through the tunnel; the netstack provides one.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Options configures a Resolver.
type Options struct {
	// Policy decides which names are tunnel names. Nil means none are.
	Policy *split.Policy

	// Servers are the tunnel's DNS servers, tried in order. Empty means
	// Policy.DNSServers.
	Servers []netip.Addr

	// Port is the DNS port on Servers; 0 means 53. Tests set it.
	Port uint16

	// SearchDomains (X-CSTP-Default-Domain, which may carry several)
	// complete short names: a name without a dot is tried as
	// name.domain for each, in order. Empty means SearchDomain, then
	// Policy.SearchDomains.
	SearchDomains []string

	// SearchDomain is a single search domain, kept for callers that have
	// only one.
	SearchDomain string

	// Tunnel carries queries to Servers; the netstack in production.
	Tunnel Dialer

	// Local answers all names that are not tunnel names. Nil means
	// net.DefaultResolver.
	Local *net.Resolver

	// Logger receives state changes and server failures; nil discards.
	Logger *slog.Logger
}

// Resolver answers LookupNetIP. It is safe for concurrent use.
type Resolver struct {
	policy  *split.Policy
	servers []netip.AddrPort
	search  []string // lower case, no dots at either end
	tunnel  Dialer
	local   *net.Resolver
	log     *slog.Logger
	cache   cache
}

// New returns a Resolver for o. It does no I/O.
func New(o Options) *Resolver {
	r := &Resolver{
		policy: o.Policy,
		tunnel: o.Tunnel,
		local:  o.Local,
		log:    o.Logger,
	}
	if r.local == nil {
		r.local = net.DefaultResolver
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("sub", "dns")

	search := o.SearchDomains
	if len(search) == 0 && o.SearchDomain != "" {
		search = []string{o.SearchDomain}
	}
	if len(search) == 0 && o.Policy != nil {
		search = o.Policy.SearchDomains
	}
	for _, d := range search {
		if d = strings.ToLower(strings.Trim(d, ".")); d != "" {
			r.search = append(r.search, d)
		}
	}

	port := o.Port
	if port == 0 {
		port = 53
	}
	servers := o.Servers
	if len(servers) == 0 && o.Policy != nil {
		servers = o.Policy.DNSServers
	}
	for _, s := range servers {
		r.servers = append(r.servers, netip.AddrPortFrom(s.Unmap(), port))
	}
	return r
}

// LookupNetIP returns the addresses of name: A records first, then AAAA.
// An IP literal is returned as is, and localhost names are answered with
// the loopback addresses without asking anyone. A short name (no dot) is
// tried with each search domain in turn, and never bare when there are
// search domains, so that "intranet" cannot leak to the local resolver.
// Tunnel names are asked of the tunnel's servers only; any failure there
// is returned as an error rather than retried on the local resolver.
func (r *Resolver) LookupNetIP(ctx context.Context, name string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}

	n := normalize(name)
	if n == "" {
		return nil, fmt.Errorf("dnsproxy: lookup %q: invalid name", name)
	}
	if isLocalhost(n) {
		return loopback(), nil
	}
	if strings.Contains(n, ".") || len(r.search) == 0 {
		return r.lookupName(ctx, n)
	}

	var err error
	for _, d := range r.search {
		addrs, e := r.lookupName(ctx, n+"."+d)
		if e == nil {
			return addrs, nil
		}
		// A real failure says more than "not found" under another domain.
		if err == nil || errors.Is(err, ErrNotFound) {
			err = e
		}
	}
	return nil, err
}

// lookupName resolves a normalised, complete name where the policy says.
func (r *Resolver) lookupName(ctx context.Context, name string) ([]netip.Addr, error) {
	if r.isTunnelName(name) {
		return r.lookupTunnel(ctx, name)
	}
	return r.lookupLocal(ctx, name)
}

func (r *Resolver) isTunnelName(name string) bool {
	return r.policy != nil && r.policy.TunnelName(name)
}

// normalize lowers name and drops its trailing dot. It returns "" for
// names that cannot be valid.
func normalize(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" || len(name) > 253 || strings.ContainsAny(name, " /\\\x00") {
		return ""
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return ""
	}
	return name
}

// isLocalhost reports whether a normalised name is this host: RFC 6761
// section 6.3 says such names are never sent to a DNS server.
func isLocalhost(name string) bool {
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}

func loopback() []netip.Addr {
	return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
}

// lookupLocal asks the host's resolver.
func (r *Resolver) lookupLocal(ctx context.Context, name string) ([]netip.Addr, error) {
	addrs, err := r.local.LookupNetIP(ctx, "ip", name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, fmt.Errorf("dnsproxy: lookup %s (local): %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("dnsproxy: lookup %s (local): %w", name, err)
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// lookupTunnel asks the tunnel's servers for A and AAAA in parallel and
// joins the answers, A first.
func (r *Resolver) lookupTunnel(ctx context.Context, name string) ([]netip.Addr, error) {
	if len(r.servers) == 0 || r.tunnel == nil {
		return nil, fmt.Errorf("dnsproxy: lookup %s (tunnel): %w", name, ErrNoServers)
	}

	type result struct {
		addrs []netip.Addr
		err   error
	}
	aaaa := make(chan result, 1)
	go func() {
		addrs, _, err := r.query(ctx, name, dns.TypeAAAA)
		aaaa <- result{addrs, err}
	}()
	addrs, _, errA := r.query(ctx, name, dns.TypeA)
	res6 := <-aaaa

	addrs = append(addrs, res6.addrs...)
	if len(addrs) > 0 {
		return addrs, nil
	}

	// Both empty: a real failure outranks "not found".
	err := errA
	if (err == nil || errors.Is(err, ErrNotFound)) && res6.err != nil {
		err = res6.err
	}
	if err == nil {
		err = ErrNotFound
	}
	return nil, fmt.Errorf("dnsproxy: lookup %s (tunnel): %w", name, err)
}

// query answers one question for name from the cache or the servers.
// It returns the addresses and how long they stay valid; an NXDOMAIN
// answer is errNXDomain, an empty one ErrNotFound. Both kinds of negative
// answer are cached too (see negativeTTL), so a program that retries a
// missing name does not send a query through the tunnel each time.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (
	[]netip.Addr, time.Duration, error) {
	key := cacheKey{name, qtype}
	if h, ok := r.cache.get(key, time.Now()); ok {
		return h.addrs, h.ttl, h.err()
	}

	msg, err := r.exchange(ctx, name, qtype)
	if err != nil {
		return nil, 0, err
	}
	if msg.Rcode == dns.RcodeNameError {
		r.cache.putNegative(key, true, negativeTTL(msg), time.Now())
		return nil, 0, errNXDomain
	}

	addrs, ttl := answerAddrs(msg, name, qtype)
	if len(addrs) == 0 {
		r.cache.putNegative(key, false, negativeTTL(msg), time.Now())
		return nil, 0, ErrNotFound
	}
	r.cache.put(key, addrs, ttl, time.Now())
	return addrs, ttl, nil
}

// errNXDomain is ErrNotFound for a name that does not exist at all, as
// opposed to one without records of the asked type.
var errNXDomain = fmt.Errorf("%w (NXDOMAIN)", ErrNotFound)
