package split

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"testing"

	"github.com/ocnet/ocnet/session"
)

func names(t *testing.T, s string) DomainList {
	t.Helper()
	l, err := ParseDomainList(s)
	if err != nil {
		t.Fatalf("ParseDomainList(%q): %v", s, err)
	}
	return l
}

func apps(t *testing.T, s string) AppList {
	t.Helper()
	l, err := ParseAppList(s)
	if err != nil {
		t.Fatalf("ParseAppList(%q): %v", s, err)
	}
	return l
}

func TestDecide(t *testing.T) {
	dns := []netip.Addr{netip.MustParseAddr("192.0.2.53")}
	lan := pfx("192.168.1.0/24", "fd12::/64")
	corp := Policy{
		Include:    pfx("10.0.0.0/8", "2001:db8::/32"),
		Exclude:    pfx("10.99.0.0/16", "0.0.0.0/32"),
		DNSServers: dns,
		LAN:        lan,
	}
	withUser := corp
	withUser.User = Overrides{
		Include:      pfx("198.51.100.0/24", "192.168.1.128/25"),
		Exclude:      pfx("10.5.0.0/16"),
		IncludeNames: names(t, ".lab.example"),
		ExcludeNames: names(t, "public.corp.example"),
	}
	withApps := corp
	withApps.Apps = AppRules{
		Allowed:    apps(t, "com.example.*,ssh"),
		Disallowed: apps(t, "com.example.game"),
	}
	refuseApps := withApps
	refuseApps.Apps.Refuse = true
	v4only := Policy{NoIPv6: true}
	v4bypass := Policy{NoIPv6: true, ClientBypass: true}

	tests := []struct {
		name   string
		policy Policy
		flow   Flow
		want   Decision
		rule   RuleKind
		detail string // Prefix or Pattern of the rule
	}{
		{"include", corp, Flow{Addr: a("10.1.2.3")}, Tunnel, RuleInclude, "10.0.0.0/8"},
		{"include v6", corp, Flow{Addr: a("2001:db8::5")}, Tunnel, RuleInclude, "2001:db8::/32"},
		{"exclude inside include", corp, Flow{Addr: a("10.99.1.1")}, Direct, RuleExclude,
			"10.99.0.0/16"},
		{"not included", corp, Flow{Addr: a("203.0.113.1")}, Direct, RuleNotIncluded, ""},
		{"tunnel all", Policy{}, Flow{Addr: a("203.0.113.1")}, Tunnel, RuleTunnelAll, ""},
		{"tunnel all beside exclude", Policy{Exclude: pfx("203.0.113.0/24")},
			Flow{Addr: a("198.51.100.1")}, Tunnel, RuleTunnelAll, ""},
		{"local LAN marker beside includes is not exclude-all", corp,
			Flow{Addr: a("10.200.0.1")}, Tunnel, RuleInclude, "10.0.0.0/8"},
		{"dns server outside includes", corp, Flow{Addr: a("192.0.2.53")}, Tunnel,
			RuleDNSServer, "192.0.2.53/32"},
		{"lan direct in full tunnel", Policy{LAN: lan}, Flow{Addr: a("192.168.1.7")}, Direct,
			RuleLAN, "192.168.1.0/24"},
		{"lan beats include", Policy{Include: pfx("192.168.0.0/16"), LAN: lan},
			Flow{Addr: a("192.168.1.7")}, Direct, RuleLAN, "192.168.1.0/24"},
		{"lan v6", corp, Flow{Addr: a("fd12::9")}, Direct, RuleLAN, "fd12::/64"},
		{"loopback", Policy{}, Flow{Addr: a("127.0.0.1")}, Direct, RuleLoopback, ""},
		{"link-local", Policy{}, Flow{Addr: a("169.254.1.1")}, Direct, RuleLinkLocal, ""},
		{"user include beats not-included", withUser, Flow{Addr: a("198.51.100.9")}, Tunnel,
			RuleUserInclude, "198.51.100.0/24"},
		{"user include beats lan", withUser, Flow{Addr: a("192.168.1.200")}, Tunnel,
			RuleUserInclude, "192.168.1.128/25"},
		{"user exclude beats include", withUser, Flow{Addr: a("10.5.1.1")}, Direct,
			RuleUserExclude, "10.5.0.0/16"},
		{"user exclude name", withUser,
			Flow{Addr: a("10.1.1.1"), Name: "Public.Corp.Example."}, Direct,
			RuleUserExcludeName, "public.corp.example"},
		{"user include name", withUser, Flow{Addr: a("203.0.113.5"), Name: "git.lab.example"},
			Tunnel, RuleUserIncludeName, ".lab.example"},
		{"name without address, included", withUser, Flow{Name: "x.lab.example"}, Tunnel,
			RuleUserIncludeName, ".lab.example"},
		{"name without address, default", corp, Flow{Name: "x.example"}, Direct,
			RuleNotIncluded, ""},
		{"app allowed", withApps, Flow{Addr: a("10.1.1.1"), App: "com.example.mail"}, Tunnel,
			RuleInclude, "10.0.0.0/8"},
		{"app exact", withApps, Flow{Addr: a("10.1.1.1"), App: "ssh"}, Tunnel,
			RuleInclude, "10.0.0.0/8"},
		{"app not allowed goes direct", withApps, Flow{Addr: a("10.1.1.1"), App: "curl"},
			Direct, RuleAppNotAllowed, "curl"},
		{"unknown app not allowed", withApps, Flow{Addr: a("10.1.1.1")}, Direct,
			RuleAppNotAllowed, ""},
		{"wildcard needs the dot", withApps, Flow{Addr: a("10.1.1.1"), App: "com.example"},
			Direct, RuleAppNotAllowed, "com.example"},
		{"disallowed beats allowed", withApps,
			Flow{Addr: a("10.1.1.1"), App: "com.example.game"}, Direct, RuleAppDisallowed,
			"com.example.game"},
		{"app outside refused", refuseApps, Flow{Addr: a("10.1.1.1"), App: "curl"}, Refuse,
			RuleAppNotAllowed, "curl"},
		{"app outside refused even to dns server", refuseApps,
			Flow{Addr: a("192.0.2.53"), App: "curl"}, Refuse, RuleAppNotAllowed, "curl"},
		{"no v6 in tunnel, no bypass", v4only, Flow{Addr: a("2001:db8::1")}, Refuse,
			RuleNoFamily, "2001:db8::1/128"},
		{"no v6 in tunnel, bypass", v4bypass, Flow{Addr: a("2001:db8::1")}, Direct,
			RuleBypass, "2001:db8::1/128"},
		{"no v6 in tunnel, v4 fine", v4only, Flow{Addr: a("203.0.113.1")}, Tunnel,
			RuleTunnelAll, ""},
		{"mapped v4", corp, Flow{Addr: a("::ffff:10.1.2.3")}, Tunnel, RuleInclude,
			"10.0.0.0/8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rule := tt.policy.Decide(tt.flow)
			if got != tt.want || rule.Kind != tt.rule {
				t.Fatalf("Decide(%+v) = %v by %q, want %v by kind %d",
					tt.flow, got, rule, tt.want, tt.rule)
			}
			detail := rule.Pattern
			if rule.Prefix.IsValid() {
				detail = rule.Prefix.String()
			}
			if detail != tt.detail {
				t.Errorf("rule detail = %q, want %q", detail, tt.detail)
			}
			if rule.String() == "no rule" {
				t.Errorf("rule %d has no description", rule.Kind)
			}
		})
	}
}

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestDomainListIssueExamples checks the matching examples of the
// connect-on-demand rules, one by one.
func TestDomainListIssueExamples(t *testing.T) {
	l := names(t, "email.example.com, .example.org,*example.net corp")

	tests := []struct {
		name  string
		want  bool
		entry string
	}{
		{"email.example.com", true, "email.example.com"},
		{"EMAIL.example.com.", true, "email.example.com"},
		{"www.email.example.com", false, ""},
		{"example.com", false, ""},
		{"a.example.org", true, ".example.org"},
		{"a.b.example.org", true, ".example.org"},
		{"notexample.org", false, ""},
		{"example.org", false, ""},
		{"notexample.net", true, "*example.net"},
		{"www.example.net", true, "*example.net"},
		{"mycorp", true, "corp"},
		{"corp", true, "corp"},
		{"", false, ""},
		{".", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := l.Match(tt.name)
			if ok != tt.want || e != tt.entry {
				t.Errorf("Match(%q) = %q, %v; want %q, %v", tt.name, e, ok, tt.entry, tt.want)
			}
		})
	}
}

func TestOnDemandOrder(t *testing.T) {
	o := OnDemandRules{
		Never:    names(t, "vpn.corp.example"),
		Always:   names(t, ".corp.example"),
		IfNeeded: names(t, ".example.com,vpn.corp.example"),
	}

	tests := []struct {
		name        string
		host        string
		localFailed bool
		want        bool
		kind        RuleKind
	}{
		{"never first", "vpn.corp.example", true, false, RuleNever},
		{"always", "wiki.corp.example", false, true, RuleAlways},
		{"if needed, local lookup worked", "www.example.com", false, false, RuleNone},
		{"if needed, local lookup failed", "www.example.com", true, true, RuleIfNeeded},
		{"no entry", "golang.org", true, false, RuleNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, r := o.Connect(tt.host, tt.localFailed)
			if got != tt.want || r.Kind != tt.kind {
				t.Errorf("Connect(%q, %v) = %v by %q, want %v by kind %d",
					tt.host, tt.localFailed, got, r, tt.want, tt.kind)
			}
		})
	}
}

func TestAppList(t *testing.T) {
	l := apps(t, " com.example.* ,ssh,,/usr/bin/curl")

	tests := []struct {
		app   string
		entry string
	}{
		{"com.example.mail", "com.example.*"},
		{"com.example.", "com.example.*"},
		{"com.example", ""},
		{"com.examplex.mail", ""},
		{"ssh", "ssh"},
		{"SSH", ""},
		{"sshd", ""},
		{"/usr/bin/curl", "/usr/bin/curl"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			e, ok := l.Match(tt.app)
			if e != tt.entry || ok != (tt.entry != "") {
				t.Errorf("Match(%q) = %q, %v; want %q", tt.app, e, ok, tt.entry)
			}
		})
	}

	all := apps(t, "*")
	if _, ok := all.Match(""); !ok {
		t.Error(`"*" does not match the unknown app`)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		parse func() error
	}{
		{"app star inside", func() error { _, err := ParseAppList("com.*.mail"); return err }},
		{"app space", func() error { _, err := ParseAppList("my app"); return err }},
		{"app control", func() error { _, err := ParseAppList("a\x01b"); return err }},
		{"domain star only", func() error { _, err := ParseDomainList("*"); return err }},
		{"domain dot only", func() error { _, err := ParseDomainList("."); return err }},
		{"domain bad char", func() error { _, err := ParseDomainList("a/b"); return err }},
		{"domain empty label", func() error { _, err := ParseDomainList("a..b"); return err }},
		{"route bad mask", func() error { _, err := ParseRoute("10.0.0.0/255.0.255.0"); return err }},
		{"route v6 dotted", func() error { _, err := ParseRoute("2001:db8::/255.0.0.0"); return err }},
		{"route long prefix", func() error { _, err := ParseRoute("10.0.0.0/33"); return err }},
		{"route zone", func() error { _, err := ParseRoute("fe80::1%eth0/64"); return err }},
		{"target bad address", func() error { _, _, err := ParseTargets("10.0.0.300/8"); return err }},
		{"target bad name", func() error { _, _, err := ParseTargets("a!b"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse()
			if !errors.Is(err, ErrBadRule) {
				t.Fatalf("error = %v, want ErrBadRule", err)
			}
		})
	}
}

func TestParseTargets(t *testing.T) {
	routes, nm, err := ParseTargets("10.0.0.0/255.0.0.0, 192.168.7.7 2001:db8::/32,.corp.example")
	if err != nil {
		t.Fatal(err)
	}
	want := pfx("10.0.0.0/8", "192.168.7.7/32", "2001:db8::/32")
	if !slices.Equal(routes, want) {
		t.Errorf("routes = %v, want %v", routes, want)
	}
	if nm.String() != ".corp.example" {
		t.Errorf("names = %q", nm)
	}
}

// TestFromHeaders feeds header values as headends send them through
// session.ParseConfig and checks the resulting policy.
func TestFromHeaders(t *testing.T) {
	base := func(kv ...string) http.Header {
		h := http.Header{}
		h.Set("X-CSTP-Address", "10.10.0.2")
		h.Set("X-CSTP-Netmask", "255.255.255.0")
		h.Set("X-CSTP-MTU", "1400")
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}

	tests := []struct {
		name   string
		h      http.Header
		checks []check
	}{
		{"dotted-mask and prefix routes", base(
			"X-CSTP-Split-Include", "10.0.0.0/255.0.0.0",
			"X-CSTP-Split-Include", "172.16.0.0/12",
			"X-CSTP-Split-Include-IP6", "2001:db8::/32",
			"X-CSTP-Split-Exclude", "10.99.0.0/255.255.0.0"),
			[]check{
				{"10.1.1.1", Tunnel, RuleInclude}, {"172.20.0.1", Tunnel, RuleInclude},
				{"10.99.0.1", Direct, RuleExclude}, {"8.8.8.8", Direct, RuleNotIncluded},
				{"2001:db8::1", Refuse, RuleNoFamily},
			}},
		{"local LAN marker beside includes", base(
			"X-CSTP-Split-Include", "10.0.0.0/255.0.0.0",
			"X-CSTP-Split-Exclude", "0.0.0.0/255.255.255.255"),
			[]check{{"10.1.1.1", Tunnel, RuleInclude}, {"192.168.1.5", Direct, RuleLAN},
				{"203.0.113.1", Direct, RuleNotIncluded}}},
		{"local LAN marker alone in full tunnel", base(
			"X-CSTP-Split-Exclude", "0.0.0.0/255.255.255.255"),
			[]check{{"203.0.113.1", Tunnel, RuleTunnelAll}, {"192.168.1.5", Direct, RuleLAN}}},
		{"client bypass", base("X-CSTP-Client-Bypass-Protocol", "true"),
			[]check{{"2001:db8::1", Direct, RuleBypass}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := session.ParseConfig(tt.h)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			p := FromConfig(cfg)
			p.LAN = pfx("192.168.1.0/24")
			for _, c := range tt.checks {
				d, r := p.Decide(Flow{Addr: a(c.dst)})
				if d != c.want || r.Kind != c.kind {
					t.Errorf("%s: %v by %q, want %v by kind %d", c.dst, d, r, c.want, c.kind)
				}
			}
			if tt.name == "local LAN marker beside includes" && !p.LocalLAN() {
				t.Error("LocalLAN() = false")
			}
		})
	}
}

type check struct {
	dst  string
	want Decision
	kind RuleKind
}

// TestDNSRulesFromHeaders checks Cisco's split-DNS rules on policies
// built from real header values.
func TestDNSRulesFromHeaders(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		h.Set("X-CSTP-Address", "10.10.0.2")
		h.Set("X-CSTP-MTU", "1400")
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		h      http.Header
		search []string
		tunnel []string
		local  []string
		kind   RuleKind // rule for the first tunnel name
	}{
		{"split-dns list only", hdr(
			"X-CSTP-Split-DNS", "corp.example",
			"X-CSTP-Split-DNS", "lab.example",
			"X-CSTP-Default-Domain", "dflt.example"),
			[]string{"dflt.example"},
			[]string{"a.corp.example", "lab.example"},
			[]string{"a.dflt.example", "www.example.com"}, RuleSplitDNS},
		{"several default domains in one value", hdr(
			"X-CSTP-Default-Domain", "corp.example lab.example"),
			[]string{"corp.example", "lab.example"},
			[]string{"intranet.corp.example", "wiki.lab.example"},
			[]string{"www.example.com"}, RuleDefaultDomain},
		{"neither: all local", hdr(), nil, nil,
			[]string{"intranet.corp.example", "www.example.com"}, RuleNone},
		{"tunnel all DNS", hdr("X-CSTP-Tunnel-All-DNS", "true",
			"X-CSTP-Split-DNS", "corp.example"), nil,
			[]string{"www.example.com", "a.corp.example"}, nil, RuleTunnelAllDNS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := session.ParseConfig(tt.h)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			p := FromConfig(cfg)
			if !slices.Equal(p.SearchDomains, tt.search) {
				t.Errorf("SearchDomains = %q, want %q", p.SearchDomains, tt.search)
			}
			for i, n := range tt.tunnel {
				ok, r := p.DNSRule(n)
				if !ok {
					t.Errorf("%s resolved locally, want tunnel", n)
				}
				if i == 0 && r.Kind != tt.kind {
					t.Errorf("%s: rule %q, want kind %d", n, r, tt.kind)
				}
			}
			for _, n := range tt.local {
				if ok, r := p.DNSRule(n); ok {
					t.Errorf("%s through the tunnel by %q, want local", n, r)
				}
			}
		})
	}
}

func TestSubnets(t *testing.T) {
	_, n4, _ := netParse("192.168.1.7/24")
	_, n6, _ := netParse("fd12::7/64")
	_, ll, _ := netParse("fe80::1/64")
	_, host, _ := netParse("10.0.0.1/32")
	got := subnets([]netAddr{n4, n6, ll, host})
	if want := pfx("192.168.1.0/24", "fd12::/64"); !slices.Equal(got, want) {
		t.Errorf("subnets = %v, want %v", got, want)
	}
}

func benchFullPolicy(b testing.TB) *Policy {
	p := benchPolicy()
	for i := range 40 {
		p.Include = append(p.Include, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16))
	}
	p.LAN = pfx("192.168.1.0/24", "fd12::/64")
	p.User.Exclude = pfx("10.5.0.0/16")
	var err error
	if p.User.ExcludeNames, err = ParseDomainList("public.corp.example,.cdn.example"); err != nil {
		b.Fatal(err)
	}
	if p.Apps.Allowed, err = ParseAppList("com.example.*,ssh,firefox"); err != nil {
		b.Fatal(err)
	}
	return p
}

func TestDecideNoAllocs(t *testing.T) {
	p := benchFullPolicy(t)
	f := Flow{Addr: a("10.1.2.3"), Name: "Intranet.Corp.Example.", App: "com.example.mail"}
	if n := testing.AllocsPerRun(100, func() {
		p.Decide(f)
		p.DNSRule(f.Name)
		p.OnDemand.Connect(f.Name, true)
	}); n != 0 {
		t.Errorf("Decide allocates %v times per run, want 0", n)
	}
}

// BenchmarkDecide decides one flow with a name and an app against a
// policy of 45 split-include routes, user overrides, a LAN and app list.
func BenchmarkDecide(b *testing.B) {
	p := benchFullPolicy(b)
	f := Flow{Addr: a("172.39.1.1"), Name: "www.example.com", App: "com.example.mail"}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(f)
	}
}

type netAddr = net.Addr

func netParse(s string) (net.IP, *net.IPNet, error) {
	ip, n, err := net.ParseCIDR(s)
	if err == nil {
		n.IP = ip // keep the host bits, as interface addresses do
	}
	return ip, n, err
}
