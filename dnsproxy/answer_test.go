package dnsproxy

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ocnet/ocnet/split"
)

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

// rrText returns the records of a reply without their TTLs, sorted, so
// tests can compare them as text.
func rrText(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		f := strings.Fields(rr.String())
		if len(f) > 1 {
			f = slices.Delete(f, 1, 2)
		}
		out = append(out, strings.Join(f, " "))
	}
	slices.Sort(out)
	return out
}

func TestAnswer(t *testing.T) {
	f := newFixture(t)
	f.tunnel.addRecords(mustRR(t, `intranet.corp.example. 60 IN TXT "corp"`))
	f.local.addRecords(mustRR(t, "public.example.net. 60 IN MX 10 mail.example.net."))

	tests := []struct {
		name      string
		req       *dns.Msg
		rcode     int
		answer    []string
		tunnelSaw string
		localSaw  string
	}{
		{"tunnel A", question("intranet.corp.example", dns.TypeA), dns.RcodeSuccess,
			[]string{"intranet.corp.example. IN A 10.1.2.3"}, "intranet.corp.example", ""},
		{"tunnel AAAA", question("Intranet.Corp.Example", dns.TypeAAAA), dns.RcodeSuccess,
			[]string{"Intranet.Corp.Example. IN AAAA fd00::3"}, "intranet.corp.example", ""},
		{"tunnel cname flattened", question("alias.corp.example", dns.TypeA), dns.RcodeSuccess,
			[]string{"alias.corp.example. IN A 10.1.2.3"}, "alias.corp.example", ""},
		{"tunnel no AAAA is NOERROR", question("v4only.corp.example", dns.TypeAAAA),
			dns.RcodeSuccess, nil, "v4only.corp.example", ""},
		{"tunnel NXDOMAIN", question("missing.corp.example", dns.TypeA),
			dns.RcodeNameError, nil, "missing.corp.example", ""},
		{"tunnel TXT forwarded", question("intranet.corp.example", dns.TypeTXT),
			dns.RcodeSuccess, []string{`intranet.corp.example. IN TXT "corp"`},
			"intranet.corp.example", ""},
		{"local A", question("public.example.net", dns.TypeA), dns.RcodeSuccess,
			[]string{"public.example.net. IN A 203.0.113.10"}, "", "public.example.net"},
		{"local MX forwarded", question("public.example.net", dns.TypeMX), dns.RcodeSuccess,
			[]string{"public.example.net. IN MX 10 mail.example.net."}, "",
			"public.example.net"},
		{"local NXDOMAIN", question("nowhere.example.net", dns.TypeA), dns.RcodeNameError,
			nil, "", "nowhere.example.net"},
		{"localhost", question("app.localhost", dns.TypeA), dns.RcodeSuccess,
			[]string{"app.localhost. IN A 127.0.0.1"}, "", ""},
		{"two questions", func() *dns.Msg {
			m := question("a.corp.example", dns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(), dns.RcodeFormatError, nil, "", ""},
		{"no question", &dns.Msg{}, dns.RcodeFormatError, nil, "", ""},
		{"notify opcode", func() *dns.Msg {
			m := question("corp.example", dns.TypeSOA)
			m.Opcode = dns.OpcodeNotify
			return m
		}(), dns.RcodeNotImplemented, nil, "", ""},
		{"chaos class", func() *dns.Msg {
			m := question("version.bind", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), dns.RcodeRefused, nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()

			resp := f.res.Answer(ctx, tt.req)
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode],
					dns.RcodeToString[tt.rcode])
			}
			if got := rrText(resp); !slices.Equal(got, tt.answer) {
				t.Errorf("answer = %q, want %q", got, tt.answer)
			}
			if resp.Id != tt.req.Id || !resp.Response {
				t.Errorf("reply id %d response %v", resp.Id, resp.Response)
			}
			if tt.tunnelSaw != "" && f.tunnel.count(tt.tunnelSaw, "") == 0 {
				t.Errorf("tunnel server never saw %s", tt.tunnelSaw)
			}
			if tt.localSaw != "" && f.local.count(tt.localSaw, "") == 0 {
				t.Errorf("local server never saw %s", tt.localSaw)
			}
		})
	}

	f.local.mu.Lock()
	defer f.local.mu.Unlock()
	for _, q := range f.local.queries {
		if strings.HasSuffix(q.name, "corp.example") {
			t.Errorf("local server saw tunnel name %s", q.name)
		}
	}
}

// TestAnswerServfailNoLeak: a tunnel name whose servers fail is answered
// SERVFAIL, for every type, and the local resolver never hears of it.
func TestAnswerServfailNoLeak(t *testing.T) {
	dead := startServer(t, "127.0.0.1", 0)
	dead.setRcode(dns.RcodeServerFailure)
	local := startServer(t, "127.0.0.1", 0, localZone...)

	for _, tc := range []struct {
		name string
		r    *Resolver
	}{
		{"servers fail", New(Options{
			Policy:  &split.Policy{Domains: []string{"corp.example"}},
			Servers: []netip.Addr{dead.addr.Addr()}, Port: dead.addr.Port(),
			Tunnel: &countingDialer{}, Local: localResolver(local),
		})},
		{"no servers", New(Options{
			Policy: &split.Policy{Domains: []string{"corp.example"}},
			Tunnel: &countingDialer{}, Local: localResolver(local),
		})},
		{"no tunnel", New(Options{
			Policy:  &split.Policy{Domains: []string{"corp.example"}},
			Servers: []netip.Addr{dead.addr.Addr()}, Local: localResolver(local),
		})},
	} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX} {
			t.Run(tc.name+"/"+dns.TypeToString[qt], func(t *testing.T) {
				resp := tc.r.Answer(t.Context(), question("intranet.corp.example", qt))
				if resp.Rcode != dns.RcodeServerFailure {
					t.Errorf("rcode = %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
				}
			})
		}
	}
	if n := local.total(); n != 0 {
		t.Errorf("local resolver was asked %d questions", n)
	}
}

// TestSearchDomains: a short name is tried with each default domain in
// order and is never sent bare.
func TestSearchDomains(t *testing.T) {
	tunnel := startServer(t, "127.0.0.1", 0, tunnelZone...)
	local := startServer(t, "127.0.0.1", 0, localZone...)
	r := New(Options{
		Policy: &split.Policy{
			Domains:       []string{"lab.example", "corp.example"},
			SearchDomains: []string{"lab.example", "corp.example"},
		},
		Servers: []netip.Addr{tunnel.addr.Addr()}, Port: tunnel.addr.Port(),
		Tunnel: &countingDialer{}, Local: localResolver(local),
	})

	got, err := r.LookupNetIP(t.Context(), "intranet")
	if err != nil {
		t.Fatal(err)
	}
	if want := addrs("10.1.2.3", "fd00::3"); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if tunnel.count("intranet.lab.example", "") == 0 {
		t.Error("first search domain not tried")
	}
	if _, err := r.LookupNetIP(t.Context(), "nothere"); err == nil {
		t.Error("nothere resolved")
	}
	if local.total() != 0 || tunnel.count("intranet", "")+tunnel.count("nothere", "") != 0 {
		t.Error("a short name was sent bare")
	}
}

// TestCiscoDNSRules resolves one name of each kind under the four rule
// sets and checks which server was asked.
func TestCiscoDNSRules(t *testing.T) {
	tests := []struct {
		name   string
		policy *split.Policy
		tunnel []string // names that must go to the tunnel server only
		local  []string // names that must go to the local server only
	}{
		{"split-dns list", &split.Policy{Domains: []string{"lab.example"}},
			[]string{"wiki.lab.example"}, []string{"intranet.corp.example"}},
		{"default domain only", &split.Policy{Domains: []string{"corp.example"},
			DomainsAreDefault: true}, []string{"intranet.corp.example"},
			[]string{"public.example.net"}},
		{"neither", &split.Policy{}, nil,
			[]string{"intranet.corp.example", "public.example.net"}},
		{"tunnel all DNS", &split.Policy{TunnelAllDNS: true},
			[]string{"intranet.corp.example", "public.example.net"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tunnel := startServer(t, "127.0.0.1", 0, append(tunnelZone,
				"public.example.net. 60 IN A 203.0.113.10")...)
			local := startServer(t, "127.0.0.1", 0, localZone...)
			r := New(Options{Policy: tt.policy,
				Servers: []netip.Addr{tunnel.addr.Addr()}, Port: tunnel.addr.Port(),
				Tunnel: &countingDialer{}, Local: localResolver(local)})
			for _, n := range append(slices.Clone(tt.tunnel), tt.local...) {
				if _, err := r.LookupNetIP(t.Context(), n); err != nil {
					t.Errorf("%s: %v", n, err)
				}
			}
			for _, n := range tt.tunnel {
				if tunnel.count(n, "") == 0 || local.count(n, "") != 0 {
					t.Errorf("%s: tunnel saw %d, local saw %d; want tunnel only",
						n, tunnel.count(n, ""), local.count(n, ""))
				}
			}
			for _, n := range tt.local {
				if local.count(n, "") == 0 || tunnel.count(n, "") != 0 {
					t.Errorf("%s: tunnel saw %d, local saw %d; want local only",
						n, tunnel.count(n, ""), local.count(n, ""))
				}
			}
		})
	}
}

// TestListen queries the server over UDP and TCP like any other program.
func TestListen(t *testing.T) {
	f := newFixture(t)
	srv, err := Listen("127.0.0.1:0", f.res, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c := &dns.Client{Net: network, Timeout: 5 * time.Second}
			resp, _, err := c.Exchange(question("intranet.corp.example", dns.TypeA),
				srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"intranet.corp.example. IN A 10.1.2.3"}
			if got := rrText(resp); !slices.Equal(got, want) {
				t.Errorf("answer = %q, want %q", got, want)
			}
		})
	}

	// A big answer over UDP without EDNS0 comes back truncated, and whole
	// over TCP.
	for i := range 40 {
		f.tunnel.addRecords(mustRR(t, "many.corp.example. 60 IN A 10.3.0."+itoa(uint16(i+1))))
	}
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(question("many.corp.example", dns.TypeA), srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Truncated || len(resp.Answer) >= 40 {
		t.Errorf("udp: truncated %v with %d answers", resp.Truncated, len(resp.Answer))
	}
	c.Net = "tcp"
	resp, _, err = c.Exchange(question("many.corp.example", dns.TypeA), srv.Addr().String())
	if err != nil || len(resp.Answer) != 40 {
		t.Errorf("tcp: %d answers, err %v", len(resp.Answer), err)
	}

	if err := srv.Close(); err != nil {
		t.Error(err)
	}
}

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}
