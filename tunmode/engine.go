package tunmode

// The engine's goroutines, started by Run and awaited before it returns:
//
//	readDevice:  TUN -> demux -> client.SendPacket (fast path) or host stack
//	writeDevice: diverted tunnel packets and host-stack replies -> TUN, batched
//	host stack:  gVisor's own goroutines plus one per terminated flow
//
// Divert runs on the client's datapath goroutines and only queues.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/proxy"
	"github.com/ocnet/ocnet/split"
)

// PortRange is the VPN stack's local port range in TUN mode: above the
// Linux default ephemeral range (32768-60999), so that the host's own
// flows never use it and inbound packets can be told apart by port. Pass
// it as client.Options.PortRange.
var PortRange = [2]uint16{61000, 65535}

// offset is the headroom left in front of each packet in device buffers;
// the Linux TUN wants room for its virtio-net header there.
const offset = 16

// bufSize is one device buffer: headroom plus the largest IP packet, so
// that the device may join segments into it (GRO).
const bufSize = offset + 1<<16

// queueLen bounds the packets waiting for the TUN writer.
const queueLen = 512

// ErrNotRunning is returned by Run when the Engine already ran.
var ErrNotRunning = errors.New("tunmode: engine already used")

// Options say what Run answers itself.
type Options struct {
	// DNS are the resolver addresses whose port 53 ocnet answers itself;
	// nil means the tunnel's DNS servers, which is what the host
	// configuration installs as resolvers.
	DNS []netip.Addr

	// HostDNS are the host's own resolvers, read before the host
	// configuration replaced them; names outside the tunnel's domains are
	// asked of them, directly. Empty means such names fail.
	HostDNS []netip.AddrPort

	// Direct dials the flows that reach the TUN but that the policy sends
	// direct (a user's --exclude inside the headend's routes). It must
	// not route back into the TUN: see BoundDialer. Nil means a plain
	// dialer, which loops for any destination the TUN routes.
	Direct proxy.Dialer
}

// Engine is the TUN front end of one client. Create it before the client,
// hand Divert and PortRange to client.Options, then call Run with the
// device once the client is up.
type Engine struct {
	log *slog.Logger

	running atomic.Bool
	out     chan *[]byte  // packets for the TUN, in pooled buffers
	stop    chan struct{} // closed when Run is leaving
	used    atomic.Bool
	run     atomic.Pointer[running] // while Run runs

	bufs sync.Pool // of *[]byte, bufSize bytes

	// Counters, read by Stats.
	fast, hosted, diverted, dropped atomic.Uint64
}

// Stats count packets since the Engine started.
type Stats struct {
	FastPath  uint64 // TUN -> tunnel without a stack
	HostStack uint64 // TUN -> the host-facing stack
	Diverted  uint64 // tunnel -> TUN
	Dropped   uint64 // malformed, or refused by the device or the tunnel
}

// New returns an Engine that logs state changes to log (nil discards);
// it does no I/O.
func New(log *slog.Logger) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		log:  log.With("sub", "tun"),
		out:  make(chan *[]byte, queueLen),
		stop: make(chan struct{}),
	}
	e.bufs.New = func() any {
		b := make([]byte, bufSize)
		return &b
	}
	return e
}

// Stats returns the packet counters; safe at any time.
func (e *Engine) Stats() Stats {
	return Stats{
		FastPath: e.fast.Load(), HostStack: e.hosted.Load(),
		Diverted: e.diverted.Load(), Dropped: e.dropped.Load(),
	}
}

// Divert is the client's Divert hook: it keeps an inbound tunnel packet
// for the TUN unless it belongs to a flow of the VPN's own stack: TCP or
// UDP to a port in PortRange, or an ICMP error quoting a packet sent from
// one. pkt is copied. Before Run it keeps nothing.
func (e *Engine) Divert(pkt []byte) bool {
	if !e.running.Load() {
		return false
	}
	k, ok := parseFlow(pkt)
	if !ok {
		return false // the stack counts what is malformed
	}
	if k.ports && inPortRange(k.dport) {
		return false
	}
	if inner, ok := icmpErrorFlow(pkt, k); ok && inPortRange(inner.sport) {
		return false // an error about a packet the VPN stack sent
	}
	if e.queue(pkt) {
		e.diverted.Add(1)
	}
	return true
}

func inPortRange(port uint16) bool {
	return port >= PortRange[0] && port <= PortRange[1]
}

// queue copies pkt into a buffer for the TUN writer. It blocks while the
// queue is full, which pushes back on the tunnel rather than dropping,
// and gives up once Run is leaving.
func (e *Engine) queue(pkt []byte) bool {
	if len(pkt) > bufSize-offset {
		e.dropped.Add(1)
		return false
	}
	bp := e.bufs.Get().(*[]byte)
	*bp = (*bp)[:offset+copy((*bp)[offset:cap(*bp)], pkt)]
	select {
	case e.out <- bp:
		return true
	case <-e.stop:
		e.put(bp)
		e.dropped.Add(1)
		return false
	}
}

func (e *Engine) put(bp *[]byte) {
	*bp = (*bp)[:cap(*bp)]
	e.bufs.Put(bp)
}

// Run moves packets between dev and c until ctx ends or the device
// fails. The device stays open across reconnects of the client: while the
// tunnel is down, fast-path packets are dropped and the host's TCP
// retransmits them. Run closes dev before it returns: that is what ends a
// blocked read.
func (e *Engine) Run(ctx context.Context, dev tun.Device, c *client.Client, o Options) error {
	if e.used.Swap(true) {
		return ErrNotRunning
	}
	mtu := c.MTU()
	hs, err := newHostStack(ctx, hostStackConfig{
		MTU:     mtu,
		Router:  hostRouter(c.Router(), o.Direct),
		DNS:     dnsAddrs(o, c),
		HostDNS: o.HostDNS,
		Config:  c.Config(),
		Out:     func(pkt []byte) { e.queue(pkt) },
		Logger:  e.log,
	})
	if err != nil {
		return err
	}
	defer hs.close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errc <- e.writeDevice(ctx, dev)
	}()
	go func() {
		defer wg.Done()
		errc <- e.readDevice(dev, c, hs)
	}()
	e.run.Store(&running{dev: dev, c: c, hs: hs, o: o, mtu: mtu})
	e.running.Store(true)
	e.log.Info("tun up", "mtu", mtu, "batch", dev.BatchSize(), "dns", hs.dnsAddrs())

	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
	}
	e.running.Store(false)
	e.run.Store(nil)
	close(e.stop)
	cancel()
	dev.Close() // ends the blocked read
	wg.Wait()
	return err
}

// hostRouter is the client's Router with the host stack's own direct
// dialer: the client's dials direct through the host's routes, and those
// lead into the TUN for the flows that come out of it.
func hostRouter(r *proxy.Router, direct proxy.Dialer) *proxy.Router {
	return &proxy.Router{
		Policy:   r.CurrentPolicy(),
		Resolver: r.Resolver,
		Tunnel:   r.Tunnel,
		Direct:   direct,
		Gate:     r.Gate,
		Logger:   r.Logger,
	}
}

func dnsAddrs(o Options, c *client.Client) []netip.Addr {
	if o.DNS != nil {
		return o.DNS
	}
	return c.Config().DNS
}

// readDevice reads batches from the TUN and sends each packet on its way.
func (e *Engine) readDevice(dev tun.Device, c *client.Client, hs *hostStack) error {
	n := max(dev.BatchSize(), 1)
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	for {
		got, err := dev.Read(bufs, sizes, offset)
		pol := c.Router().CurrentPolicy() // a reconnect may have replaced it
		for i := range got {
			e.route(bufs[i][offset:offset+sizes[i]], c, pol, hs)
		}
		hs.flush()
		if err != nil {
			if errors.Is(err, tun.ErrTooManySegments) {
				e.dropped.Add(1)
				continue
			}
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("tunmode: read: %w", err)
		}
	}
}

// route is the demux for one packet from the host.
func (e *Engine) route(pkt []byte, c *client.Client, pol *split.Policy, hs *hostStack) {
	k, ok := parseFlow(pkt)
	switch {
	case !ok || !k.dst.IsGlobalUnicast():
		e.dropped.Add(1) // link-local, multicast: nothing for the tunnel
	case hs.isDNS(k):
		e.hosted.Add(1)
		hs.inject(pkt)
	case pol == nil || decide(pol, k.dst) == split.Tunnel:
		if err := c.SendPacket(pkt); err != nil {
			e.dropped.Add(1)
			return
		}
		e.fast.Add(1)
	default:
		e.hosted.Add(1)
		hs.inject(pkt)
	}
}

// decide is the policy's verdict on an address. A refused destination
// goes to the host stack like a direct one, where the Router refuses the
// flow with a reset; Policy.Route would send it into the tunnel.
func decide(pol *split.Policy, dst netip.Addr) split.Decision {
	d, _ := pol.Decide(split.Flow{Addr: dst})
	return d
}

// writeDevice writes queued packets to the TUN, as many per call as are
// waiting, so the device can join TCP segments (GRO) for the host.
func (e *Engine) writeDevice(ctx context.Context, dev tun.Device) error {
	max := max(dev.BatchSize(), 1)
	batch := make([]*[]byte, 0, max)
	bufs := make([][]byte, 0, max)
	for {
		select {
		case bp := <-e.out:
			batch = append(batch, bp)
		case <-ctx.Done():
			return nil
		}
	fill:
		for len(batch) < max {
			select {
			case bp := <-e.out:
				batch = append(batch, bp)
			default:
				break fill
			}
		}

		bufs = bufs[:0]
		for _, bp := range batch {
			bufs = append(bufs, *bp)
		}
		_, err := dev.Write(bufs, offset)
		for _, bp := range batch {
			e.put(bp)
		}
		batch = batch[:0]
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			// A refused packet (bad checksum offload, device down for a
			// moment) must not end the front end; count it.
			e.dropped.Add(1)
		}
	}
}
