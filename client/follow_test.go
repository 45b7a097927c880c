package client

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ocnet/ocnet/internal/fakehead"
	"github.com/ocnet/ocnet/session"
)

// TestReconnectFollowsNewConfig: the tunnel comes back with other DNS
// servers, split-DNS domains, routes and MTU; the proxies' policy and
// resolver follow, and OnReconnect sees the new configuration.
func TestReconnectFollowsNewConfig(t *testing.T) {
	t.Parallel()
	dns1 := []netip.Addr{fakehead.CorpDNS[1]}
	seen := make(chan *session.Config, 1)
	h, c := start(t, func(o *Options) {
		o.OnReconnect = func(cfg *session.Config) { seen <- cfg }
	})
	// The first tunnel is already up with the defaults; set the knobs
	// for the next one and make sure the current one has none of them.
	if got := c.router.Resolver.Servers(); len(got) != 0 {
		t.Fatalf("servers before %v, want none", got)
	}

	routes := []netip.Prefix{netip.MustParsePrefix("198.18.120.0/24"),
		netip.MustParsePrefix("198.18.121.0/24")}
	h.DNS.Store(&dns1)
	h.SplitDNS.Store(&[]string{"corp.example", "lab.example"})
	h.Routes.Store(&routes)
	h.MTU.Store(1300)
	h.DropTunnel()

	var cfg *session.Config
	select {
	case cfg = <-seen:
	case <-time.After(15 * time.Second):
		t.Fatal("no reconnect")
	}
	if !slices.Equal(cfg.DNS, dns1) || cfg.MTU != 1300 {
		t.Fatalf("OnReconnect saw dns %v mtu %d", cfg.DNS, cfg.MTU)
	}

	pol := c.Router().CurrentPolicy()
	if !slices.Equal(pol.Domains, []string{"corp.example", "lab.example"}) {
		t.Errorf("policy domains %v", pol.Domains)
	}
	if !slices.Equal(pol.Include, routes) {
		t.Errorf("policy routes %v, want %v", pol.Include, routes)
	}
	want := []netip.AddrPort{netip.AddrPortFrom(fakehead.CorpDNS[1], 53)}
	if got := c.router.Resolver.Servers(); !slices.Equal(got, want) {
		t.Errorf("resolver servers %v, want %v", got, want)
	}
	if st := c.Status(); st.MTU != 1300 || !slices.Equal(st.SplitDNS, pol.Domains) {
		t.Errorf("status mtu %d split dns %v", st.MTU, st.SplitDNS)
	}

	// A name in the new domain resolves through the new server.
	addrs, err := c.router.Resolver.LookupNetIP(t.Context(), "wiki.lab.example")
	if err != nil || !slices.Equal(addrs, dns1) {
		t.Errorf("wiki.lab.example = %v, %v; want the new server's answer %v", addrs, err, dns1)
	}
	for _, q := range h.DNSQueries() {
		if q.Server != fakehead.CorpDNS[1] {
			t.Errorf("%s asked of %v", q.Name, q.Server)
		}
	}

	// The echo flow still works over the kept stack at the new MTU.
	conn := echoFlow(t, c)
	if err := roundTrip(conn, "after", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestChanges: what counts as a change, and what a user is told.
func TestChanges(t *testing.T) {
	base := func() *session.Config {
		return &session.Config{
			Address: netip.MustParsePrefix("198.19.20.50/24"),
			DNS:     []netip.Addr{fakehead.CorpDNS[0]}, MTU: 1400,
			SplitDNS:     []string{"corp.example"},
			SplitInclude: []netip.Prefix{netip.MustParsePrefix("198.18.120.0/24")},
			Banner:       "hello",
		}
	}
	for _, tc := range []struct {
		name string
		mod  func(*session.Config)
		want []string
	}{
		{"same", func(*session.Config) {}, nil},
		{"banner only", func(c *session.Config) { c.Banner = "bye" }, nil},
		{"dns", func(c *session.Config) { c.DNS = []netip.Addr{fakehead.CorpDNS[1]} },
			[]string{"dns"}},
		{"mtu and domains", func(c *session.Config) {
			c.MTU = 1300
			c.SplitDNS = nil
		}, []string{"domains", "mtu"}},
		{"address and routes", func(c *session.Config) {
			c.Address = netip.MustParsePrefix("198.19.20.51/24")
			c.SplitInclude = nil
		}, []string{"address", "routes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mod(cfg)
			if got := changes(base(), cfg); !slices.Equal(got, tc.want) {
				t.Errorf("changes = %v, want %v", got, tc.want)
			}
		})
	}
}
