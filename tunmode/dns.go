package tunmode

// DNS sent to the resolver the host configuration installs is answered by
// dnsproxy's Resolver.Answer, the same code that serves --dns-listen: a
// tunnel name goes to the tunnel's servers through the tunnel, any other
// name to the host's own resolvers, read before the script replaced them.
// This file only carries messages between the host stack's flows and
// Answer.

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/proxy"
	"github.com/ocnet/ocnet/session"
)

// newDNSResolver returns the resolver whose answers the host gets: the
// client's, with its policy, servers, tunnel and cache, and following its
// reconfiguration after a reconnect, but asking the host's original
// resolvers for other names. The client's own resolver asks the host's
// current resolv.conf, which now points back at the TUN.
func newDNSResolver(r *proxy.Router, cfg *session.Config, host []netip.AddrPort,
	log *slog.Logger) *dnsproxy.Resolver {
	if r.Resolver != nil {
		return r.Resolver.WithLocal(hostResolver(host))
	}
	pol := r.CurrentPolicy()
	if pol == nil {
		pol = client.PolicyFrom(cfg)
	}
	return dnsproxy.New(dnsproxy.Options{
		Policy:        pol,
		Servers:       cfg.DNS,
		SearchDomains: cfg.DefaultDomains,
		Tunnel:        r.Tunnel,
		Local:         hostResolver(host),
		Logger:        log,
	})
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

// answer returns the wire reply to one query, or nil when msg is not a
// query at all (a stray reply, garbage). maxSize is the transport's limit:
// 512 bytes or the client's EDNS0 size over UDP, 64 KiB over TCP.
func answer(ctx context.Context, res *dnsproxy.Resolver, msg []byte, udp bool) []byte {
	var req dns.Msg
	if err := req.Unpack(msg); err != nil || req.Response {
		return nil
	}
	resp := res.Answer(ctx, &req)
	if udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = max(int(o.UDPSize()), dns.MinMsgSize)
		}
		resp.Truncate(size)
	}
	out, err := resp.Pack()
	if err != nil {
		return nil
	}
	return out
}

// serveDNSUDP answers queries on one UDP flow until it idles.
func serveDNSUDP(ctx context.Context, res *dnsproxy.Resolver, c net.Conn) {
	buf := make([]byte, dns.MaxMsgSize)
	for {
		c.SetReadDeadline(time.Now().Add(dnsIdle))
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if reply := answer(ctx, res, buf[:n], true); reply != nil {
			c.Write(reply)
		}
	}
}

// serveDNSTCP answers length-prefixed queries on one TCP connection.
func serveDNSTCP(ctx context.Context, res *dnsproxy.Resolver, c net.Conn) {
	defer c.Close()
	var hdr [2]byte
	buf := make([]byte, dns.MaxMsgSize)
	for {
		c.SetReadDeadline(time.Now().Add(dnsIdle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		reply := answer(ctx, res, buf[:n], false)
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
