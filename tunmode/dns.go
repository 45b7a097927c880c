package tunmode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/proxy"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/split"
)

// answerTTL is the TTL of addresses ocnet answers with: short, because
// ocnet's own cache holds the real records.
const answerTTL = 30

// exchangeTimeout bounds one forwarded query.
const exchangeTimeout = 5 * time.Second

// dnsAnswerer answers the host's queries to the installed resolver with
// the split-DNS rules: A and AAAA through ocnet's resolver (tunnel names by
// the tunnel's servers through the tunnel, other names by the host's
// original resolvers), other types forwarded raw to the same side. A
// tunnel name never goes to the host's resolvers.
type dnsAnswerer struct {
	res     *dnsproxy.Resolver
	policy  *split.Policy
	tunnel  proxy.Dialer
	servers []netip.Addr // the tunnel's
	host    []netip.AddrPort
	log     *slog.Logger
}

func newDNSAnswerer(r *proxy.Router, cfg *session.Config, host []netip.AddrPort,
	log *slog.Logger) *dnsAnswerer {
	pol := r.Policy
	if pol == nil {
		pol = client.PolicyFrom(cfg)
	}
	search := ""
	if len(cfg.DefaultDomains) > 0 {
		search = cfg.DefaultDomains[0]
	}
	return &dnsAnswerer{
		res: dnsproxy.New(dnsproxy.Options{
			Policy:       pol,
			Servers:      cfg.DNS,
			SearchDomain: search,
			Tunnel:       r.Tunnel,
			Local:        hostResolver(host),
			Logger:       log,
		}),
		policy:  pol,
		tunnel:  r.Tunnel,
		servers: cfg.DNS,
		host:    host,
		log:     log,
	}
}

// errNoHostDNS means a name outside the tunnel came in but the host had no
// resolver of its own to ask.
var errNoHostDNS = errors.New("tunmode: no host resolver for names outside the tunnel")

// hostResolver asks the host's original resolvers directly, never the
// resolv.conf the host configuration rewrote (that points back at us).
func hostResolver(host []netip.AddrPort) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			if len(host) == 0 {
				return nil, errNoHostDNS
			}
			var d net.Dialer
			return d.DialContext(ctx, network, host[0].String())
		},
	}
}

// serveUDP answers queries on one UDP flow until it idles.
func (a *dnsAnswerer) serveUDP(ctx context.Context, c net.Conn) {
	buf := make([]byte, 1<<16)
	for {
		c.SetReadDeadline(time.Now().Add(dnsIdle))
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if reply := a.answer(ctx, buf[:n], 512); reply != nil {
			c.Write(reply)
		}
	}
}

// serveTCP answers length-prefixed queries on one TCP connection.
func (a *dnsAnswerer) serveTCP(ctx context.Context, c net.Conn) {
	defer c.Close()
	var hdr [2]byte
	buf := make([]byte, 1<<16)
	for {
		c.SetReadDeadline(time.Now().Add(dnsIdle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		reply := a.answer(ctx, buf[:n], dns.MaxMsgSize)
		if reply == nil {
			return
		}
		out := make([]byte, 2+len(reply))
		binary.BigEndian.PutUint16(out, uint16(len(reply)))
		copy(out[2:], reply)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// answer returns the wire reply to the query q, or nil when q is not a
// DNS query worth answering. size is the transport's limit.
func (a *dnsAnswerer) answer(ctx context.Context, q []byte, size int) []byte {
	var m dns.Msg
	if err := m.Unpack(q); err != nil || m.Response {
		return nil
	}
	if len(m.Question) != 1 || m.Opcode != dns.OpcodeQuery {
		return pack(reply(&m, dns.RcodeFormatError), size)
	}
	if o := m.IsEdns0(); o != nil && int(o.UDPSize()) > size {
		size = int(o.UDPSize())
	}
	qn := m.Question[0]
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()

	if qn.Qclass == dns.ClassINET && (qn.Qtype == dns.TypeA || qn.Qtype == dns.TypeAAAA) {
		return pack(a.lookup(ctx, &m), size)
	}
	return pack(a.forward(ctx, &m), size)
}

// lookup answers an A or AAAA query from ocnet's resolver.
func (a *dnsAnswerer) lookup(ctx context.Context, m *dns.Msg) *dns.Msg {
	qn := m.Question[0]
	addrs, err := a.res.LookupNetIP(ctx, qn.Name)
	switch {
	case errors.Is(err, dnsproxy.ErrNotFound):
		return reply(m, dns.RcodeNameError)
	case err != nil:
		a.log.Debug("dns lookup failed", "err", err)
		return reply(m, dns.RcodeServerFailure)
	}

	r := reply(m, dns.RcodeSuccess)
	hdr := dns.RR_Header{Name: qn.Name, Class: dns.ClassINET, Ttl: answerTTL}
	for _, ip := range addrs {
		switch {
		case qn.Qtype == dns.TypeA && ip.Is4():
			hdr.Rrtype = dns.TypeA
			r.Answer = append(r.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
		case qn.Qtype == dns.TypeAAAA && ip.Is6():
			hdr.Rrtype = dns.TypeAAAA
			r.Answer = append(r.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
		}
	}
	return r
}

// forward sends any other query, unchanged, to the side its name belongs
// to: the tunnel's first server through the tunnel, or the host's own.
func (a *dnsAnswerer) forward(ctx context.Context, m *dns.Msg) *dns.Msg {
	name := m.Question[0].Name
	var (
		conn net.Conn
		err  error
	)
	if a.policy.TunnelAllDNS || a.policy.TunnelName(strings.TrimSuffix(strings.ToLower(name), ".")) {
		if len(a.servers) == 0 || a.tunnel == nil {
			return reply(m, dns.RcodeServerFailure)
		}
		dst := netip.AddrPortFrom(a.servers[0], 53).String()
		conn, err = a.tunnel.DialContext(ctx, "udp", dst)
	} else {
		if len(a.host) == 0 {
			return reply(m, dns.RcodeServerFailure)
		}
		var d net.Dialer
		conn, err = d.DialContext(ctx, "udp", a.host[0].String())
	}
	if err != nil {
		return reply(m, dns.RcodeServerFailure)
	}
	defer conn.Close()

	r, err := exchange(ctx, conn, m)
	if err != nil {
		a.log.Debug("dns forward failed", "err", err)
		return reply(m, dns.RcodeServerFailure)
	}
	return r
}

// exchange sends m on a UDP conn and waits for the reply with its ID.
func exchange(ctx context.Context, conn net.Conn, m *dns.Msg) (*dns.Msg, error) {
	wire, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("tunmode: dns pack: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(wire); err != nil {
		return nil, fmt.Errorf("tunmode: dns forward: %w", err)
	}
	buf := make([]byte, dns.MaxMsgSize)
	for i := 0; i < 8; i++ { // skip strays, boundedly
		n, err := conn.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("tunmode: dns forward: %w", err)
		}
		var r dns.Msg
		if r.Unpack(buf[:n]) == nil && r.Id == m.Id {
			return &r, nil
		}
	}
	return nil, errors.New("tunmode: dns forward: no matching reply")
}

func reply(q *dns.Msg, rcode int) *dns.Msg {
	r := new(dns.Msg)
	r.SetRcode(q, rcode)
	r.RecursionAvailable = true
	return r
}

// pack encodes r for a transport of size bytes, truncating as DNS does.
func pack(r *dns.Msg, size int) []byte {
	if r == nil {
		return nil
	}
	r.Truncate(size)
	b, err := r.Pack()
	if err != nil {
		return nil
	}
	return b
}
