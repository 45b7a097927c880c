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
	"slices"
	"strings"
	"sync/atomic"
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
	tunnel Dialer
	local  *net.Resolver
	log    *slog.Logger
	port   uint16  // on the tunnel's servers
	sh     *shared // with the resolvers WithLocal made
}

// shared is the part of a Resolver that follows the tunnel's
// configuration (Reconfigure), with the cache of answers it gave.
type shared struct {
	view  atomic.Pointer[view]
	cache cache
}

// view is one configuration, never changed once stored.
type view struct {
	policy  *split.Policy
	servers []netip.AddrPort
	search  []string // lower case, no dots at either end
}

// New returns a Resolver for o. It does no I/O.
func New(o Options) *Resolver {
	r := &Resolver{
		tunnel: o.Tunnel,
		local:  o.Local,
		log:    o.Logger,
		port:   o.Port,
		sh:     new(shared),
	}
	if r.local == nil {
		r.local = net.DefaultResolver
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("sub", "dns")
	if r.port == 0 {
		r.port = 53
	}
	r.sh.view.Store(newView(o, r.port))
	return r
}

// newView takes o's policy, servers and search domains.
func newView(o Options, port uint16) *view {
	v := &view{policy: o.Policy}
	search := o.SearchDomains
	if len(search) == 0 && o.SearchDomain != "" {
		search = []string{o.SearchDomain}
	}
	if len(search) == 0 && o.Policy != nil {
		search = o.Policy.SearchDomains
	}
	for _, d := range search {
		if d = strings.ToLower(strings.Trim(d, ".")); d != "" {
			v.search = append(v.search, d)
		}
	}

	servers := o.Servers
	if len(servers) == 0 && o.Policy != nil {
		servers = o.Policy.DNSServers
	}
	for _, s := range servers {
		v.servers = append(v.servers, netip.AddrPortFrom(s.Unmap(), port))
	}
	return v
}

// Reconfigure makes r, and every resolver WithLocal made from it, follow
// a tunnel that came back with another configuration: o's Policy,
// Servers, SearchDomains and SearchDomain replace those New was given;
// its other fields are ignored. The cache is emptied, since the new
// servers or domains may answer otherwise. Lookups under way finish with
// what they started with.
func (r *Resolver) Reconfigure(o Options) {
	r.sh.view.Store(newView(o, r.port))
	r.sh.cache.clear()
}

// WithLocal returns a resolver that asks local for the names that are not
// the tunnel's, and otherwise is r: the same tunnel, servers, policy and
// cache, and it follows r's Reconfigure. TUN mode uses it to ask the
// host's original resolvers, which r (the proxies') must not.
func (r *Resolver) WithLocal(local *net.Resolver) *Resolver {
	c := *r
	if local != nil {
		c.local = local
	}
	return &c
}

// Servers returns the tunnel's DNS servers the resolver asks now.
func (r *Resolver) Servers() []netip.AddrPort {
	return slices.Clone(r.view().servers)
}

func (r *Resolver) view() *view { return r.sh.view.Load() }

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
	search := r.view().search
	if strings.Contains(n, ".") || len(search) == 0 {
		return r.lookupName(ctx, n)
	}

	var err error
	for _, d := range search {
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

// haveServers says whether tunnel names can be asked at all.
func (r *Resolver) haveServers() bool {
	return len(r.view().servers) > 0 && r.tunnel != nil
}

func (r *Resolver) isTunnelName(name string) bool {
	pol := r.view().policy
	return pol != nil && pol.TunnelName(name)
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
	if !r.haveServers() {
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
	if h, ok := r.sh.cache.get(key, time.Now()); ok {
		return h.addrs, h.ttl, h.err()
	}

	msg, err := r.exchange(ctx, name, qtype)
	if err != nil {
		return nil, 0, err
	}
	if msg.Rcode == dns.RcodeNameError {
		r.sh.cache.putNegative(key, true, negativeTTL(msg), time.Now())
		return nil, 0, errNXDomain
	}

	addrs, ttl := answerAddrs(msg, name, qtype)
	if len(addrs) == 0 {
		r.sh.cache.putNegative(key, false, negativeTTL(msg), time.Now())
		return nil, 0, ErrNotFound
	}
	r.sh.cache.put(key, addrs, ttl, time.Now())
	return addrs, ttl, nil
}

// errNXDomain is ErrNotFound for a name that does not exist at all, as
// opposed to one without records of the asked type.
var errNXDomain = fmt.Errorf("%w (NXDOMAIN)", ErrNotFound)
