package dnsproxy

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/ocnet/ocnet/split"
)

// TestReconfigure: after a reconnect with another configuration, the
// resolver and one WithLocal made from it ask the new servers for the new
// domains; the old answers are gone from the cache.
func TestReconfigure(t *testing.T) {
	oldSrv := startServer(t, "127.0.0.1", 0, "intranet.corp.example. 60 IN A 10.1.2.3")
	// The port is the Resolver's, so the new server takes the same one
	// on another loopback address.
	newSrv := startServer(t, "127.0.0.2", oldSrv.addr.Port(),
		"intranet.corp.example. 60 IN A 10.9.9.9", "wiki.lab.example. 60 IN A 10.9.0.1")
	local := startServer(t, "127.0.0.1", 0, "wiki.lab.example. 60 IN A 198.51.100.66")

	r := New(Options{
		Policy:  &split.Policy{Domains: []string{"corp.example"}},
		Servers: []netip.Addr{oldSrv.addr.Addr()},
		Port:    oldSrv.addr.Port(),
		Tunnel:  &countingDialer{},
	})
	tun := r.WithLocal(localResolver(local))
	if got, err := tun.LookupNetIP(t.Context(), "intranet.corp.example"); err != nil ||
		!slices.Equal(got, addrs("10.1.2.3")) {
		t.Fatalf("before: %v, %v", got, err)
	}

	r.Reconfigure(Options{
		Policy:  &split.Policy{Domains: []string{"corp.example", "lab.example"}},
		Servers: []netip.Addr{newSrv.addr.Addr()},
	})
	for _, res := range []*Resolver{r, tun} {
		want := []netip.AddrPort{newSrv.addr}
		if got := res.Servers(); !slices.Equal(got, want) {
			t.Errorf("servers %v, want %v", got, want)
		}
		for name, want := range map[string]string{
			"intranet.corp.example": "10.9.9.9", // not the cached old answer
			"wiki.lab.example":      "10.9.0.1", // a tunnel name now
		} {
			got, err := res.LookupNetIP(t.Context(), name)
			if err != nil || !slices.Equal(got, addrs(want)) {
				t.Errorf("%s: %v, %v; want %s", name, got, err, want)
			}
		}
	}
	if n := local.count("wiki.lab.example", ""); n != 0 {
		t.Errorf("the local server saw the new tunnel domain %d times", n)
	}
}
