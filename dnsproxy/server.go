package dnsproxy

// The --dns-listen server: other programs on the host send it ordinary DNS
// queries over UDP or TCP and get the same split-DNS answers the proxies
// use. Per query:
//
//  1. check the message (a standard query with one IN question);
//  2. localhost names are answered here (RFC 6761);
//  3. A and AAAA for tunnel names come from the cache or the tunnel's
//     servers, for other names from the local resolver;
//  4. other types are forwarded as they are: through the tunnel for
//     tunnel names, to the host's name servers otherwise;
//  5. a tunnel name that fails gets SERVFAIL, never a local answer.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// localTTL is the TTL given to answers from the local resolver, which
	// does not report the real one.
	localTTL = 30

	// answerTimeout bounds the work on one query.
	answerTimeout = 10 * time.Second

	// resolvConf lists the host's name servers, for forwarding types the
	// Go resolver cannot look up.
	resolvConf = "/etc/resolv.conf"
)

// Answer builds the reply to one query message, the way the --dns-listen
// server answers it. It never returns nil and never panics on a hostile
// message; req is not modified.
func (r *Resolver) Answer(ctx context.Context, req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	resp.Authoritative = false

	if req.Opcode != dns.OpcodeQuery {
		resp.Rcode = dns.RcodeNotImplemented
		return resp
	}
	if len(req.Question) != 1 || req.Response {
		resp.Rcode = dns.RcodeFormatError
		return resp
	}
	q := req.Question[0]
	name := normalize(q.Name)
	if name == "" || q.Qclass != dns.ClassINET {
		resp.Rcode = dns.RcodeRefused
		return resp
	}

	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()

	switch {
	case isLocalhost(name):
		resp.Answer = addrRRs(q.Name, q.Qtype, loopback(), localTTL)
	case q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA:
		r.answerAddrs(ctx, resp, name, q)
	default:
		r.forward(ctx, resp, name, q)
	}
	return resp
}

// answerAddrs fills resp with the A or AAAA records of name.
func (r *Resolver) answerAddrs(ctx context.Context, resp *dns.Msg, name string,
	q dns.Question) {
	if !strings.Contains(name, ".") && len(r.view().search) > 0 {
		r.answerShort(ctx, resp, name, q)
		return
	}
	if r.isTunnelName(name) {
		if !r.haveServers() {
			resp.Rcode = dns.RcodeServerFailure
			return
		}
		addrs, ttl, err := r.query(ctx, name, q.Qtype)
		switch {
		case err == nil:
			resp.Answer = addrRRs(q.Name, q.Qtype, addrs, uint32(max(ttl/time.Second, 1)))
		case errors.Is(err, errNXDomain):
			resp.Rcode = dns.RcodeNameError
		case errors.Is(err, ErrNotFound):
			// No record of this type: NOERROR with an empty answer.
		default:
			resp.Rcode = dns.RcodeServerFailure
		}
		return
	}

	// Rooted, so that the local resolver adds no search domain of its
	// own: a query on the wire is already complete, and "www" completed
	// with the tunnel's domain must not reach the local servers.
	addrs, err := r.local.LookupNetIP(ctx, "ip", dns.Fqdn(name))
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			resp.Rcode = dns.RcodeNameError
		} else {
			resp.Rcode = dns.RcodeServerFailure
		}
		return
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	resp.Answer = addrRRs(q.Name, q.Qtype, addrs, localTTL)
}

// answerShort answers a short name the way the proxies resolve it:
// completed with each search domain and never asked bare, so that
// "intranet", which the tunnel's default domain completes, does not reach
// the local resolver. The records keep the name that was asked.
func (r *Resolver) answerShort(ctx context.Context, resp *dns.Msg, name string,
	q dns.Question) {
	addrs, err := r.LookupNetIP(ctx, name)
	switch {
	case err == nil:
		resp.Answer = addrRRs(q.Name, q.Qtype, addrs, localTTL)
	case errors.Is(err, ErrNotFound):
		resp.Rcode = dns.RcodeNameError
	default:
		resp.Rcode = dns.RcodeServerFailure
	}
}

// forward passes a question of another type to the servers that own the
// name and copies their answer.
func (r *Resolver) forward(ctx context.Context, resp *dns.Msg, name string, q dns.Question) {
	fq := new(dns.Msg)
	fq.SetQuestion(dns.Fqdn(name), q.Qtype)
	fq.SetEdns0(udpPayload, false)

	var reply *dns.Msg
	var err error
	if r.isTunnelName(name) {
		if !r.haveServers() {
			resp.Rcode = dns.RcodeServerFailure
			return
		}
		reply, err = r.exchangeWith(ctx, fq, r.serverAddrs(), r.tunnel.DialContext)
	} else {
		servers, dial := r.localServers()
		if len(servers) == 0 {
			err = errors.New("no local name servers")
		} else {
			reply, err = r.exchangeWith(ctx, fq, servers, dial)
		}
	}
	if err != nil {
		resp.Rcode = dns.RcodeServerFailure
		return
	}

	resp.Rcode = reply.Rcode
	resp.Answer = reply.Answer
	resp.Ns = reply.Ns
	for _, rr := range reply.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			resp.Extra = append(resp.Extra, rr)
		}
	}
}

// localServers returns the host's name servers and how to dial them: the
// local resolver's own Dial when it has one (tests), else the servers of
// /etc/resolv.conf dialed from the host.
func (r *Resolver) localServers() ([]string, dialFunc) {
	if r.local.Dial != nil {
		return []string{"local"}, r.local.Dial
	}
	cfg, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, nil
	}
	var out []string
	for _, s := range cfg.Servers {
		out = append(out, net.JoinHostPort(s, cfg.Port))
	}
	var d net.Dialer
	return out, d.DialContext
}

// addrRRs turns addresses of the asked family into records for owner.
func addrRRs(owner string, qtype uint16, addrs []netip.Addr, ttl uint32) []dns.RR {
	var out []dns.RR
	for _, a := range addrs {
		hdr := dns.RR_Header{Name: owner, Class: dns.ClassINET, Ttl: ttl, Rrtype: qtype}
		switch {
		case qtype == dns.TypeA && a.Is4():
			out = append(out, &dns.A{Hdr: hdr, A: a.AsSlice()})
		case qtype == dns.TypeAAAA && a.Is6():
			out = append(out, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	return out
}

// Server serves a Resolver to other programs over UDP and TCP on one
// address.
type Server struct {
	udp, tcp *dns.Server
	addr     net.Addr
	wg       sync.WaitGroup
	once     sync.Once
}

// Listen binds addr ("127.0.0.1:5353"; port 0 picks one, shared by UDP
// and TCP) and serves r on it until Close. Listening beyond loopback is
// allowed but logged as a warning: anyone who reaches the port can ask
// the corporate DNS servers.
func Listen(addr string, r *Resolver, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pc, ln, err := listenBoth(addr)
	if err != nil {
		return nil, fmt.Errorf("dnsproxy: listen: %w", err)
	}
	if ap, err := netip.ParseAddrPort(pc.LocalAddr().String()); err == nil &&
		!ap.Addr().IsLoopback() {
		log.Warn("DNS server listens beyond loopback; anyone who reaches it can query "+
			"the tunnel's DNS servers", "addr", pc.LocalAddr())
	}

	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := r.Answer(context.Background(), req)
		if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
			size := dns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = max(int(o.UDPSize()), dns.MinMsgSize)
			}
			resp.Truncate(size)
		}
		w.WriteMsg(resp)
	})
	s := &Server{
		udp:  &dns.Server{PacketConn: pc, Handler: h},
		tcp:  &dns.Server{Listener: ln, Handler: h, ReadTimeout: 10 * time.Second},
		addr: pc.LocalAddr(),
	}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started, ended := make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(ended)
			if err := srv.ActivateAndServe(); err != nil {
				log.Debug("dns server stopped", "err", err)
			}
		}()

		// Shutdown before the server has started fails, so wait for it.
		select {
		case <-started:
		case <-ended:
		}
	}
	log.Info("DNS server ready", "addr", s.addr)
	return s, nil
}

// listenBoth binds UDP and TCP on the same address. With port 0 the port
// the kernel picks for UDP may be taken for TCP, so a few picks are tried.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	tries := 1
	if port == "0" {
		tries = 20
	}
	var err error
	for range tries {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return nil, nil, err
		}
		var ln net.Listener
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			return pc, ln, nil
		}
		pc.Close()
	}
	return nil, nil, err
}

// Addr returns the address the server listens on, for UDP and TCP.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops both listeners and waits for them to end.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
		s.wg.Wait()
	})
	return nil
}
