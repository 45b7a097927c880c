package netstack

import (
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// OutputFunc takes one outbound IP packet. frame[:headroom] is free for the
// caller's framing and frame[headroom:] is the packet. The frame is only
// valid during the call; the function may block, which is how a slow tunnel
// pushes back on the stack instead of dropping.
type OutputFunc func(frame []byte) error

// link is the stack's only NIC: a point-to-point link with no link-layer
// header, whose outbound side calls the datapath synchronously.
type link struct {
	out      OutputFunc
	headroom int
	frames   sync.Pool // of *[]byte, headroom + maxPacket bytes

	mu         sync.RWMutex
	mtu        uint32 // guarded by mu
	dispatcher stack.NetworkDispatcher

	// gro joins consecutive TCP segments of a flow before the stack sees
	// them, so TCP does its work, and sends its ACKs, per run of segments
	// rather than per packet. Inbound packets wait in it until flush.
	groMu  sync.Mutex
	gro    gro.GRO // guarded by groMu
	closed bool    // guarded by groMu; set by shut

	// outErrs counts packets the datapath refused; read by Stats.
	outErrs counter
}

// maxPacket bounds a single outbound packet; the stack never builds one
// larger than the MTU, and the MTU never exceeds the CSTP length field.
const maxPacket = 1 << 16

func newLink(mtu uint32, headroom int, out OutputFunc) *link {
	l := &link{out: out, headroom: headroom, mtu: mtu}
	l.gro.Init(true)
	l.frames.New = func() any {
		b := make([]byte, headroom+maxPacket)
		return &b
	}
	return l
}

// inject queues one inbound packet for the stack; the bytes are copied.
// The packet reaches the stack at the latest on the next flush.
func (l *link) inject(pkt []byte) {
	if len(pkt) == 0 || !l.IsAttached() {
		return
	}

	var proto tcpip.NetworkProtocolNumber
	switch header.IPVersion(pkt) {
	case header.IPv4Version:
		proto = header.IPv4ProtocolNumber
	case header.IPv6Version:
		proto = header.IPv6ProtocolNumber
	default:
		return
	}

	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{
		Payload: buffer.MakeWithData(pkt),
	})
	pb.NetworkProtocolNumber = proto
	l.groMu.Lock()
	if !l.closed {
		l.gro.Enqueue(pb)
	}
	l.groMu.Unlock()
	pb.DecRef()
}

// flush delivers every packet waiting in GRO.
func (l *link) flush() {
	l.groMu.Lock()
	if !l.closed {
		l.gro.Flush()
	}
	l.groMu.Unlock()
}

// shut delivers what GRO holds and stops deliveries, before the stack is
// closed. GRO hands packets to the stack under groMu, and the stack takes
// its own lock there; closing the stack takes that lock and then groMu
// (to detach the link). Without shut, a packet injected while the stack
// closed deadlocked both.
func (l *link) shut() {
	l.groMu.Lock()
	l.gro.Flush()
	l.closed = true
	l.groMu.Unlock()
}

// WritePackets implements stack.LinkEndpoint. It copies each packet behind
// the caller's headroom into a pooled frame and passes it on. A packet the
// datapath refuses (no channel up during a reconnect, a failed write) is
// counted and dropped, as a network drops it: reporting an error instead
// would close UDP endpoints for good, while TCP and DNS recover from loss.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	fp := l.frames.Get().(*[]byte)
	defer l.frames.Put(fp)
	frame := *fp

	n := 0
	for _, pkt := range pkts.AsSlice() {
		off := l.headroom + copyPacket(frame[l.headroom:], pkt)
		if err := l.out(frame[:off]); err != nil {
			l.outErrs.add(1)
		}
		n++
	}
	return n, nil
}

// copyPacket copies pkt's bytes into dst without building a slice of its
// views (AsSlices allocates one per packet).
func copyPacket(dst []byte, pkt *stack.PacketBuffer) int {
	views, skip := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		n += copy(dst[n:], b[skip:])
		skip = 0
	}
	return n
}

func (l *link) MTU() uint32 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.mtu
}

func (l *link) SetMTU(mtu uint32) {
	l.mu.Lock()
	l.mtu = mtu
	l.mu.Unlock()
}

func (l *link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
	l.groMu.Lock()
	l.gro.Dispatcher = d
	l.groMu.Unlock()
}

func (l *link) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

func (*link) MaxHeaderLength() uint16          { return 0 }
func (*link) LinkAddress() tcpip.LinkAddress   { return "" }
func (*link) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities says inbound checksums are already checked. For TCP that is
// true: GRO validates every segment it sees, and must be trusted to, since
// a merged packet's IP checksum is stale. Other packets are not checked
// again; the tunnel's AEAD or TLS record MAC already vouches for them.
func (*link) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}
func (*link) Wait()                                   {}
func (*link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }
func (*link) AddHeader(*stack.PacketBuffer)           {}
func (*link) ParseHeader(*stack.PacketBuffer) bool    { return true }
func (*link) Close()                                  {}
func (*link) SetOnCloseAction(func())                 {}
