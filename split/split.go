// Package split decides, per flow and per name, whether traffic goes into
// the tunnel, straight out of the host, or nowhere. It turns the headend's
// split include/exclude routes and split-DNS domains, the user's overrides,
// the host's own subnets, per-app lists and connect-on-demand lists into
// pure lookups for proxy and dnsproxy; it never holds a socket and never
// resolves a name.
package split

import (
	"encoding/binary"
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
	// Refuse drops the flow: it may use neither the tunnel nor the host.
	Refuse
)

// String returns "direct", "tunnel" or "refuse".
func (d Decision) String() string {
	switch d {
	case Direct:
		return "direct"
	case Tunnel:
		return "tunnel"
	case Refuse:
		return "refuse"
	}
	return "unknown"
}

// Policy is everything a per-flow decision depends on: the headend's
// split-tunnel configuration (the X-CSTP-Split-*, X-CSTP-DNS,
// X-CSTP-Split-DNS, X-CSTP-Default-Domain, X-CSTP-Tunnel-All-DNS and
// X-CSTP-Client-Bypass-Protocol headers of the CONNECT reply, see
// FromConfig), the user's overrides and the host's own subnets.
//
// A Policy is read-only once built: its methods are safe for concurrent
// use as long as nobody mutates the fields.
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

	// Domains are the domains whose names the tunnel's DNS servers
	// resolve: the split-DNS list, or the default domains when there is
	// none (see FromConfig). DomainsAreDefault says which, for Explain.
	Domains           []string
	DomainsAreDefault bool

	// SearchDomains (X-CSTP-Default-Domain) complete short names, tried
	// in order.
	SearchDomains []string

	// TunnelAllDNS sends every name to the tunnel's DNS servers.
	TunnelAllDNS bool

	// NoIPv4 and NoIPv6 say the tunnel has no address of that family, so
	// it cannot carry such flows. ClientBypass (Cisco's "client bypass
	// protocol") then sends them direct; without it they are refused.
	NoIPv4, NoIPv6 bool
	ClientBypass   bool

	// LAN lists the host's own interface subnets. Flows into them always
	// go direct, unless the user includes them. The caller fills it (see
	// InterfaceSubnets) so that the decision stays a pure function.
	LAN []netip.Prefix

	// User holds the --include/--exclude overrides, which beat the
	// headend's routes and the LAN.
	User Overrides

	// Apps are the per-app allowed/disallowed lists.
	Apps AppRules

	// OnDemand are the connect-on-demand domain lists.
	OnDemand OnDemandRules
}

// Overrides are the user's own routes and names, applied on top of the
// headend's policy.
type Overrides struct {
	Include, Exclude           []netip.Prefix
	IncludeNames, ExcludeNames DomainList
}

// Route decides where a flow to dst goes when neither its name nor its
// app is known; see Decide. It answers only Tunnel or Direct, for callers
// that know no third way: a flow Decide refuses is reported as Tunnel,
// where it fails, rather than Direct, where it would leave the host
// around the VPN. Route does not allocate.
func (p *Policy) Route(dst netip.Addr) Decision {
	d, _ := p.Decide(Flow{Addr: dst})
	if d == Refuse {
		return Tunnel
	}
	return d
}

// LocalLAN reports whether the headend allows access to the local LAN,
// which Cisco signals with a 0.0.0.0/32 (or ::/128) exclude. ocnet keeps
// the host's subnets direct either way (see Policy.LAN); the marker only
// must not be read as "exclude everything".
func (p *Policy) LocalLAN() bool {
	for _, e := range p.Exclude {
		if isLocalLANMarker(e) {
			return true
		}
	}
	return false
}

// longestMatch returns the longest prefix in list that contains dst, or
// an invalid prefix when none does. Local-LAN markers are skipped so that
// they never act as routes. dst must be unmapped and without zone.
//
// It compares the address bits itself rather than calling
// netip.Prefix.Contains, which costs several times more per prefix; a
// headend may send hundreds of routes and every flow walks them.
func longestMatch(list []netip.Prefix, dst netip.Addr) netip.Prefix {
	best, bestBits := -1, -1
	if dst.Is4() {
		d := be32(dst.As4())
		for i, pfx := range list {
			bits := pfx.Bits()
			a := pfx.Addr()
			if bits <= bestBits || !a.Is4() {
				continue
			}
			v := be32(a.As4())
			if bits == 32 && v == 0 {
				continue // local-LAN marker
			}
			if (v^d)>>(32-bits) == 0 {
				best, bestBits = i, bits
			}
		}
	} else {
		dh, dl := be128(dst.As16())
		for i, pfx := range list {
			bits := pfx.Bits()
			a := pfx.Addr()
			if bits <= bestBits || !a.Is6() {
				continue
			}
			h, l := be128(a.As16())
			if bits == 128 && h == 0 && l == 0 {
				continue // local-LAN marker
			}
			if match128(h^dh, l^dl, bits) {
				best, bestBits = i, bits
			}
		}
	}
	if best < 0 {
		return netip.Prefix{}
	}
	return list[best]
}

// match128 reports whether the top bits of the 128-bit difference h:l
// are all zero. Go defines shifts by the full width as giving zero.
func match128(h, l uint64, bits int) bool {
	if bits <= 64 {
		return h>>(64-bits) == 0
	}
	return h == 0 && l>>(128-bits) == 0
}

func be32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func be128(b [16]byte) (uint64, uint64) {
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// isLocalLANMarker reports whether pfx is the unspecified address as a
// host route, the way Cisco headends flag "local LAN access allowed".
func isLocalLANMarker(pfx netip.Prefix) bool {
	a := pfx.Addr()
	return a.IsUnspecified() && pfx.Bits() == a.BitLen()
}

// TunnelName reports whether name must be resolved by the tunnel's DNS
// servers; see DNSRule. TunnelName does not allocate.
func (p *Policy) TunnelName(name string) bool {
	t, _ := p.DNSRule(name)
	return t
}

// DNSRule reports whether name must be resolved by the tunnel's DNS
// servers, and the rule that says so: when TunnelAllDNS is set, or when
// name (compared without case and without a trailing dot) equals or lies
// under one of Domains. DNSRule does not allocate.
func (p *Policy) DNSRule(name string) (bool, Rule) {
	if p.TunnelAllDNS {
		return true, Rule{Kind: RuleTunnelAllDNS}
	}

	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return false, Rule{Kind: RuleLocalDNS}
	}
	for _, d := range p.Domains {
		d = strings.TrimPrefix(strings.TrimSuffix(d, "."), ".")
		if d != "" && underDomain(name, d) {
			k := RuleSplitDNS
			if p.DomainsAreDefault {
				k = RuleDefaultDomain
			}
			return true, Rule{Kind: k, Pattern: d}
		}
	}
	return false, Rule{Kind: RuleLocalDNS}
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

// Local is what the user and the host add to the headend's policy: the
// --include/--exclude overrides, the host's subnets, the app and the
// connect-on-demand lists.
type Local struct {
	User     Overrides
	LAN      []netip.Prefix
	Apps     AppRules
	OnDemand OnDemandRules
}

// Apply adds l to p. Call it before p is shared.
func (p *Policy) Apply(l Local) {
	p.User = l.User
	p.LAN = l.LAN
	p.Apps = l.Apps
	p.OnDemand = l.OnDemand
}
