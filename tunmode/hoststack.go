package tunmode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/proxy"
	"github.com/ocnet/ocnet/session"
)

// Bounds for terminated flows.
const (
	dialTimeout = 15 * time.Second
	udpIdle     = 60 * time.Second
	dnsIdle     = 10 * time.Second
	maxTCPQueue = 1024 // half-open host connections waiting for a dial
)

const hostNIC = 1

type hostStackConfig struct {
	MTU     int
	Router  *proxy.Router
	DNS     []netip.Addr
	HostDNS []netip.AddrPort
	Config  *session.Config
	Out     func(pkt []byte) // a reply for the host; pkt valid during the call
	Logger  *slog.Logger
}

// hostStack is the gVisor stack facing the host: it accepts any flow the
// demux hands it (promiscuous, and answering from whatever address the
// host dialled), answers DNS itself and dials everything else through the
// Router.
type hostStack struct {
	s      *stack.Stack
	ep     *channel.Endpoint
	router *proxy.Router
	dns    atomic.Pointer[[]netip.Addr] // resolver addresses answered here
	res    *dnsproxy.Resolver           // answers the host's DNS
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newHostStack(ctx context.Context, c hostStackConfig) (*hostStack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)

	ep := channel.New(queueLen, uint32(c.MTU), "")
	if err := s.CreateNIC(hostNIC, ep); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("tunmode: host stack NIC: %v", err)
	}
	// Promiscuous: take packets for any address. Spoofing: answer from
	// the address the host dialled, not from one of our own.
	s.SetPromiscuousMode(hostNIC, true)
	s.SetSpoofing(hostNIC, true)
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: hostNIC},
		{Destination: header.IPv6EmptySubnet, NIC: hostNIC},
	})

	hctx, cancel := context.WithCancel(ctx)
	h := &hostStack{
		s: s, ep: ep, router: c.Router, log: c.Logger,
		res: newDNSResolver(c.Router, c.Config, c.HostDNS, c.Logger),
		ctx: hctx, cancel: cancel,
	}
	h.setDNS(c.DNS)
	tf := tcp.NewForwarder(s, 0, maxTCPQueue, h.acceptTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(s, h.acceptUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)

	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.output(c.Out)
	}()
	return h, nil
}

// isDNS says whether the host sent k to a resolver address ocnet answers.
func (h *hostStack) isDNS(k flowKey) bool {
	return k.ports && h.isDNSAddr(netip.AddrPortFrom(k.dst, k.dport))
}

func (h *hostStack) isDNSAddr(ap netip.AddrPort) bool {
	return ap.Port() == 53 && slices.Contains(h.dnsAddrs(), ap.Addr())
}

// inject hands one packet from the host to the stack; pkt is copied.
func (h *hostStack) inject(pkt []byte) {
	proto := header.IPv4ProtocolNumber
	if pkt[0]>>4 == 6 {
		proto = header.IPv6ProtocolNumber
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{
		Payload: buffer.MakeWithData(pkt),
	})
	h.ep.InjectInbound(proto, pb)
	pb.DecRef()
}

// flush is a no-op: the channel endpoint delivers at once. It marks where
// a batching link would deliver.
func (h *hostStack) flush() {}

// output moves the stack's packets to the host until the stack closes.
func (h *hostStack) output(out func([]byte)) {
	buf := make([]byte, 0, 1<<16)
	for {
		pb := h.ep.ReadContext(h.ctx)
		if pb == nil {
			return
		}
		buf = buf[:0]
		for _, v := range pb.AsSlices() {
			buf = append(buf, v...)
		}
		pb.DecRef()
		out(buf)
	}
}

func (h *hostStack) close() {
	h.cancel()
	h.ep.Close()
	h.s.Close()
	h.wg.Wait()
	h.s.Wait()
}

func addrOf(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// acceptTCP terminates one TCP flow from the host: DNS is answered here,
// anything else is dialled through the Router first, so that a flow that
// cannot be connected is refused with a reset, as the host would expect.
func (h *hostStack) acceptTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst := addrOf(id.LocalAddress, id.LocalPort)

	var up net.Conn
	if !h.isDNSAddr(dst) {
		ctx, cancel := context.WithTimeout(h.ctx, dialTimeout)
		c, err := h.router.DialContext(ctx, "tcp", dst.String())
		cancel()
		if err != nil {
			r.Complete(true)
			return
		}
		up = c
	}

	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		if up != nil {
			up.Close()
		}
		return
	}
	r.Complete(false)
	down := gonet.NewTCPConn(&wq, ep)

	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if up == nil {
			serveDNSTCP(h.ctx, h.res, down)
			return
		}
		splice(h.ctx, down, up)
	}()
}

// splice copies both ways until both directions end or ctx does.
func splice(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	half := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go half(a, b)
	go half(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}

// acceptUDP terminates one UDP flow from the host.
func (h *hostStack) acceptUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	dst := addrOf(id.LocalAddress, id.LocalPort)

	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		return
	}
	down := gonet.NewUDPConn(&wq, ep)

	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer down.Close()
		if h.isDNSAddr(dst) {
			serveDNSUDP(h.ctx, h.res, down)
			return
		}
		h.relayUDP(down, dst)
	}()
}

// relayUDP carries one UDP flow through the Router until it idles.
func (h *hostStack) relayUDP(down *gonet.UDPConn, dst netip.AddrPort) {
	ctx, cancel := context.WithTimeout(h.ctx, dialTimeout)
	up, err := h.router.DialContext(ctx, "udp", dst.String())
	cancel()
	if err != nil {
		return
	}
	defer up.Close()
	stop := context.AfterFunc(h.ctx, func() { up.Close(); down.Close() })
	defer stop()

	go func() {
		buf := make([]byte, 1<<16)
		for {
			up.SetReadDeadline(time.Now().Add(udpIdle))
			n, err := up.Read(buf)
			if err != nil {
				down.Close()
				return
			}
			down.Write(buf[:n])
		}
	}()
	buf := make([]byte, 1<<16)
	for {
		down.SetReadDeadline(time.Now().Add(udpIdle))
		n, err := down.Read(buf)
		if err != nil {
			return
		}
		if _, err := up.Write(buf[:n]); err != nil {
			return
		}
	}
}
