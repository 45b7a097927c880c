package dnsproxy

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// testServer is an authoritative-style DNS server on loopback that serves
// a fixed record set over UDP and TCP on the same port and records every
// question it sees.
type testServer struct {
	addr netip.AddrPort

	records []dns.RR

	mu       sync.Mutex
	rcode    int             // when non-zero, every reply carries it
	truncate map[string]bool // names answered with TC set over UDP
	drop     int             // UDP queries still to be ignored
	soa      dns.RR          // added to the authority of negative answers
	queries  []seenQuery
}

// dropUDP makes the server ignore the next n UDP queries, as a lossy
// path would.
func (s *testServer) dropUDP(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop = n
}

// setRcode makes every later reply carry rcode.
func (s *testServer) setRcode(rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcode = rcode
}

// setTruncate makes UDP replies for name come back empty with TC set.
func (s *testServer) setTruncate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate[name] = true
}

// setSOA puts rr in the authority section of every later NXDOMAIN and
// NODATA reply, as an authoritative server does (RFC 2308 section 3).
func (s *testServer) setSOA(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.soa = rr
}

type seenQuery struct {
	name    string // lower case, no trailing dot
	qtype   uint16
	network string
}

// startServer serves records on ip; port 0 picks a free one.
func startServer(t testing.TB, ip string, port uint16, records ...string) *testServer {
	t.Helper()

	s := &testServer{truncate: map[string]bool{}}
	for _, line := range records {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("bad test record %q: %v", line, err)
		}
		s.records = append(s.records, rr)
	}

	// The UDP port the kernel picks may be taken for TCP: try a few.
	pc, ln, err := listenBoth(net.JoinHostPort(ip, itoa(port)))
	if err != nil {
		t.Fatalf("listen udp and tcp: %v", err)
	}
	udpPort := pc.LocalAddr().(*net.UDPAddr).Port
	s.addr = netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(udpPort))

	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: s},
		{Listener: ln, Handler: s},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return s
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// ServeDNS answers from the record set, following CNAMEs in the zone.
func (s *testServer) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	reply := new(dns.Msg)
	reply.SetReply(q)
	if len(q.Question) != 1 {
		reply.Rcode = dns.RcodeFormatError
		w.WriteMsg(reply)
		return
	}
	question := q.Question[0]
	name := strings.ToLower(strings.TrimSuffix(question.Name, "."))
	network := w.RemoteAddr().Network()

	s.mu.Lock()
	s.queries = append(s.queries, seenQuery{name, question.Qtype, network})
	rcode, truncate, soa := s.rcode, s.truncate[name], s.soa
	lost := network == "udp" && s.drop > 0
	if lost {
		s.drop--
	}
	s.mu.Unlock()
	if lost {
		return
	}

	switch {
	case rcode != 0:
		reply.Rcode = rcode
	case network == "udp" && truncate:
		reply.Truncated = true
	default:
		reply.Answer, reply.Rcode = s.lookup(question.Name, question.Qtype)
		if soa != nil && !hasType(reply.Answer, question.Qtype) {
			reply.Ns = []dns.RR{soa}
		}
	}
	w.WriteMsg(reply)
}

func hasType(rrs []dns.RR, qtype uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == qtype {
			return true
		}
	}
	return false
}

// addRecords serves more records from now on.
func (s *testServer) addRecords(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, rrs...)
}

func (s *testServer) lookup(name string, qtype uint16) ([]dns.RR, int) {
	s.mu.Lock()
	records := s.records
	s.mu.Unlock()

	var out []dns.RR
	known := false
	for hops := 0; hops < 8; hops++ {
		next := ""
		for _, rr := range records {
			if !strings.EqualFold(rr.Header().Name, name) {
				continue
			}
			known = true
			if c, ok := rr.(*dns.CNAME); ok {
				out = append(out, rr)
				next = c.Target
			} else if rr.Header().Rrtype == qtype {
				out = append(out, rr)
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	if !known {
		return nil, dns.RcodeNameError
	}
	return out, dns.RcodeSuccess
}

// count returns how many questions for name (any type, any transport)
// the server has seen; network "" matches both transports.
func (s *testServer) count(name, network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()

	n := 0
	for _, q := range s.queries {
		if q.name == name && (network == "" || q.network == network) {
			n++
		}
	}
	return n
}

func (s *testServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queries)
}

// countingDialer stands in for the netstack: a plain loopback dialer that
// counts its use.
type countingDialer struct {
	d     net.Dialer
	dials atomic.Int64
}

func (c *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c.dials.Add(1)
	return c.d.DialContext(ctx, network, addr)
}

// localResolver returns a pure-Go resolver whose every query goes to s.
func localResolver(s *testServer) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr.String())
		},
	}
}
