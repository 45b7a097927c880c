package split

import (
	"net"
	"net/netip"

	"github.com/ocnet/ocnet/session"
)

// FromConfig builds the policy the headend asked for in its CONNECT
// reply. The names resolved through the tunnel follow Cisco's rules:
// with a split-DNS list only names under those domains; with no list but
// default domains (one header may carry several, space separated) only
// names under those; with neither, none; with tunnel-all-DNS, all. The
// user's overrides, the LAN, app and on-demand lists are left for the
// caller to add.
func FromConfig(cfg *session.Config) *Policy {
	p := &Policy{
		Include:       cfg.SplitInclude,
		Exclude:       cfg.SplitExclude,
		DNSServers:    cfg.DNS,
		SearchDomains: cfg.DefaultDomains,
		TunnelAllDNS:  cfg.TunnelAllDNS,
		NoIPv4:        !cfg.Address.IsValid(),
		NoIPv6:        !cfg.Address6.IsValid(),
		ClientBypass:  cfg.ClientBypassProtocol,
	}
	p.Domains = cfg.SplitDNS
	if len(p.Domains) == 0 {
		p.Domains = cfg.DefaultDomains
		p.DomainsAreDefault = len(p.Domains) > 0
	}

	// TODO: an IPv4-only tunnel without client bypass refuses every IPv6
	// flow, which breaks dual-stack hosts that try IPv6 first; the
	// router should fall back to the next address.
	return p
}

// InterfaceSubnets returns the subnets of the host's interfaces that are
// up, loopback excluded, for Policy.LAN. It reads the host's state and so
// sits beside, not inside, the pure decision.
func InterfaceSubnets() ([]netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		out = append(out, subnets(addrs)...)
	}
	return out, nil
}

// subnets turns interface addresses into their networks, dropping host
// routes and link-local networks (the latter are direct anyway).
func subnets(addrs []net.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, bits := ipn.Mask.Size()
		if bits == 0 || ones == 0 || ones == ip.BitLen() || ip.IsLinkLocalUnicast() {
			continue
		}
		if bits == 128 && ip.Is4() {
			ones -= 96
		}
		out = append(out, netip.PrefixFrom(ip, ones).Masked())
	}
	return out
}
