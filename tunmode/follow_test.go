package tunmode

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/internal/fakehead"
	"github.com/ocnet/ocnet/session"
)

// fakeDev is a TUN device in memory: the test writes what the host sends
// into in and reads what the engine wrote from out.
type fakeDev struct {
	in, out chan []byte
	mtu     atomic.Int64
	closed  chan struct{}
	once    sync.Once
}

func newFakeDev(mtu int) *fakeDev {
	d := &fakeDev{in: make(chan []byte), out: make(chan []byte, 256),
		closed: make(chan struct{})}
	d.mtu.Store(int64(mtu))
	return d
}

func (d *fakeDev) File() *os.File { return nil }

func (d *fakeDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-d.in:
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

func (d *fakeDev) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		select {
		case d.out <- append([]byte(nil), b[offset:]...):
		default: // the test is not listening: lost, as on a real link
		}
	}
	return len(bufs), nil
}

func (d *fakeDev) MTU() (int, error)        { return int(d.mtu.Load()), nil }
func (d *fakeDev) SetMTU(mtu int) error     { d.mtu.Store(int64(mtu)); return nil }
func (d *fakeDev) Name() (string, error)    { return "fake0", nil }
func (d *fakeDev) Events() <-chan tun.Event { return nil }
func (d *fakeDev) BatchSize() int           { return 1 }
func (d *fakeDev) Close() error             { d.once.Do(func() { close(d.closed) }); return nil }

// udp4 builds an IPv4 UDP packet with valid checksums.
func udp4(src, dst netip.AddrPort, payload []byte) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(pkt[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(),
		Length: uint16(header.UDPMinimumSize + len(payload))})
	copy(u.Payload(), payload)
	return pkt // UDP checksum 0: none, which IPv4 allows
}

// tcpSYN builds an IPv4 TCP SYN; only the demux looks at it.
func tcpSYN(src, dst netip.AddrPort) []byte {
	p := ipv4Packet(6, src.Addr().String(), dst.Addr().String(), src.Port(), dst.Port(), 0)
	p = append(p, make([]byte, 12)...)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	return p
}

type refuse struct{}

func (refuse) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("refused in the test")
}

// TestTUNFollowsReconnect: the tunnel comes back with another DNS server,
// MTU and routes. The TUN answers port 53 on the new server's address
// through the new server, the device and host stack take the new MTU, and
// a destination the new routes include takes the fast path.
func TestTUNFollowsReconnect(t *testing.T) {
	h, err := fakehead.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	dns0 := []netip.Addr{fakehead.CorpDNS[0]}
	h.DNS.Store(&dns0)
	h.SplitDNS.Store(&[]string{"corp.example"})

	e := New(nil)
	reconnected := make(chan *session.Config, 1)
	c := startClient(t, h, client.Options{
		Divert:    e.Divert,
		PortRange: PortRange,
		OnReconnect: func(cfg *session.Config) {
			if err := e.Reconfigure(cfg); err != nil {
				t.Errorf("Reconfigure: %v", err)
			}
			reconnected <- cfg
		},
	})

	dev := newFakeDev(c.MTU())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, dev, c, Options{Direct: refuse{}}) }()
	t.Cleanup(func() { cancel(); <-done })
	for e.run.Load() == nil {
		time.Sleep(time.Millisecond)
	}

	host := netip.AddrPortFrom(c.Config().Address.Addr(), 40000)
	outside := netip.MustParseAddrPort("198.18.121.5:80")
	if got := ask(t, dev, host, fakehead.CorpDNS[0], "a.corp.example."); got != dns0[0] {
		t.Fatalf("a.corp.example = %v, want %v", got, dns0[0])
	}
	checkAsked(t, h, "a.corp.example.", fakehead.CorpDNS[0])
	before := e.Stats()
	dev.in <- tcpSYN(host, outside)
	waitStats(t, e, func(s Stats) bool { return s.HostStack > before.HostStack })

	dns1 := []netip.Addr{fakehead.CorpDNS[1]}
	routes := []netip.Prefix{netip.MustParsePrefix("198.18.120.0/24"),
		netip.MustParsePrefix("198.18.121.0/24")}
	h.DNS.Store(&dns1)
	h.Routes.Store(&routes)
	h.MTU.Store(1300)
	h.DropTunnel()
	select {
	case <-reconnected:
	case <-time.After(15 * time.Second):
		t.Fatal("no reconnect")
	}

	if m, _ := dev.MTU(); m != 1300 {
		t.Errorf("device MTU %d, want 1300", m)
	}
	if m := e.run.Load().hs.ep.MTU(); m != 1300 {
		t.Errorf("host stack MTU %d, want 1300", m)
	}
	if got := ask(t, dev, host, fakehead.CorpDNS[1], "b.corp.example."); got != dns1[0] {
		t.Fatalf("b.corp.example = %v, want %v", got, dns1[0])
	}
	checkAsked(t, h, "b.corp.example.", fakehead.CorpDNS[1])
	before = e.Stats()
	dev.in <- tcpSYN(host, outside)
	waitStats(t, e, func(s Stats) bool { return s.FastPath > before.FastPath })
}

// startClient logs in to h and starts a client with o's hooks.
func startClient(t *testing.T, h *fakehead.Headend, o client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cookie, err := h.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o.URL, o.TLS, o.Cookie, o.NoDTLS, o.Reauth = h.URL(), h.TLS(), cookie, true, h.Login
	c, err := client.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ask sends an A question for name from host to server:53 through the
// device and returns the address in the reply.
func ask(t *testing.T, dev *fakeDev, host netip.AddrPort, server netip.Addr,
	name string) netip.Addr {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	wire, _ := q.Pack()
	dev.in <- udp4(host, netip.AddrPortFrom(server, 53), wire)

	deadline := time.After(10 * time.Second)
	for {
		select {
		case pkt := <-dev.out:
			ip := header.IPv4(pkt)
			if len(pkt) < header.IPv4MinimumSize+header.UDPMinimumSize ||
				ip.TransportProtocol() != header.UDPProtocolNumber {
				continue
			}
			u := header.UDP(ip.Payload())
			if u.DestinationPort() != host.Port() || u.SourcePort() != 53 {
				continue
			}
			var r dns.Msg
			if err := r.Unpack(u.Payload()); err != nil || r.Id != q.Id {
				continue
			}
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					addr, _ := netip.AddrFromSlice(a.A.To4())
					return addr
				}
			}
			t.Fatalf("%s: reply %s without an address", name, dns.RcodeToString[r.Rcode])
		case <-deadline:
			t.Fatalf("%s: no reply from %v through the TUN", name, server)
		}
	}
}

// checkAsked says name reached only server, and from the VPN's own stack
// (a port in PortRange): the TUN answered it, not the fast path.
func checkAsked(t *testing.T, h *fakehead.Headend, name string, server netip.Addr) {
	t.Helper()
	n := 0
	for _, q := range h.DNSQueries() {
		if q.Name != name {
			continue
		}
		n++
		if q.Server != server || !inPortRange(q.From.Port()) {
			t.Errorf("%s asked of %v from %v, want %v from the VPN stack",
				name, q.Server, q.From, server)
		}
	}
	if n == 0 {
		t.Errorf("%s never reached %v", name, server)
	}
}

func waitStats(t *testing.T, e *Engine, ok func(Stats) bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		if ok(e.Stats()) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Errorf("counters %+v", e.Stats())
}
