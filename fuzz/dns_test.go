package fuzz

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/split"
)

// failDialer refuses every connection and counts the attempts, so the
// DNS path runs without any network.
type failDialer struct{ n atomic.Int64 }

func (d *failDialer) DialContext(context.Context, string, string) (net.Conn, error) {
	d.n.Add(1)
	return nil, errors.New("fuzz: no network")
}

// FuzzDNSQuery hands arbitrary bytes, read as a DNS message, to the
// --dns-listen handler. It must not panic; the reply must pack, carry
// the query's ID, and fit 512 bytes once truncated for UDP; a question
// under a tunnel domain must never reach the local resolver.
func FuzzDNSQuery(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"intranet.corp.example.", dns.TypeA},
		{"intranet.corp.example.", dns.TypeAAAA},
		{"corp.example.", dns.TypeMX},
		{"www.example.com.", dns.TypeA},
		{"app.localhost.", dns.TypeAAAA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, false)
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}

		tunnel, local := &failDialer{}, &failDialer{}
		r := dnsproxy.New(dnsproxy.Options{
			Policy: &split.Policy{Domains: []string{"corp.example"},
				DNSServers: []netip.Addr{netip.MustParseAddr("10.0.0.53")}},
			Tunnel: tunnel,
			Local:  &net.Resolver{PreferGo: true, Dial: local.DialContext},
		})
		resp := r.Answer(t.Context(), req)
		if resp == nil || resp.Id != req.Id || !resp.Response {
			t.Fatalf("bad reply %v to %v", resp, req)
		}
		resp.Truncate(dns.MinMsgSize)
		wire, err := resp.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v", err)
		}
		if len(wire) > dns.MinMsgSize {
			t.Fatalf("truncated reply is %d bytes", len(wire))
		}

		if len(req.Question) == 1 && local.n.Load() != 0 {
			n := strings.ToLower(req.Question[0].Name)
			if n == "corp.example." || strings.HasSuffix(n, ".corp.example.") {
				t.Fatalf("tunnel name %q went to the local resolver", n)
			}
		}
	})
}
