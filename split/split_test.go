package split

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestRoute(t *testing.T) {
	dns := []netip.Addr{netip.MustParseAddr("192.0.2.53")}

	tests := []struct {
		name   string
		policy Policy
		dst    string
		want   Decision
	}{
		{"full tunnel", Policy{}, "203.0.113.7", Tunnel},
		{"full tunnel v6", Policy{}, "2001:db8::1", Tunnel},
		{"full tunnel with exclude", Policy{Exclude: pfx("203.0.113.0/24")},
			"203.0.113.7", Direct},
		{"full tunnel outside exclude", Policy{Exclude: pfx("203.0.113.0/24")},
			"198.51.100.1", Tunnel},
		{"include hit", Policy{Include: pfx("10.0.0.0/8")}, "10.1.2.3", Tunnel},
		{"include miss", Policy{Include: pfx("10.0.0.0/8")}, "192.168.1.1", Direct},
		{"exclude inside include", Policy{
			Include: pfx("10.0.0.0/8"), Exclude: pfx("10.1.0.0/16")},
			"10.1.2.3", Direct},
		{"include inside exclude", Policy{
			Include: pfx("10.1.2.0/24"), Exclude: pfx("10.0.0.0/8")},
			"10.1.2.3", Tunnel},
		{"exclude wins a tie", Policy{
			Include: pfx("10.0.0.0/8"), Exclude: pfx("10.0.0.0/8")},
			"10.1.2.3", Direct},
		{"local LAN marker is not exclude-all", Policy{
			Exclude: pfx("0.0.0.0/32")}, "192.168.1.10", Tunnel},
		{"local LAN marker v6", Policy{Exclude: pfx("::/128")}, "2001:db8::1", Tunnel},
		{"local LAN marker with includes", Policy{
			Include: pfx("10.0.0.0/8"), Exclude: pfx("0.0.0.0/32")},
			"10.9.9.9", Tunnel},
		{"dns server outside includes", Policy{
			Include: pfx("10.0.0.0/8"), DNSServers: dns}, "192.0.2.53", Tunnel},
		{"dns server inside exclude", Policy{
			Exclude: pfx("192.0.2.0/24"), DNSServers: dns}, "192.0.2.53", Tunnel},
		{"v4-mapped v6 unmapped", Policy{Include: pfx("10.0.0.0/8")},
			"::ffff:10.1.2.3", Tunnel},
		{"v4 route does not catch v6", Policy{Include: pfx("10.0.0.0/8")},
			"2001:db8::1", Direct},
		{"v6 include", Policy{Include: pfx("2001:db8::/32")}, "2001:db8:1::5", Tunnel},
		{"zone ignored", Policy{Include: pfx("fd00::/8")}, "fd00::1%eth0", Tunnel},
		{"link-local direct", Policy{}, "fe80::1%eth0", Direct},
		{"loopback direct", Policy{}, "127.0.0.1", Direct},
		{"unmasked prefix", Policy{Include: pfx("10.1.2.3/8")}, "10.200.0.1", Tunnel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.policy.Route(netip.MustParseAddr(tt.dst))
			if got != tt.want {
				t.Errorf("Route(%s) = %v, want %v", tt.dst, got, tt.want)
			}
		})
	}
}

func TestRouteNeverRefuses(t *testing.T) {
	p := Policy{NoIPv6: true}
	if got := p.Route(netip.MustParseAddr("2001:db8::1")); got != Tunnel {
		t.Errorf("Route of a refused flow = %v, want tunnel (never direct)", got)
	}
}

func TestRouteZeroAddr(t *testing.T) {
	p := Policy{Include: pfx("0.0.0.0/0")}
	if got := p.Route(netip.Addr{}); got != Direct {
		t.Errorf("Route(zero) with includes = %v, want direct", got)
	}
}

func TestLocalLAN(t *testing.T) {
	tests := []struct {
		name    string
		exclude []netip.Prefix
		want    bool
	}{
		{"none", nil, false},
		{"v4 marker", pfx("10.0.0.0/8", "0.0.0.0/32"), true},
		{"v6 marker", pfx("::/128"), true},
		{"default route is no marker", pfx("0.0.0.0/0"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Policy{Exclude: tt.exclude}
			if got := p.LocalLAN(); got != tt.want {
				t.Errorf("LocalLAN() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTunnelName(t *testing.T) {
	p := Policy{Domains: []string{"corp.example", "Lab.Example.", ".dev.test", ""}}

	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"exact", "corp.example", true},
		{"sub", "intranet.corp.example", true},
		{"deep sub", "a.b.corp.example", true},
		{"trailing dot", "intranet.corp.example.", true},
		{"case", "InTraNet.CORP.example", true},
		{"domain with case and dot", "git.lab.example", true},
		{"domain with leading dot", "x.dev.test", true},
		{"suffix without label boundary", "evilcorp.example", false},
		{"other", "example.com", false},
		{"parent", "example", false},
		{"empty", "", false},
		{"dot only", ".", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.TunnelName(tt.in); got != tt.want {
				t.Errorf("TunnelName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}

	all := Policy{TunnelAllDNS: true}
	if !all.TunnelName("example.com") {
		t.Error("TunnelAllDNS: TunnelName(example.com) = false, want true")
	}
}

func TestDecisionString(t *testing.T) {
	for d, want := range map[Decision]string{Direct: "direct", Tunnel: "tunnel", 7: "unknown"} {
		if got := d.String(); got != want {
			t.Errorf("Decision(%d).String() = %q, want %q", int(d), got, want)
		}
	}
}

func benchPolicy() *Policy {
	return &Policy{
		Include: pfx("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
			"2001:db8::/32", "198.51.100.0/24"),
		Exclude:    pfx("10.99.0.0/16", "0.0.0.0/32"),
		DNSServers: []netip.Addr{netip.MustParseAddr("10.0.0.53")},
		Domains:    []string{"corp.example", "lab.example.", "dev.test"},
	}
}

func TestNoAllocs(t *testing.T) {
	p := benchPolicy()
	addrs := []netip.Addr{
		netip.MustParseAddr("10.1.2.3"),
		netip.MustParseAddr("::ffff:10.99.1.1"),
		netip.MustParseAddr("fe80::1%eth0"),
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, a := range addrs {
			p.Route(a)
		}
	}); n != 0 {
		t.Errorf("Route allocates %v times per run, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		p.TunnelName("Intranet.Corp.Example.")
		p.TunnelName("www.example.com")
	}); n != 0 {
		t.Errorf("TunnelName allocates %v times per run, want 0", n)
	}
}

func BenchmarkRoute(b *testing.B) {
	p := benchPolicy()
	dst := netip.MustParseAddr("10.99.1.1")
	b.ReportAllocs()
	for b.Loop() {
		p.Route(dst)
	}
}

func BenchmarkTunnelName(b *testing.B) {
	p := benchPolicy()
	b.ReportAllocs()
	for b.Loop() {
		p.TunnelName("gitlab.dev.test.")
	}
}

// TestLongestMatchAgreesWithContains checks the hand-rolled bit compare
// against netip.Prefix.Contains on pseudo-random prefixes and addresses.
func TestLongestMatchAgreesWithContains(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	addr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.IntN(4)) // few values, so prefixes overlap
			}
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(4))})
	}
	for range 2000 {
		v6 := rng.IntN(2) == 0
		var list []netip.Prefix
		for range rng.IntN(6) {
			a := addr(rng.IntN(4) == 0 != v6)
			list = append(list, netip.PrefixFrom(a, rng.IntN(a.BitLen()+1)))
		}
		dst := addr(v6)

		want := -1
		for _, p := range list {
			if !isLocalLANMarker(p) && p.Contains(dst) && p.Bits() > want {
				want = p.Bits()
			}
		}
		got := longestMatch(list, dst)
		if got.Bits() != want || want >= 0 && !got.Contains(dst) {
			t.Fatalf("longestMatch(%v, %v) = %v, want a /%d", list, dst, got, want)
		}
	}
}
