package dnsproxy

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ocnet/ocnet/split"
)

var tunnelZone = []string{
	"intranet.corp.example. 60 IN A 10.1.2.3",
	"intranet.corp.example. 60 IN AAAA fd00::3",
	"alias.corp.example. 60 IN CNAME intranet.corp.example.",
	"v4only.corp.example. 60 IN A 10.1.2.4",
	"big.corp.example. 60 IN A 10.1.2.5",
	"nocache.corp.example. 0 IN A 10.1.2.6",
	"wiki.lab.example. 60 IN A 10.2.0.1",
}

var localZone = []string{
	"public.example.net. 60 IN A 203.0.113.10",
	"intranet.corp.example. 60 IN A 198.51.100.66", // a leak would show this
}

type fixture struct {
	tunnel *testServer
	local  *testServer
	dialer *countingDialer
	res    *Resolver
}

func newFixture(t *testing.T) *fixture {
	t.Helper()

	f := &fixture{
		tunnel: startServer(t, "127.0.0.1", 0, tunnelZone...),
		local:  startServer(t, "127.0.0.1", 0, localZone...),
		dialer: &countingDialer{},
	}
	f.tunnel.setTruncate("big.corp.example")
	f.res = New(Options{
		Policy:       &split.Policy{Domains: []string{"corp.example", "lab.example"}},
		Servers:      []netip.Addr{f.tunnel.addr.Addr()},
		Port:         f.tunnel.addr.Port(),
		SearchDomain: "corp.example",
		Tunnel:       f.dialer,
		Local:        localResolver(f.local),
	})
	return f
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestLookupNetIP(t *testing.T) {
	f := newFixture(t)

	tests := []struct {
		name       string
		in         string
		want       []netip.Addr
		tunnelSeen string // name the tunnel server must have seen
		localSeen  string // name the local server must have seen
	}{
		{"tunnel name", "intranet.corp.example",
			addrs("10.1.2.3", "fd00::3"), "intranet.corp.example", ""},
		{"tunnel name, case and dot", "WIKI.Lab.Example.",
			addrs("10.2.0.1"), "wiki.lab.example", ""},
		{"short name expanded", "v4only",
			addrs("10.1.2.4"), "v4only.corp.example", ""},
		{"cname chain", "alias.corp.example",
			addrs("10.1.2.3", "fd00::3"), "alias.corp.example", ""},
		{"local name", "public.example.net",
			addrs("203.0.113.10"), "", "public.example.net"},
		{"ipv4 literal", "10.9.8.7", addrs("10.9.8.7"), "", ""},
		{"mapped literal", "::ffff:10.1.1.1", addrs("10.1.1.1"), "", ""},
		{"ipv6 literal", "fd00::1", addrs("fd00::1"), "", ""},
		{"localhost", "localhost", addrs("127.0.0.1", "::1"), "", ""},
		{"under localhost", "app.Localhost.", addrs("127.0.0.1", "::1"), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()

			got, err := f.res.LookupNetIP(ctx, tt.in)
			if err != nil {
				t.Fatalf("LookupNetIP(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("LookupNetIP(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if tt.tunnelSeen != "" && f.tunnel.count(tt.tunnelSeen, "") == 0 {
				t.Errorf("tunnel server never saw %s", tt.tunnelSeen)
			}
			if tt.localSeen != "" && f.local.count(tt.localSeen, "") == 0 {
				t.Errorf("local server never saw %s", tt.localSeen)
			}
		})
	}

	// No tunnel name, expanded or not, may ever reach the local resolver,
	// and localhost names reach no server at all.
	for _, n := range []string{"intranet.corp.example", "wiki.lab.example",
		"v4only.corp.example", "alias.corp.example", "v4only", "localhost",
		"app.localhost", "localhost.corp.example"} {
		if c := f.local.count(n, ""); c != 0 {
			t.Errorf("local resolver saw %s %d times", n, c)
		}
		if c := f.tunnel.count(n, ""); c != 0 && strings.Contains(n, "localhost") {
			t.Errorf("tunnel server saw %s %d times", n, c)
		}
	}
}

func TestTunnelNameNeverFallsBack(t *testing.T) {
	f := newFixture(t)

	// A server that answers SERVFAIL to everything.
	dead := startServer(t, "127.0.0.1", 0)
	deadAddr := dead.addr
	dead.setRcode(2) // SERVFAIL

	tests := []struct {
		name    string
		res     *Resolver
		in      string
		wantErr error
	}{
		{"nxdomain", f.res, "missing.corp.example", ErrNotFound},
		{"server failure", New(Options{
			Policy:  &split.Policy{Domains: []string{"corp.example"}},
			Servers: []netip.Addr{deadAddr.Addr()},
			Port:    deadAddr.Port(),
			Tunnel:  f.dialer,
			Local:   localResolver(f.local),
		}), "intranet.corp.example", ErrServerFailed},
		{"no servers", New(Options{
			Policy: &split.Policy{TunnelAllDNS: true},
			Tunnel: f.dialer,
			Local:  localResolver(f.local),
		}), "public.example.net", ErrNoServers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()

			got, err := tt.res.LookupNetIP(ctx, tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("LookupNetIP(%q) = %v, %v; want error %v", tt.in, got, err, tt.wantErr)
			}
			if n := f.local.total(); n != 0 {
				t.Errorf("local resolver was asked %d questions", n)
			}
		})
	}
}

func TestServersInOrder(t *testing.T) {
	good := startServer(t, "127.0.0.1", 0, tunnelZone...)
	bad := startServer(t, "127.0.0.2", good.addr.Port())
	bad.setRcode(5) // REFUSED

	r := New(Options{
		Policy:  &split.Policy{TunnelAllDNS: true},
		Servers: []netip.Addr{bad.addr.Addr(), good.addr.Addr()},
		Port:    good.addr.Port(),
		Tunnel:  &countingDialer{},
	})
	got, err := r.LookupNetIP(t.Context(), "v4only.corp.example")
	if err != nil {
		t.Fatalf("LookupNetIP: %v", err)
	}
	if want := addrs("10.1.2.4"); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if bad.count("v4only.corp.example", "") == 0 {
		t.Error("first server was skipped")
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	f := newFixture(t)

	got, err := f.res.LookupNetIP(t.Context(), "big.corp.example")
	if err != nil {
		t.Fatalf("LookupNetIP: %v", err)
	}
	if want := addrs("10.1.2.5"); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if f.tunnel.count("big.corp.example", "udp") == 0 ||
		f.tunnel.count("big.corp.example", "tcp") == 0 {
		t.Errorf("want a udp then a tcp query; saw udp=%d tcp=%d",
			f.tunnel.count("big.corp.example", "udp"),
			f.tunnel.count("big.corp.example", "tcp"))
	}
}

// TestLostQueryResent: a UDP query that gets no answer goes out again
// within its attempt, so one lost datagram does not fail the lookup.
func TestLostQueryResent(t *testing.T) {
	f := newFixture(t)
	f.tunnel.dropUDP(1)

	start := time.Now()
	got, err := f.res.LookupNetIP(t.Context(), "v4only.corp.example")
	if err != nil {
		t.Fatalf("LookupNetIP after one lost query: %v", err)
	}
	if want := addrs("10.1.2.4"); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if n := f.tunnel.count("v4only.corp.example", "udp"); n < 2 {
		t.Errorf("server saw %d UDP queries, want the lost one sent again", n)
	}
	if d := time.Since(start); d >= attemptTimeout {
		t.Errorf("lookup took %v, as long as a whole attempt", d)
	}
}

func TestCache(t *testing.T) {
	tests := []struct {
		name      string
		host      string
		wantFirst int // questions seen after the first lookup (A + AAAA)
		wantAfter int // questions seen after the second lookup
	}{
		{"ttl honoured", "intranet.corp.example", 2, 2},
		// A zero TTL caches nothing: the A answer is asked again, the
		// empty AAAA answer is cached as a negative one.
		{"zero ttl", "nocache.corp.example", 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)

			for i, want := range []int{tt.wantFirst, tt.wantAfter} {
				if _, err := f.res.LookupNetIP(t.Context(), tt.host); err != nil {
					t.Fatalf("lookup %d: %v", i, err)
				}
				if got := f.tunnel.count(tt.host, ""); got != want {
					t.Errorf("after lookup %d the server saw %d questions, want %d",
						i+1, got, want)
				}
			}
		})
	}
}

func TestCacheExpiry(t *testing.T) {
	var c cache
	now := time.Now()
	key := cacheKey{"a.example", 1}

	c.put(key, addrs("10.0.0.1"), time.Minute, now)
	if h, ok := c.get(key, now.Add(59*time.Second)); !ok || h.ttl != time.Second {
		t.Error("entry missing before its TTL ran out")
	}
	if _, ok := c.get(key, now.Add(time.Minute)); ok {
		t.Error("entry still served after its TTL ran out")
	}
}

func TestInvalidName(t *testing.T) {
	r := New(Options{})
	for _, n := range []string{"", ".", "a..b", "bad name.example", "x/y"} {
		t.Run(n, func(t *testing.T) {
			if got, err := r.LookupNetIP(t.Context(), n); err == nil {
				t.Errorf("LookupNetIP(%q) = %v, want an error", n, got)
			}
		})
	}
}

func BenchmarkLookupCached(b *testing.B) {
	srv := startServer(b, "127.0.0.1", 0, tunnelZone...)
	r := New(Options{
		Policy:  &split.Policy{Domains: []string{"corp.example"}},
		Servers: []netip.Addr{srv.addr.Addr()},
		Port:    srv.addr.Port(),
		Tunnel:  &countingDialer{},
	})
	ctx := context.Background()
	if _, err := r.LookupNetIP(ctx, "intranet.corp.example"); err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.LookupNetIP(ctx, "intranet.corp.example"); err != nil {
			b.Fatal(err)
		}
	}
}
