package split

// Decide applies the rules below in order; the first that matches makes
// the decision:
//
//  1. app rules: an app outside the tunnel's set goes direct, or is
//     refused when AppRules.Refuse is set;
//  2. the tunnel's DNS servers go through the tunnel;
//  3. loopback addresses go direct;
//  4. the user's --exclude, then --include names;
//  5. the user's --exclude/--include routes, longest prefix first;
//  6. the host's own subnets (LAN) and link-local addresses go direct;
//  7. the headend's split-exclude/split-include, longest prefix first;
//  8. no include at all means tunnel everything, else direct.
//
// A flow sent to the tunnel in a family the tunnel has no address for
// goes direct with ClientBypass and is refused without it.

import (
	"fmt"
	"net/netip"
)

// Flow is what is known about one connection when it is decided.
type Flow struct {
	// Addr is the destination. It may be invalid when only the name is
	// known yet; the address rules are then skipped.
	Addr netip.Addr

	// Name is the host name the application asked for, "" for an IP
	// literal. It feeds the name overrides only.
	Name string

	// App identifies the application ("" when unknown): a proxy username
	// or an executable, matched against the per-app lists.
	App string
}

// RuleKind names one rule of the policy.
type RuleKind uint8

// The rules a decision can come from. The comments give the text String
// prints.
const (
	RuleNone            RuleKind = iota // no rule
	RuleAppDisallowed                   // app matches disallowed-apps entry
	RuleAppNotAllowed                   // app is not in allowed-apps
	RuleAppAllowed                      // app matches allowed-apps entry
	RuleDNSServer                       // tunnel DNS server
	RuleLoopback                        // loopback address
	RuleUserExcludeName                 // --exclude name
	RuleUserIncludeName                 // --include name
	RuleUserExclude                     // --exclude route
	RuleUserInclude                     // --include route
	RuleLAN                             // the host's own subnet
	RuleLinkLocal                       // link-local address
	RuleExclude                         // split-exclude route
	RuleInclude                         // split-include route
	RuleTunnelAll                       // no split-include: tunnel all
	RuleNotIncluded                     // outside every split-include
	RuleBypass                          // family not carried, client bypass on
	RuleNoFamily                        // family not carried, no bypass

	RuleTunnelAllDNS  // tunnel-all-DNS
	RuleSplitDNS      // split-dns domain
	RuleDefaultDomain // default domain (no split-dns list)
	RuleLocalDNS      // not a tunnel domain: local resolver

	RuleNever    // on-demand never-connect entry
	RuleAlways   // on-demand always-connect entry
	RuleIfNeeded // on-demand connect-if-needed entry, local lookup failed
)

// Rule is the rule that made a decision: its kind and, where it has one,
// the route or the pattern that matched. The zero Rule is RuleNone.
type Rule struct {
	Kind    RuleKind
	Prefix  netip.Prefix // route rules, DNS server, LAN
	Pattern string       // domain and app rules
}

// String describes the rule for a person, e.g. "split-include 10.0.0.0/8".
func (r Rule) String() string {
	switch r.Kind {
	case RuleAppDisallowed:
		return "disallowed-apps entry " + r.Pattern
	case RuleAppNotAllowed:
		return "app not in allowed-apps"
	case RuleAppAllowed:
		return "allowed-apps entry " + r.Pattern
	case RuleDNSServer:
		return "tunnel DNS server " + r.Prefix.Addr().String()
	case RuleLoopback:
		return "loopback address"
	case RuleUserExcludeName:
		return "--exclude " + r.Pattern
	case RuleUserIncludeName:
		return "--include " + r.Pattern
	case RuleUserExclude:
		return "--exclude " + r.Prefix.String()
	case RuleUserInclude:
		return "--include " + r.Prefix.String()
	case RuleLAN:
		return "local LAN " + r.Prefix.String()
	case RuleLinkLocal:
		return "link-local address"
	case RuleExclude:
		return "split-exclude " + r.Prefix.String()
	case RuleInclude:
		return "split-include " + r.Prefix.String()
	case RuleTunnelAll:
		return "no split-include: tunnel all"
	case RuleNotIncluded:
		return "outside every split-include"
	case RuleBypass:
		return fmt.Sprintf("tunnel has no IPv%d address; client bypass allowed", r.family())
	case RuleNoFamily:
		return fmt.Sprintf("tunnel has no IPv%d address; client bypass not allowed", r.family())
	case RuleTunnelAllDNS:
		return "tunnel-all-DNS"
	case RuleSplitDNS:
		return "split-dns domain " + r.Pattern
	case RuleDefaultDomain:
		return "default domain " + r.Pattern
	case RuleLocalDNS:
		return "not under a tunnel DNS domain"
	case RuleNever:
		return "never-connect entry " + r.Pattern
	case RuleAlways:
		return "always-connect entry " + r.Pattern
	case RuleIfNeeded:
		return "connect-if-needed entry " + r.Pattern + " (local lookup failed)"
	}
	return "no rule"
}

func (r Rule) family() int {
	if r.Prefix.Addr().Is6() {
		return 6
	}
	return 4
}

// Decide returns where flow f goes and the rule that decided it,
// following the order at the top of this file. IPv4-mapped IPv6
// addresses are treated as IPv4 and any IPv6 zone is ignored. Decide does
// not allocate.
func (p *Policy) Decide(f Flow) (Decision, Rule) {
	if r, out := p.Apps.outside(f.App); out {
		if p.Apps.Refuse {
			return Refuse, r
		}
		return Direct, r
	}

	dst := f.Addr.Unmap().WithZone("")
	d, r := p.decide(dst, f.Name)
	if d != Tunnel || !dst.IsValid() {
		return d, r
	}

	// The tunnel cannot carry a family it has no address for.
	if dst.Is4() && p.NoIPv4 || dst.Is6() && p.NoIPv6 {
		r = Rule{Kind: RuleNoFamily, Prefix: netip.PrefixFrom(dst, dst.BitLen())}
		if p.ClientBypass {
			r.Kind = RuleBypass
			return Direct, r
		}
		return Refuse, r
	}
	return Tunnel, r
}

// decide applies rules 2 to 8.
func (p *Policy) decide(dst netip.Addr, name string) (Decision, Rule) {
	if dst.IsValid() {
		for _, s := range p.DNSServers {
			if s.Unmap().WithZone("") == dst {
				return Tunnel, Rule{Kind: RuleDNSServer, Prefix: netip.PrefixFrom(dst, dst.BitLen())}
			}
		}
		if dst.IsLoopback() {
			return Direct, Rule{Kind: RuleLoopback}
		}
	}

	if name != "" {
		if e, ok := p.User.ExcludeNames.Match(name); ok {
			return Direct, Rule{Kind: RuleUserExcludeName, Pattern: e}
		}
		if e, ok := p.User.IncludeNames.Match(name); ok {
			return Tunnel, Rule{Kind: RuleUserIncludeName, Pattern: e}
		}
	}

	if dst.IsValid() {
		if d, r, ok := routeLists(p.User.Include, p.User.Exclude, dst,
			RuleUserInclude, RuleUserExclude); ok {
			return d, r
		}
		if l := longestMatch(p.LAN, dst); l.IsValid() {
			return Direct, Rule{Kind: RuleLAN, Prefix: l}
		}
		if dst.IsLinkLocalUnicast() {
			return Direct, Rule{Kind: RuleLinkLocal}
		}
		if d, r, ok := routeLists(p.Include, p.Exclude, dst, RuleInclude, RuleExclude); ok {
			return d, r
		}
	}

	if len(p.Include) == 0 {
		return Tunnel, Rule{Kind: RuleTunnelAll}
	}
	return Direct, Rule{Kind: RuleNotIncluded}
}

// routeLists finds the most specific of the include and exclude routes
// containing dst, as a routing table would; at equal length the exclude
// wins. ok is false when neither list has a match.
func routeLists(inc, exc []netip.Prefix, dst netip.Addr,
	incKind, excKind RuleKind) (Decision, Rule, bool) {
	i := longestMatch(inc, dst)
	e := longestMatch(exc, dst)
	switch {
	case e.IsValid() && (!i.IsValid() || e.Bits() >= i.Bits()):
		return Direct, Rule{Kind: excKind, Prefix: e}, true
	case i.IsValid():
		return Tunnel, Rule{Kind: incKind, Prefix: i}, true
	}
	return Direct, Rule{}, false
}

// AppRules are the per-app lists. With an Allowed list only the apps on
// it use the tunnel; an app on the Disallowed list never does. An app
// outside the tunnel's set goes direct, or is refused when Refuse is set
// (no bypass). With both lists empty every app, known or not, follows
// the routes.
type AppRules struct {
	Allowed, Disallowed AppList
	Refuse              bool
}

// Configured reports whether any app list is set.
func (a *AppRules) Configured() bool {
	return !a.Allowed.Empty() || !a.Disallowed.Empty()
}

// Check reports whether app may use the tunnel, and the rule that says
// so. Without any list every app may.
func (a *AppRules) Check(app string) (bool, Rule) {
	if r, out := a.outside(app); out {
		return false, r
	}
	if e, ok := a.Allowed.Match(app); ok {
		return true, Rule{Kind: RuleAppAllowed, Pattern: e}
	}
	return true, Rule{}
}

// outside reports whether app lies outside the tunnel's set of apps.
func (a *AppRules) outside(app string) (Rule, bool) {
	if e, ok := a.Disallowed.Match(app); ok {
		return Rule{Kind: RuleAppDisallowed, Pattern: e}, true
	}
	if !a.Allowed.Empty() {
		if _, ok := a.Allowed.Match(app); !ok {
			return Rule{Kind: RuleAppNotAllowed, Pattern: app}, true
		}
	}
	return Rule{}, false
}

// OnDemandRules are the connect-on-demand domain lists. They decide
// whether a flow to a name should bring the tunnel up; they do not route.
type OnDemandRules struct {
	Never, Always, IfNeeded DomainList
}

// Configured reports whether any list is set.
func (o *OnDemandRules) Configured() bool {
	return !o.Never.Empty() || !o.Always.Empty() || !o.IfNeeded.Empty()
}

// Connect reports whether a flow to name should bring the tunnel up,
// and the rule that decided: a never-connect entry first, then an
// always-connect entry, then a connect-if-needed entry, which counts
// only when localFailed says the local resolver could not resolve name.
// It returns false with RuleNone when no entry matches. Connect does not
// allocate.
func (o *OnDemandRules) Connect(name string, localFailed bool) (bool, Rule) {
	if e, ok := o.Never.Match(name); ok {
		return false, Rule{Kind: RuleNever, Pattern: e}
	}
	if e, ok := o.Always.Match(name); ok {
		return true, Rule{Kind: RuleAlways, Pattern: e}
	}
	if localFailed {
		if e, ok := o.IfNeeded.Match(name); ok {
			return true, Rule{Kind: RuleIfNeeded, Pattern: e}
		}
	}
	return false, Rule{}
}
