package client

// A tunnel that comes back may come back different: the headend can hand
// out other DNS servers, split-DNS domains, routes, MTU or address on the
// new CONNECT. Both front ends follow through one path: the client
// replaces the Router's policy and reconfigures its Resolver (which the
// TUN's resolver shares), sets the stack's MTU, and logs one line; TUN
// mode then updates its device and the host from OnReconnect.

import (
	"slices"

	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/split"
)

// changes names what differs between two tunnel configurations, in the
// terms a user sees: "address", "routes", "dns", "domains", "mtu". Nil
// means nothing that ocnet or the host acts on changed.
func changes(old, cfg *session.Config) []string {
	var out []string
	if !slices.Equal(old.Prefixes(), cfg.Prefixes()) {
		out = append(out, "address")
	}
	if !slices.Equal(old.SplitInclude, cfg.SplitInclude) ||
		!slices.Equal(old.SplitExclude, cfg.SplitExclude) ||
		old.ClientBypassProtocol != cfg.ClientBypassProtocol {
		out = append(out, "routes")
	}
	if !slices.Equal(old.DNS, cfg.DNS) || !slices.Equal(old.NBNS, cfg.NBNS) {
		out = append(out, "dns")
	}
	if !slices.Equal(old.SplitDNS, cfg.SplitDNS) ||
		!slices.Equal(old.DefaultDomains, cfg.DefaultDomains) ||
		old.TunnelAllDNS != cfg.TunnelAllDNS {
		out = append(out, "domains")
	}
	if old.MTU != cfg.MTU {
		out = append(out, "mtu")
	}
	return out
}

// follow brings the policy, resolver and stack in line with cfg, the
// configuration of the tunnel that just replaced one with old. It runs
// before data flows on the new tunnel. The stack itself is replaced by
// adopt when the address changed.
func (c *Client) follow(old, cfg *session.Config) {
	changed := changes(old, cfg)
	if len(changed) == 0 {
		return
	}

	pol := c.policyFor(cfg)
	c.router.SetPolicy(pol)
	c.router.Resolver.Reconfigure(resolverOptions(cfg, pol))
	c.stack.Load().SetMTU(c.MTU())

	c.log.Info("headend changed the configuration", "changed", changed,
		"address", cfg.Prefixes(), "mtu", cfg.MTU, "dns", cfg.DNS, "split_dns", pol.Domains,
		"routes", cfg.SplitInclude, "excluded", cfg.SplitExclude)
}

// policyFor is the split policy of a tunnel with cfg: the headend's, with
// the user's local rules on top.
func (c *Client) policyFor(cfg *session.Config) *split.Policy {
	pol := PolicyFrom(cfg)
	pol.Apply(c.o.Local)
	return pol
}

// resolverOptions is what the DNS proxy takes from a tunnel with cfg and
// policy pol; the caller adds the tunnel dialer and logger at start.
func resolverOptions(cfg *session.Config, pol *split.Policy) dnsproxy.Options {
	return dnsproxy.Options{Policy: pol, Servers: cfg.DNS, SearchDomains: cfg.DefaultDomains}
}
