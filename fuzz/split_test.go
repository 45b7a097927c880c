package fuzz

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ocnet/ocnet/split"
)

// FuzzRuleLists parses arbitrary text as each kind of user rule list
// (--allowed-apps, --on-demand-*, --include/--exclude) and decides a
// flow with what it accepted. Nothing may panic; errors carry the split
// prefix; an accepted list prints back to text that parses to the same
// list; matching is case-insensitive for names.
func FuzzRuleLists(f *testing.F) {
	for _, s := range []string{
		"com.example.*,ssh,/usr/bin/curl",
		"email.example.com, .example.org,*example.net corp",
		"10.0.0.0/255.0.0.0,192.168.7.7 2001:db8::/32,.corp.example",
		"0.0.0.0/255.255.255.255",
		"*", "a..b", "com.*.mail", "10.0.0.0/33",
	} {
		f.Add(s, "www.example.org", "10.1.2.3")
	}

	f.Fuzz(func(t *testing.T, list, name, addr string) {
		apps, err := split.ParseAppList(list)
		checkErr(t, err)
		if err == nil {
			again, err := split.ParseAppList(apps.String())
			if err != nil || again.String() != apps.String() {
				t.Fatalf("app list %q prints as %q, which reads back as %q, %v",
					list, apps.String(), again.String(), err)
			}
			e1, ok1 := apps.Match(name)
			e2, ok2 := again.Match(name)
			if ok1 != ok2 || e1 != e2 {
				t.Fatalf("reparsed app list matches %q differently", name)
			}
		}

		names, err := split.ParseDomainList(list)
		checkErr(t, err)
		if err == nil {
			again, err := split.ParseDomainList(names.String())
			if err != nil || again.String() != names.String() {
				t.Fatalf("domain list %q prints as %q, which reads back as %q, %v",
					list, names.String(), again.String(), err)
			}
			_, lower := names.Match(strings.ToLower(name))
			_, upper := names.Match(strings.ToUpper(name))
			if lower != upper {
				t.Fatalf("domain list %q matches %q depending on case", list, name)
			}
		}

		routes, tnames, err := split.ParseTargets(list)
		checkErr(t, err)
		if err != nil {
			return
		}
		for _, r := range routes {
			if !r.IsValid() || r != r.Masked() {
				t.Fatalf("ParseTargets(%q) gave route %v", list, r)
			}
		}
		p := split.Policy{Include: routes, Exclude: routes[len(routes)/2:], DNSServers: nil}
		p.User.IncludeNames = tnames
		p.Apps.Allowed = apps
		a, _ := netip.ParseAddr(addr)
		d, r := p.Decide(split.Flow{Addr: a, Name: name, App: name})
		if d != split.Tunnel && d != split.Direct && d != split.Refuse || r.String() == "" {
			t.Fatalf("Decide gave %v by %q", d, r)
		}
	})
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && !strings.HasPrefix(err.Error(), "split: ") {
		t.Fatalf("error without subsystem prefix: %q", err)
	}
}
