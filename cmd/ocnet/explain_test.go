package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/split"
)

func TestExplainFlowOffline(t *testing.T) {
	always, _ := split.ParseDomainList(".corp.example")
	p := &split.Policy{
		Include: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Domains: []string{"corp.example"},
	}
	p.OnDemand.Always = always

	tests := []struct {
		target, decision, rule, dns string
	}{
		{"10.1.2.3:443", "tunnel", "split-include 10.0.0.0/8", ""},
		{"[2001:db8::1]:22", "direct", "outside every split-include", ""},
		{"203.0.113.9", "direct", "outside every split-include", ""},
		// The tunnel's DNS will resolve it; offline the address that
		// decides the route is not known.
		{"intranet.corp.example:443", "unknown",
			"until resolved: tunnel for addresses in 10.0.0.0/8, direct for the others",
			"split-dns domain corp.example"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			e, err := explainFlow(t.Context(), p, nil, tt.target, "")
			if err != nil {
				t.Fatal(err)
			}
			if e.Decision != tt.decision || e.Rule != tt.rule {
				t.Errorf("decision %s (%s), want %s (%s)", e.Decision, e.Rule, tt.decision, tt.rule)
			}
			if tt.dns != "" && (e.DNS == nil || e.DNS.Rule != tt.dns || e.OnDemand == nil) {
				t.Errorf("dns %+v on-demand %+v", e.DNS, e.OnDemand)
			}
		})
	}

	for _, bad := range []string{"", "a b", "x:99999", "a/b"} {
		if _, err := explainFlow(t.Context(), p, nil, bad, ""); err == nil {
			t.Errorf("target %q accepted", bad)
		}
	}
}

// TestExplainFlowUnresolved: against a live resolver, a name that does not
// resolve fails; explain used to report the name rules' "direct".
func TestExplainFlowUnresolved(t *testing.T) {
	p := &split.Policy{
		Include: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Domains: []string{"corp.example"},
	}
	res := dnsproxy.New(dnsproxy.Options{Policy: p}) // no tunnel servers
	e, err := explainFlow(t.Context(), p, res, "gone.corp.example:443", "")
	if err != nil {
		t.Fatal(err)
	}
	if e.Decision != "fail" || e.Resolve == "" {
		t.Errorf("decision %s (%s), resolve %q: want fail with the lookup error",
			e.Decision, e.Rule, e.Resolve)
	}
}

// TestExplainOfflineName: offline, a name is resolved by nobody, so only
// an app or name rule can decide it; otherwise the decision is "unknown"
// and says which addresses would go where. It used to be "direct".
func TestExplainOfflineName(t *testing.T) {
	incl := &split.Policy{
		Include: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
			netip.MustParsePrefix("fd00::/8")},
		Exclude: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")},
		Domains: []string{"corp.example"},
	}
	incl.User.ExcludeNames, _ = split.ParseDomainList("www.corp.example")
	incl.User.IncludeNames, _ = split.ParseDomainList("git.example.org")
	full := &split.Policy{Domains: []string{"corp.example"}}
	apps := &split.Policy{Include: incl.Include}
	apps.Apps.Allowed, _ = split.ParseAppList("org.corp.*")
	apps.Apps.Refuse = true

	tests := []struct {
		name     string
		p        *split.Policy
		target   string
		app      string
		decision string
		rule     string
	}{
		{"split-dns name", incl, "intranet.corp.example", "", "unknown",
			"until resolved: tunnel for addresses in 10.0.0.0/8, 172.16.0.0/12, " +
				"192.168.0.0/16 and 1 more (exclusions apart), direct for the others"},
		{"local name", incl, "www.example.net:443", "", "unknown", ""},
		{"tunnel all", full, "intranet.corp.example", "", "unknown",
			"until resolved: tunnel for any address not excluded (split-exclude, " +
				"--exclude, the LAN, loopback), direct for the others"},
		{"--exclude name", incl, "www.corp.example", "", "direct", "--exclude www.corp.example"},
		{"--include name", incl, "git.example.org", "", "tunnel", "--include git.example.org"},
		{"app refused", apps, "intranet.corp.example", "org.other", "refuse",
			"app not in allowed-apps"},
		{"address known", incl, "10.9.1.1", "", "direct", "split-exclude 10.9.0.0/16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := explainFlow(t.Context(), tt.p, nil, tt.target, tt.app)
			if err != nil {
				t.Fatal(err)
			}
			if e.Decision != tt.decision || tt.rule != "" && e.Rule != tt.rule {
				t.Errorf("decision %s (%s)\nwant     %s (%s)", e.Decision, e.Rule,
					tt.decision, tt.rule)
			}
		})
	}
}

// TestExplainPrintOnDemand: the on-demand verdict applies while the
// tunnel is down and the decision while it is up; printed side by side
// they said "do not bring the tunnel up" and "tunnel" with no hint of
// which state each belongs to.
func TestExplainPrintOnDemand(t *testing.T) {
	never, _ := split.ParseDomainList("mail.corp.example")
	p := &split.Policy{Domains: []string{"corp.example"}}
	p.OnDemand.Never = never

	tests := []struct {
		target string
		want   []string
	}{
		{"10.1.2.3", []string{"decision:   tunnel (no split-include: tunnel all)\n"}},
		{"mail.corp.example", []string{
			"on-demand:  while the tunnel is down: would not bring it up; goes direct " +
				"(never-connect entry mail.corp.example)\n",
			"decision:   while the tunnel is up: unknown (until resolved: ",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			e, err := explainFlow(t.Context(), p, nil, tt.target, "")
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			printExplanation(&out, e)
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output does not have %q:\n%s", w, out.String())
				}
			}
		})
	}

	// Live and resolved, the decision is a path, still marked as the
	// tunnel-up one.
	e := &explanation{Target: "mail.corp.example", Decision: "tunnel",
		Rule: "split-include 10.0.0.0/8", OnDemand: onDemandStep(&p.OnDemand,
			"mail.corp.example", false)}
	var out strings.Builder
	printExplanation(&out, e)
	want := "decision:   while the tunnel is up: tunnel (split-include 10.0.0.0/8)"
	if !strings.Contains(out.String(), want) {
		t.Errorf("output does not have %q:\n%s", want, out.String())
	}
}

// TestExplainArgs: a missing or extra target is a usage error (exit 2)
// that shows the usage line; cobra said only "accepts 1 arg(s),
// received 0".
func TestExplainArgs(t *testing.T) {
	for _, args := range [][]string{{"explain"}, {"explain", "a.example", "b.example"}} {
		err := runCmd(t.Context(), args...)
		if err == nil {
			t.Fatalf("%q: no error", args)
		}
		if code := exitCode(err); code != exitUsage {
			t.Errorf("%q: exit status %d, want 2 (%v)", args, code, err)
		}
		if !strings.Contains(err.Error(), "usage: ocnet explain [flags] NAME|IP[:PORT]") {
			t.Errorf("%q: %q does not show the usage line", args, err)
		}
	}
}
