// Package dnsproxy resolves names for the proxy, one query at a time. Names
// that belong to the tunnel (split-DNS and default domains, or every name
// when the headend tunnels all DNS) go to the tunnel's DNS servers through
// the tunnel; all other names go to the host's resolver. A tunnel name is
// never handed to the local resolver, not even when the tunnel's servers
// fail, so internal names do not leak onto the local network.
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

	// SearchDomain (X-CSTP-Default-Domain) completes short names: a name
	// without a dot becomes name.SearchDomain.
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
	search  string
	tunnel  Dialer
	local   *net.Resolver
	log     *slog.Logger
	cache   cache
}

// New returns a Resolver for o. It does no I/O.
func New(o Options) *Resolver {
	r := &Resolver{
		policy: o.Policy,
		search: strings.Trim(o.SearchDomain, "."),
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
// completed with the search domain first. Tunnel names are asked of the tunnel's servers
// only; any failure there is returned as an error rather than retried on
// the local resolver.
func (r *Resolver) LookupNetIP(ctx context.Context, name string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}

	fqdn := r.complete(name)
	if fqdn == "" {
		return nil, fmt.Errorf("dnsproxy: lookup %q: invalid name", name)
	}

	// RFC 6761 section 6.3: localhost names are this host, whatever any
	// DNS server says, and are never sent to one.
	if fqdn == "localhost" || strings.HasSuffix(fqdn, ".localhost") {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}, nil
	}

	if r.policy != nil && r.policy.TunnelName(fqdn) {
		return r.lookupTunnel(ctx, fqdn)
	}
	return r.lookupLocal(ctx, fqdn)
}

// complete normalises name (no trailing dot, lower case) and appends the
// search domain to a single-label name. "localhost" stays short so that
// it keeps meaning this host. It returns "" for names that cannot be
// valid.
func (r *Resolver) complete(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" || len(name) > 253 || strings.ContainsAny(name, " /\\\x00") {
		return ""
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return ""
	}
	if !strings.Contains(name, ".") && name != "localhost" && r.search != "" {
		name += "." + strings.ToLower(r.search)
	}
	return name
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
		addrs, err := r.query(ctx, name, dns.TypeAAAA)
		aaaa <- result{addrs, err}
	}()
	addrs, errA := r.query(ctx, name, dns.TypeA)
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
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]netip.Addr, error) {
	key := cacheKey{name, qtype}
	if addrs, ok := r.cache.get(key, time.Now()); ok {
		return addrs, nil
	}

	msg, err := r.exchange(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	if msg.Rcode == dns.RcodeNameError {
		// TODO: cache negative answers for the SOA minimum (RFC 2308).
		return nil, ErrNotFound
	}

	addrs, ttl := answerAddrs(msg, name, qtype)
	r.cache.put(key, addrs, ttl, time.Now())
	if len(addrs) == 0 {
		return nil, ErrNotFound
	}
	return addrs, nil
}
