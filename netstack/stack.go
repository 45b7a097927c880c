package netstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Config is what the stack needs from the tunnel.
type Config struct {
	// Addrs are the tunnel addresses the headend assigned (IPv4 and/or
	// IPv6); flows leave from them.
	Addrs []netip.Prefix

	// MTU is the largest IP packet the active channel carries.
	MTU int

	// Headroom is how many bytes the output function wants free in front
	// of each packet for its own framing.
	Headroom int

	// PortRange, when set, is the range the stack picks its local ports
	// from. TUN mode gives the stack a range the host never uses, so that
	// inbound packets can be told apart by destination port.
	PortRange [2]uint16

	Logger *slog.Logger
}

// ErrNoAddress is returned by New when the headend assigned no address.
var ErrNoAddress = errors.New("netstack: no tunnel address")

const nicID = 1

// Stack is a gVisor stack bound to one tunnel. It is safe for concurrent
// use; Close releases it.
type Stack struct {
	s     *stack.Stack
	link  *link
	addrs []netip.Prefix
	log   *slog.Logger

	injected counter
}

// New builds a stack with c's addresses and MTU whose outbound packets go
// to out. out is called from the stack's goroutines, possibly concurrently.
func New(c Config, out OutputFunc) (*Stack, error) {
	if len(c.Addrs) == 0 {
		return nil, ErrNoAddress
	}
	if c.MTU < 576 || c.MTU > maxPacket-1 {
		return nil, fmt.Errorf("netstack: MTU %d out of range", c.MTU)
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	s := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocol, ipv6.NewProtocol,
		},
		TransportProtocols: []stack.TransportProtocolFactory{
			tcp.NewProtocol, udp.NewProtocol,
			icmp.NewProtocol4, icmp.NewProtocol6,
		},
		HandleLocal: false,
	})
	if err := tuneTCP(s); err != nil {
		s.Destroy()
		return nil, err
	}

	if lo, hi := c.PortRange[0], c.PortRange[1]; lo != 0 {
		if err := s.SetPortRange(lo, hi); err != nil {
			s.Destroy()
			return nil, fmt.Errorf("netstack: port range %d-%d: %v", lo, hi, err)
		}
	}

	l := newLink(uint32(c.MTU), c.Headroom, out)
	if err := s.CreateNIC(nicID, l); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("netstack: create NIC: %v", err)
	}

	var routes []tcpip.Route
	for _, p := range c.Addrs {
		pa := tcpip.ProtocolAddress{
			Protocol:          protoOf(p.Addr()),
			AddressWithPrefix: tcpip.AddrFromSlice(p.Addr().AsSlice()).WithPrefix(),
		}
		err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{})
		if err != nil {
			s.Destroy()
			return nil, fmt.Errorf("netstack: add address %v: %v", p.Addr(), err)
		}
		routes = append(routes, defaultRoute(p.Addr()))
	}
	// Every destination handed to the stack belongs to the tunnel: the
	// split decision was made before the dial.
	s.SetRouteTable(routes)

	return &Stack{s: s, link: l, addrs: c.Addrs, log: log}, nil
}

// tuneTCP sets the options that matter for a tunnel-backed stack: SACK on,
// buffers that auto-tune from small (idle flows stay cheap) to large.
func tuneTCP(s *stack.Stack) error {
	opts := []tcpip.SettableTransportProtocolOption{
		ptr(tcpip.TCPSACKEnabled(true)),
		ptr(tcpip.TCPModerateReceiveBufferOption(true)),
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 128 << 10, Max: 8 << 20},
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 128 << 10, Max: 6 << 20},
	}
	for _, o := range opts {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("netstack: TCP option %T: %v", o, err)
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func protoOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

func defaultRoute(a netip.Addr) tcpip.Route {
	n := 16
	if a.Is4() {
		n = 4
	}
	zero := tcpip.AddrFromSlice(make([]byte, n))
	sub, _ := tcpip.NewSubnet(zero, tcpip.MaskFromBytes(make([]byte, n)))
	return tcpip.Route{Destination: sub, NIC: nicID}
}

// Inject queues one inbound IP packet for the stack. The stack copies it,
// so the caller keeps pkt. Packets of an unknown IP version are dropped.
// Queued packets reach the stack at the latest on Flush: call it after
// each batch, before waiting for more input.
func (s *Stack) Inject(pkt []byte) {
	s.injected.add(1)
	s.link.inject(pkt)
}

// Flush delivers the packets Inject queued.
func (s *Stack) Flush() { s.link.flush() }

// SetMTU changes the largest packet the stack will send, for example when
// data moves to a channel with more overhead.
func (s *Stack) SetMTU(mtu int) { s.link.SetMTU(uint32(mtu)) }

// Addrs returns the tunnel addresses the stack holds.
func (s *Stack) Addrs() []netip.Prefix { return s.addrs }

// DialContext opens a TCP or UDP flow through the tunnel. addr must be an
// IP literal with a port: names are resolved, and the flow decided, before
// a dial reaches the stack.
func (s *Stack) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("netstack: dial %s: want IP:port: %w", addr, err)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	fa := tcpip.FullAddress{
		NIC:  nicID,
		Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()),
		Port: ap.Port(),
	}
	proto := protoOf(ap.Addr())

	switch network {
	case "tcp", "tcp4", "tcp6":
		c, err := gonet.DialContextTCP(ctx, s.s, fa, proto)
		if err != nil {
			return nil, fmt.Errorf("netstack: dial tcp %s: %w", addr, err)
		}
		return c, nil
	case "udp", "udp4", "udp6":
		c, err := gonet.DialUDP(s.s, nil, &fa, proto)
		if err != nil {
			return nil, fmt.Errorf("netstack: dial udp %s: %w", addr, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("netstack: dial %s: unsupported network %q", addr, network)
}

// ListenTCP accepts TCP flows to one of the stack's addresses. ocnet's
// own stack only dials; in-process test headends use this to play the
// corporate server.
func (s *Stack) ListenTCP(ap netip.AddrPort) (net.Listener, error) {
	fa := tcpip.FullAddress{
		NIC:  nicID,
		Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()),
		Port: ap.Port(),
	}
	ln, err := gonet.ListenTCP(s.s, fa, protoOf(ap.Addr()))
	if err != nil {
		return nil, fmt.Errorf("netstack: listen %v: %w", ap, err)
	}
	return ln, nil
}

// ListenUDP receives UDP datagrams to one of the stack's addresses, for
// in-process test headends like ListenTCP.
func (s *Stack) ListenUDP(ap netip.AddrPort) (net.PacketConn, error) {
	fa := tcpip.FullAddress{
		NIC:  nicID,
		Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()),
		Port: ap.Port(),
	}
	c, err := gonet.DialUDP(s.s, &fa, nil, protoOf(ap.Addr()))
	if err != nil {
		return nil, fmt.Errorf("netstack: listen udp %v: %w", ap, err)
	}
	return c, nil
}

// Stats are the stack's packet counters.
type Stats struct {
	Injected       uint64 `json:"injected"`         // inbound packets handed to the stack
	OutDropped     uint64 `json:"out_dropped"`      // outbound packets the datapath refused
	TCPRetransmits uint64 `json:"tcp_retransmits"`  // segments TCP sent again
	TCPBadSegments uint64 `json:"tcp_bad_segments"` // inbound segments TCP refused
	IPInvalid      uint64 `json:"ip_invalid"`       // inbound packets that were not valid IP
}

// Stats returns a snapshot of the counters.
func (s *Stack) Stats() Stats {
	st := s.s.Stats()
	return Stats{
		Injected:       s.injected.load(),
		OutDropped:     s.link.outErrs.load(),
		TCPRetransmits: st.TCP.Retransmits.Value(),
		TCPBadSegments: st.TCP.InvalidSegmentsReceived.Value(),
		IPInvalid:      st.IP.MalformedPacketsReceived.Value(),
	}
}

// Close tears the stack down; open flows are reset. Packets injected
// meanwhile, or later, are dropped.
func (s *Stack) Close() {
	s.link.shut()
	s.s.Close()
	s.s.Wait()
}

// counter is a packet counter safe for concurrent use.
type counter struct{ v atomic.Uint64 }

func (c *counter) add(n uint64)   { c.v.Add(n) }
func (c *counter) load() uint64   { return c.v.Load() }
func (c *counter) String() string { return strconv.FormatUint(c.load(), 10) }
