// Package split decides, per flow and per name, whether traffic goes into
// the tunnel or straight out of the host. It turns the headend's split
// include/exclude routes and split-DNS domains into pure lookups for proxy
// and dnsproxy; it never holds a socket and never resolves a name.
package split

import (
	"net/netip"
	"strings"
)

// Decision is where one flow goes.
type Decision int

const (
	// Direct sends the flow out of the host's own network stack.
	Direct Decision = iota
	// Tunnel sends the flow into the VPN tunnel.
	Tunnel
)

// String returns "direct" or "tunnel".
func (d Decision) String() string {
	switch d {
	case Direct:
		return "direct"
	case Tunnel:
		return "tunnel"
	}
	return "unknown"
}

// Policy is the headend's split-tunnel configuration, as sent in the
// X-CSTP-Split-*, X-CSTP-DNS, X-CSTP-Split-DNS, X-CSTP-Default-Domain and
// X-CSTP-Tunnel-All-DNS headers of the CONNECT reply.
//
// A Policy is read-only once built: Route and TunnelName are safe for
// concurrent use as long as nobody mutates the fields.
type Policy struct {
	// Include lists the networks reached through the tunnel. Empty means
	// full tunnel: every destination goes through it unless excluded.
	Include []netip.Prefix

	// Exclude lists the networks kept outside the tunnel. An exclude of
	// 0.0.0.0/32 (sent as 0.0.0.0/255.255.255.255) or ::/128 is Cisco's
	// "allow local LAN access" marker, not a route; see LocalLAN.
	Exclude []netip.Prefix

	// DNSServers are the tunnel's resolvers. They are always reached
	// through the tunnel, whatever the routes say.
	DNSServers []netip.Addr

	// Domains are the split-DNS and default domains: names equal to or
	// under one of them are resolved by the tunnel's DNS servers.
	Domains []string

	// TunnelAllDNS sends every name to the tunnel's DNS servers.
	TunnelAllDNS bool
}

// Route decides where a flow to dst goes. The most specific matching
// prefix wins, as in a routing table; at equal length an exclude beats an
// include. Without any include the default is the tunnel (full tunnel),
// otherwise the default is direct. The tunnel's own DNS servers always go
// through the tunnel. IPv4-mapped IPv6 addresses are treated as IPv4 and
// any IPv6 zone is ignored. Route does not allocate.
func (p *Policy) Route(dst netip.Addr) Decision {
	dst = dst.Unmap().WithZone("")

	for _, s := range p.DNSServers {
		if s.Unmap().WithZone("") == dst {
			return Tunnel
		}
	}

	inc := longestMatch(p.Include, dst, false)
	exc := longestMatch(p.Exclude, dst, true)

	switch {
	case exc >= 0 && exc >= inc:
		return Direct
	case inc >= 0:
		return Tunnel
	case len(p.Include) == 0:
		return Tunnel
	}
	return Direct
}

// LocalLAN reports whether the headend allows access to the local LAN,
// which Cisco signals with a 0.0.0.0/32 (or ::/128) exclude.
//
// TODO: nothing acts on this yet; with it set the host's directly attached
// subnets should stay direct even in full-tunnel mode.
func (p *Policy) LocalLAN() bool {
	for _, e := range p.Exclude {
		if isLocalLANMarker(e) {
			return true
		}
	}
	return false
}

// longestMatch returns the length of the longest prefix in list that
// contains dst, or -1 when none does. Local-LAN markers are skipped when
// skipMarker is set so that they never act as routes.
func longestMatch(list []netip.Prefix, dst netip.Addr, skipMarker bool) int {
	best := -1
	for _, pfx := range list {
		if skipMarker && isLocalLANMarker(pfx) {
			continue
		}
		if pfx.Bits() > best && pfx.Contains(dst) {
			best = pfx.Bits()
		}
	}
	return best
}

// isLocalLANMarker reports whether pfx is the unspecified address as a
// host route, the way Cisco headends flag "local LAN access allowed".
func isLocalLANMarker(pfx netip.Prefix) bool {
	a := pfx.Addr()
	return a.IsUnspecified() && pfx.Bits() == a.BitLen()
}

// TunnelName reports whether name must be resolved by the tunnel's DNS
// servers: when TunnelAllDNS is set, or when name (compared without case
// and without a trailing dot) equals or lies under one of Domains.
// TunnelName does not allocate.
func (p *Policy) TunnelName(name string) bool {
	if p.TunnelAllDNS {
		return true
	}

	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return false
	}
	for _, d := range p.Domains {
		d = strings.TrimPrefix(strings.TrimSuffix(d, "."), ".")
		if d != "" && underDomain(name, d) {
			return true
		}
	}
	return false
}

// underDomain reports whether name equals domain or ends in "."+domain,
// ignoring ASCII case.
func underDomain(name, domain string) bool {
	if len(name) == len(domain) {
		return strings.EqualFold(name, domain)
	}
	if len(name) < len(domain)+1 {
		return false
	}
	cut := len(name) - len(domain)
	return name[cut-1] == '.' && strings.EqualFold(name[cut:], domain)
}
