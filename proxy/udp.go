package proxy

// SOCKS5 UDP ASSOCIATE (RFC 1928 section 7). One association is a relay
// socket bound next to the TCP control connection and lives as long as
// that connection. Stages, per association:
//
//	client --datagram+header--> relay socket (relayLoop, one goroutine)
//	    --> a connected UDP flow per destination, dialled through the
//	        Router (netstack UDP into the tunnel, a host socket direct)
//	    --> flowLoop (one goroutine per flow) reads answers, prepends the
//	        header naming the sender and writes them back to the client.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxUDPFlows bounds the destinations of one association; datagrams
	// to more are dropped.
	maxUDPFlows = 256

	// udpIdle ends a flow that has carried nothing either way this long.
	udpIdle = 2 * time.Minute

	// maxDatagram is the largest UDP payload plus the largest header.
	maxDatagram = 65535 + 3 + 1 + 16 + 2
)

// udpAssoc is one UDP ASSOCIATE relay.
type udpAssoc struct {
	r   *Router
	ctx context.Context // carries the app ID; ends with the association
	pc  *net.UDPConn
	log *slog.Logger
	wg  sync.WaitGroup // flowLoop goroutines

	// mu guards client (written only by relayLoop) and flows.
	mu     sync.Mutex
	client netip.AddrPort      // the client's IP; port 0 until the first datagram
	flows  map[string]*udpFlow // by destination as the client wrote it

	dropped atomic.Uint64 // datagrams refused or undeliverable
}

// udpFlow is the connected socket for one destination.
type udpFlow struct {
	conn net.Conn
	last atomic.Int64 // unix nanoseconds of the latest datagram either way
}

// socksUDP answers a UDP ASSOCIATE and relays until the control
// connection ends. want is the client's announced source, often 0.0.0.0:0.
func (s *Server) socksUDP(ctx context.Context, conn net.Conn, want string, log *slog.Logger) {
	peer, err1 := netip.ParseAddrPort(conn.RemoteAddr().String())
	local, err2 := netip.ParseAddrPort(conn.LocalAddr().String())
	if err1 != nil || err2 != nil {
		writeSOCKSReply(conn, repGeneralFailure, netip.AddrPort{})
		return
	}

	// Datagrams are accepted only from the control connection's host,
	// and from the announced port when the client gave one.
	client := netip.AddrPortFrom(peer.Addr().Unmap(), 0)
	if ap, err := netip.ParseAddrPort(want); err == nil {
		client = netip.AddrPortFrom(client.Addr(), ap.Port())
	}

	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		writeSOCKSReply(conn, repGeneralFailure, netip.AddrPort{})
		log.Warn("udp relay socket", "err", err)
		return
	}
	bnd := netip.MustParseAddrPort(pc.LocalAddr().String())
	if err := writeSOCKSReply(conn, repSucceeded, bnd); err != nil {
		pc.Close()
		return
	}
	conn.SetDeadline(time.Time{})

	actx, cancel := context.WithCancel(ctx)
	a := &udpAssoc{
		r: s.Router, ctx: actx, pc: pc, client: client,
		log: log, flows: make(map[string]*udpFlow),
	}
	log.Debug("udp associate", "client", conn.RemoteAddr(), "relay", bnd, "app", AppFrom(ctx))

	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		a.relayLoop()
	}()

	// The association lasts as long as the control connection (section 7);
	// the client sends nothing more on it.
	io.Copy(io.Discard, conn)

	cancel()
	pc.Close()
	<-relayDone
	a.closeFlows()
	a.wg.Wait()
	log.Debug("udp associate ended", "client", conn.RemoteAddr(), "dropped", a.dropped.Load())
}

// relayLoop reads the client's datagrams and sends each to its flow.
func (a *udpAssoc) relayLoop() {
	buf := make([]byte, maxDatagram)
	for {
		n, src, err := a.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed with the association
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if src.Addr() != a.client.Addr() ||
			(a.client.Port() != 0 && src.Port() != a.client.Port()) {
			a.dropped.Add(1)
			continue
		}
		if a.client.Port() == 0 {
			// The first datagram fixes the client's port when it gave none.
			a.mu.Lock()
			a.client = src
			a.mu.Unlock()
		}

		dst, payload, err := ParseSOCKSUDP(buf[:n])
		if err != nil {
			a.dropped.Add(1)
			continue
		}
		f := a.flow(dst)
		if f == nil {
			a.dropped.Add(1)
			continue
		}
		f.last.Store(time.Now().UnixNano())
		if _, err := f.conn.Write(payload); err != nil {
			a.dropped.Add(1)
		}
	}
}

// flow returns the flow to dst, dialling it on first use, or nil when it
// cannot be had.
//
// TODO: a slow name lookup for a new destination holds up the client's
// other datagrams for its duration (bounded by dialTimeout).
func (a *udpAssoc) flow(dst string) *udpFlow {
	a.mu.Lock()
	f, ok := a.flows[dst]
	n := len(a.flows)
	a.mu.Unlock()
	if ok {
		return f
	}
	if n >= maxUDPFlows {
		return nil
	}

	ctx, cancel := context.WithTimeout(a.ctx, dialTimeout)
	conn, err := a.r.DialContext(ctx, "udp", dst)
	cancel()
	if err != nil {
		a.log.Debug("udp flow failed", "dst", dst, "err", err)
		return nil
	}
	src, err := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err != nil {
		conn.Close()
		return nil
	}

	f = &udpFlow{conn: conn}
	f.last.Store(time.Now().UnixNano())
	a.mu.Lock()
	if a.ctx.Err() != nil {
		a.mu.Unlock()
		conn.Close()
		return nil
	}
	a.flows[dst] = f
	a.wg.Add(1)
	a.mu.Unlock()

	go a.flowLoop(dst, f, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()))
	return f
}

// flowLoop relays one destination's answers to the client, each behind a
// header naming src, until the flow idles out or the association ends.
func (a *udpAssoc) flowLoop(dst string, f *udpFlow, src netip.AddrPort) {
	defer a.wg.Done()
	defer a.drop(dst, f)

	hdr := AppendSOCKSUDPHeader(nil, src)
	out := make([]byte, maxDatagram)
	copy(out, hdr)
	for {
		f.conn.SetReadDeadline(time.Now().Add(udpIdle))
		n, err := f.conn.Read(out[len(hdr):])
		if err != nil {
			idle := time.Since(time.Unix(0, f.last.Load()))
			if isTimeout(err) && idle < udpIdle && a.ctx.Err() == nil {
				continue // the client sent recently; keep the flow
			}
			return
		}
		f.last.Store(time.Now().UnixNano())
		if _, err := a.pc.WriteToUDPAddrPort(out[:len(hdr)+n], a.replyAddr()); err != nil {
			a.dropped.Add(1)
		}
	}
}

// replyAddr is where answers go: the client's source as first seen.
func (a *udpAssoc) replyAddr() netip.AddrPort {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.client
}

// drop forgets and closes a flow.
func (a *udpAssoc) drop(dst string, f *udpFlow) {
	a.mu.Lock()
	if a.flows[dst] == f {
		delete(a.flows, dst)
	}
	a.mu.Unlock()
	f.conn.Close()
}

// closeFlows closes every flow so that their loops end.
func (a *udpAssoc) closeFlows() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, f := range a.flows {
		f.conn.Close()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
