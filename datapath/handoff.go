package datapath

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// HandoffConn is the UDP socket of a DTLS association while pion runs the
// handshake over it, and after: Detach takes the socket away from pion so
// the record layer owns it, with no datagram lost to pion's reader.
//
// The headend sends data as soon as its side of the handshake is done,
// which can be before Detach: pion would take those records into a
// buffer nobody reads, and the first packets of the tunnel (typically a
// DNS answer) would vanish. Application-data records never reach pion:
// they are kept for the record layer, in order.
//
// It also works around a pion flight-3 bug (protocol.md §4.2): when a
// headend sends ServerHello and ServerHelloDone in separate datagrams, pion
// mistakes the exchange for a session resumption and hangs. A datagram that
// holds a ServerHello without the ServerHelloDone is therefore joined with
// the next one before pion sees it.
type HandoffConn struct {
	*net.UDPConn

	readMu   sync.Mutex // held by pion's reader inside a socket read
	detached atomic.Bool
	pending  [][]byte // data datagrams kept for the record layer; guarded by readMu
}

// coalesceWait bounds how long a lone ServerHello waits for its partner.
const coalesceWait = 200 * time.Millisecond

// NewHandoffConn wraps a connected UDP socket.
func NewHandoffConn(c *net.UDPConn) *HandoffConn { return &HandoffConn{UDPConn: c} }

// Read implements net.Conn for pion.
func (h *HandoffConn) Read(p []byte) (int, error) {
	h.readMu.Lock()
	defer h.readMu.Unlock()
	if h.detached.Load() {
		return 0, net.ErrClosed
	}

	var n int
	var err error
	for {
		n, err = h.UDPConn.Read(p)
		if h.detached.Load() {
			if n > 0 {
				h.keep(p[:n])
			}
			return 0, net.ErrClosed
		}
		if err != nil || !isAppData(p[:n]) {
			break
		}
		h.keep(p[:n])
	}
	if err != nil || !loneServerHello(p[:n]) {
		return n, err
	}

	h.UDPConn.SetReadDeadline(time.Now().Add(coalesceWait))
	m, err2 := h.UDPConn.Read(p[n:])
	h.UDPConn.SetReadDeadline(time.Time{})
	if err2 == nil {
		n += m
	}
	return n, nil
}

// maxPending bounds the datagrams kept before Detach; more are dropped, as
// a full socket buffer would drop them.
const maxPending = 256

// keep stores a copy of a datagram for the record layer; readMu is held.
func (h *HandoffConn) keep(d []byte) {
	if len(h.pending) < maxPending {
		h.pending = append(h.pending, append([]byte(nil), d...))
	}
}

// isAppData reports whether a datagram starts with an application-data
// record (content type 23), which only the record layer can use.
func isAppData(d []byte) bool {
	return len(d) >= recordHeaderLen && d[0] == 23
}

// Write implements net.Conn for pion; after Detach pion's writes (its
// closing alert included) are dropped so the headend keeps the channel.
func (h *HandoffConn) Write(p []byte) (int, error) {
	if h.detached.Load() {
		return len(p), nil
	}
	return h.UDPConn.Write(p)
}

// Close closes the socket unless it was detached; the new owner closes it.
func (h *HandoffConn) Close() error {
	if h.detached.Load() {
		return nil
	}
	return h.UDPConn.Close()
}

// Detach ends pion's use of the socket and returns it, with the
// application-data datagrams that arrived before; they are the caller's to
// process.
func (h *HandoffConn) Detach() (*net.UDPConn, [][]byte) {
	h.detached.Store(true)
	// Wake a reader blocked in the socket, then wait for it to leave.
	h.UDPConn.SetReadDeadline(time.Unix(1, 0))
	h.readMu.Lock()
	h.UDPConn.SetReadDeadline(time.Time{})
	p := h.pending
	h.pending = nil
	h.readMu.Unlock()
	return h.UDPConn, p
}

// loneServerHello reports whether a datagram's handshake records include a
// ServerHello (type 2) but no ServerHelloDone (type 14).
func loneServerHello(d []byte) bool {
	hello, done := false, false
	for len(d) >= recordHeaderLen {
		n := int(d[11])<<8 | int(d[12])
		if len(d) < recordHeaderLen+n {
			break
		}
		frag := d[recordHeaderLen : recordHeaderLen+n]
		epoch := int(d[3])<<8 | int(d[4])
		if d[0] == 22 && epoch == 0 && len(frag) > 0 {
			switch frag[0] {
			case 2:
				hello = true
			case 14:
				done = true
			}
		}
		d = d[recordHeaderLen+n:]
	}
	return hello && !done
}
