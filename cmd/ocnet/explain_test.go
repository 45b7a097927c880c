package main

import (
	"net/netip"
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
		{"intranet.corp.example:443", "direct", "outside every split-include",
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
