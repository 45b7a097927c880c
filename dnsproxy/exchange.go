package dnsproxy

// One question goes to the tunnel's servers in order:
//
//  1. pack the query (EDNS0, 1232-byte UDP payload) once;
//  2. per server: send over UDP through the tunnel dialer and wait for the
//     reply with our ID; if it comes back truncated, ask again over TCP;
//  3. NOERROR and NXDOMAIN are answers and end the walk; SERVFAIL,
//     REFUSED, timeouts and dial errors move on to the next server.
//
// Framing is done here rather than by dns.Conn because dns.Conn picks
// UDP or TCP framing from the Go type of the connection, and a tunnel
// dialer's UDP connection need not be a net.PacketConn.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	// attemptTimeout bounds one exchange with one server over one
	// transport when the caller's context has no earlier deadline.
	attemptTimeout = 3 * time.Second

	// udpPayload is the EDNS0 buffer size we advertise: the DNS Flag Day
	// 2020 value, which fits the tunnel MTU without fragmentation.
	udpPayload = 1232

	// maxTTL caps how long an answer stays cached, so a changed record
	// is picked up within minutes even if its TTL is long.
	maxTTL = 5 * time.Minute
)

// errTruncated marks a UDP reply with the TC bit, to be retried over TCP.
var errTruncated = errors.New("truncated")

// dialFunc opens a connection to a DNS server: through the tunnel for the
// tunnel's servers, from the host for the local ones.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// exchange asks the tunnel's servers in order and returns the first
// usable reply.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(udpPayload, false)
	return r.exchangeWith(ctx, q, r.serverAddrs(), r.tunnel.DialContext)
}

func (r *Resolver) serverAddrs() []string {
	servers := r.view().servers
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.String()
	}
	return out
}

// exchangeWith asks servers in order, dialing with dial, and returns the
// first usable reply.
func (r *Resolver) exchangeWith(ctx context.Context, q *dns.Msg, servers []string,
	dial dialFunc) (*dns.Msg, error) {
	var errs []error
	for _, srv := range servers {
		msg, err := r.exchangeServer(ctx, q, srv, dial)
		if err == nil {
			return msg, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.log.Debug("dns server failed", "server", srv, "name", q.Question[0].Name,
			"type", dns.TypeToString[q.Question[0].Qtype], "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", srv, err))
	}
	return nil, fmt.Errorf("%w: %w", ErrServerFailed, errors.Join(errs...))
}

// exchangeServer asks one server over UDP, then over TCP if truncated.
func (r *Resolver) exchangeServer(ctx context.Context, q *dns.Msg, srv string,
	dial dialFunc) (*dns.Msg, error) {
	msg, err := roundTrip(ctx, "udp", q, srv, dial)
	if errors.Is(err, errTruncated) {
		msg, err = roundTrip(ctx, "tcp", q, srv, dial)
	}
	if err != nil {
		return nil, err
	}

	switch msg.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return msg, nil
	}
	return nil, fmt.Errorf("server answered %s", dns.RcodeToString[msg.Rcode])
}

// roundTrip sends q to srv over network ("udp" or "tcp") and reads the
// matching reply.
func roundTrip(ctx context.Context, network string, q *dns.Msg, srv string,
	dial dialFunc) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()

	wire, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}

	conn, err := dial(ctx, network, srv)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", network, err)
	}
	defer conn.Close()

	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var reply *dns.Msg
	if network == "udp" {
		reply, err = roundTripUDP(conn, q.Id, wire, deadline)
	} else {
		reply, err = roundTripTCP(conn, wire)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", network, err)
	}

	if reply.Id != q.Id || !sameQuestion(reply, q) {
		return nil, fmt.Errorf("%s: reply does not match the query", network)
	}
	if network == "udp" && reply.Truncated {
		return nil, errTruncated
	}
	return reply, nil
}

// udpResend is when an unanswered UDP query goes out once more within its
// attempt, as stub resolvers do: one datagram lost in the tunnel (its very
// first packets race the DTLS handover) costs a second, not the flow.
const udpResend = time.Second

// roundTripUDP writes one datagram, again after udpResend if nothing came
// back, and reads until a reply carrying id arrives or deadline passes;
// stray replies to earlier, timed-out queries are skipped.
func roundTripUDP(conn net.Conn, id uint16, wire []byte, deadline time.Time) (*dns.Msg, error) {
	if _, err := conn.Write(wire); err != nil {
		return nil, err
	}
	resend := time.Now().Add(udpResend)
	if resend.Before(deadline) {
		conn.SetReadDeadline(resend)
	} else {
		resend = time.Time{}
	}

	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		var ne net.Error
		if err != nil && !resend.IsZero() && errors.As(err, &ne) && ne.Timeout() {
			resend = time.Time{}
			conn.SetReadDeadline(deadline)
			if _, err := conn.Write(wire); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if n < 2 || binary.BigEndian.Uint16(buf) != id {
			continue
		}
		reply := new(dns.Msg)
		if err := reply.Unpack(buf[:n]); err != nil {
			return nil, fmt.Errorf("bad reply: %w", err)
		}
		return reply, nil
	}
}

// roundTripTCP writes the query with its two-byte length prefix
// (RFC 1035 section 4.2.2) and reads one prefixed reply.
func roundTripTCP(conn net.Conn, wire []byte) (*dns.Msg, error) {
	out := make([]byte, 2+len(wire))
	binary.BigEndian.PutUint16(out, uint16(len(wire)))
	copy(out[2:], wire)
	if _, err := conn.Write(out); err != nil {
		return nil, err
	}

	var hdr [2]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, err
	}

	reply := new(dns.Msg)
	if err := reply.Unpack(buf); err != nil {
		return nil, fmt.Errorf("bad reply: %w", err)
	}
	return reply, nil
}

// sameQuestion reports whether reply answers the question asked in q.
func sameQuestion(reply, q *dns.Msg) bool {
	if len(reply.Question) != 1 || len(q.Question) != 1 {
		return false
	}
	a, b := reply.Question[0], q.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}

// answerAddrs collects the addresses of type qtype for name from msg,
// following CNAMEs within the answer section, and returns the smallest
// TTL among the records used (capped at maxTTL).
func answerAddrs(msg *dns.Msg, name string, qtype uint16) ([]netip.Addr, time.Duration) {
	owners := map[string]bool{strings.ToLower(dns.Fqdn(name)): true}
	minTTL := uint32(maxTTL / time.Second)

	// Each pass can only add CNAME targets, so len(Answer) passes suffice
	// even for chains listed out of order.
	for range msg.Answer {
		grew := false
		for _, rr := range msg.Answer {
			c, ok := rr.(*dns.CNAME)
			owner := strings.ToLower(rr.Header().Name)
			target := ""
			if ok {
				target = strings.ToLower(c.Target)
			}
			if ok && owners[owner] && !owners[target] {
				owners[target] = true
				minTTL = min(minTTL, c.Hdr.Ttl)
				grew = true
			}
		}
		if !grew {
			break
		}
	}

	var addrs []netip.Addr
	for _, rr := range msg.Answer {
		if !owners[strings.ToLower(rr.Header().Name)] {
			continue
		}
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		}
		if rr.Header().Rrtype != qtype || ip == nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
			minTTL = min(minTTL, rr.Header().Ttl)
		}
	}
	return addrs, time.Duration(minTTL) * time.Second
}
