package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDTLSClosed means the headend closed the DTLS association (an alert);
// data falls back to CSTP.
var ErrDTLSClosed = errors.New("datapath: headend closed the DTLS channel")

// MaxDTLSKeepalive caps the DTLS keepalive interval: ocserv moves its
// downstream to CSTP after about 25 s without UDP from the client
// (switch-to-tcp-timeout), whatever keepalive it advertised.
const MaxDTLSKeepalive = 20 * time.Second

// socketBuffer is the UDP socket buffer asked for, each way.
const socketBuffer = 4 << 20

// DTLSOptions configure a DTLS channel.
type DTLSOptions struct {
	// Conn is the connected UDP socket, taken from HandoffConn.Detach;
	// Pending holds the datagrams that arrived during the handoff.
	Conn    *net.UDPConn
	Pending [][]byte
	Keys    DTLSKeys

	// DPD and Keepalive are X-DTLS-DPD and X-DTLS-Keepalive.
	DPD, Keepalive time.Duration

	// Deliver takes each inbound IP packet, valid only for the call;
	// Flush, if set, follows each batch of them.
	Deliver func(pkt []byte)
	Flush   func()

	Logger *slog.Logger
}

// DTLS is the packet channel over UDP. WritePacket is safe for concurrent
// use; Run must be called once.
type DTLS struct {
	conn    *net.UDPConn
	pending [][]byte
	deliver func([]byte)
	flush   func()
	log     *slog.Logger
	suite   string

	wmu sync.Mutex   // serialises sealing: sequence numbers and scratch
	rl  *recordLayer // write side guarded by wmu; read side owned by readLoop
	ctl []byte       // control frame buffer, guarded by wmu

	live      Liveness
	closing   atomic.Bool
	closeOnce sync.Once

	Counters Counters
}

// NewDTLS builds a channel over an established association.
func NewDTLS(o DTLSOptions) (*DTLS, error) {
	rl, err := newRecordLayer(o.Keys)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keep := o.Keepalive
	if keep <= 0 || keep > MaxDTLSKeepalive {
		keep = MaxDTLSKeepalive
	}
	d := &DTLS{
		conn:    o.Conn,
		pending: o.Pending,
		deliver: o.Deliver,
		flush:   orNop(o.Flush),
		log:     log.With("sub", "dtls"),
		suite:   o.Keys.CipherSuiteName,
		rl:      rl,
		ctl:     make([]byte, DTLSOverhead+maxFrame),
	}
	// A burst from the headend must fit in the socket while the read
	// loop catches up; the default (about 200 KiB) drops packets under
	// a single fast download. The kernel caps this at net.core.rmem_max.
	if o.Conn != nil {
		o.Conn.SetReadBuffer(socketBuffer)
		o.Conn.SetWriteBuffer(socketBuffer)
	}

	d.live.DPD, d.live.Keepalive = o.DPD, keep
	d.live.Start(time.Now())
	return d, nil
}

// CipherSuite names the negotiated suite.
func (d *DTLS) CipherSuite() string { return d.suite }

// WritePacket sends one IP packet. frame[:DTLSHeadroom] is free, the packet
// follows, and the frame's capacity leaves room for the 16-byte tag; the
// record is sealed in place, so frame is overwritten.
func (d *DTLS) WritePacket(frame []byte) error {
	n := len(frame) - DTLSHeadroom
	if n <= 0 {
		return errors.New("datapath: empty packet")
	}
	frame[DTLSHeadroom-1] = byte(TypeData)
	if err := d.send(frame); err != nil {
		return err
	}
	d.Counters.TxPackets.Add(1)
	d.Counters.TxBytes.Add(uint64(n))
	return nil
}

// send seals frame in place and writes the record.
func (d *DTLS) send(frame []byte) error {
	d.wmu.Lock()
	err := d.sealAndWriteLocked(frame)
	d.wmu.Unlock()
	return err
}

// sendControl sends a DPD, keepalive or disconnect frame.
func (d *DTLS) sendControl(t Type, payload []byte) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if len(payload) > maxFrame {
		payload = payload[:maxFrame]
	}
	f := d.ctl[:DTLSHeadroom+len(payload)]
	f[DTLSHeadroom-1] = byte(t)
	copy(f[DTLSHeadroom:], payload)
	return d.sealAndWriteLocked(f)
}

func (d *DTLS) sealAndWriteLocked(frame []byte) error {
	rec, err := d.rl.sealInPlace(frame)
	if err == nil {
		_, err = d.conn.Write(rec)
	}
	if err != nil {
		return fmt.Errorf("datapath: dtls write: %w", err)
	}
	d.live.Sent(time.Now())
	return nil
}

// Run moves packets until ctx ends, the channel is closed, or it fails:
// ErrDeadPeer, ErrDTLSClosed, ErrTerminated and ErrPeerDisconnect tell why.
func (d *DTLS) Run(ctx context.Context) error {
	// The liveness loop stops with Run, not a tick later.
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- d.readLoop() }()
	go func() {
		errc <- runLiveness(lctx, &d.live, &d.closing, func(t Type) error {
			return d.sendControl(t, nil)
		})
	}()

	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	user := d.closing.Load()
	stop()
	d.Close()
	<-errc
	if user {
		return nil
	}
	return err
}

// readBatch is how many datagrams one recvmmsg call may return.
const readBatch = 32

// readLoop reads datagrams in batches, opens each record in place and
// hands the packets on; the receiver's Flush follows every batch.
func (d *DTLS) readLoop() error {
	for _, rec := range d.pending {
		if err := d.handle(rec); err != nil {
			return err
		}
	}
	d.pending = nil
	d.flush()

	rb := newBatchReader(d.conn, readBatch, maxFrame+DTLSOverhead)
	for {
		recs, err := rb.read()
		if err != nil {
			if d.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && !ne.Timeout() || errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("datapath: dtls read: %w", err)
			}
			// ICMP port unreachable and the like: the liveness loop
			// decides whether the channel is dead.
			continue
		}
		for _, rec := range recs {
			if err := d.handle(rec); err != nil {
				d.flush()
				return err
			}
		}
		d.flush()
	}
}

// handle opens one record and acts on its payload.
func (d *DTLS) handle(rec []byte) error {
	pt, err := d.rl.openInPlace(rec)
	if errors.Is(err, errAlert) {
		return ErrDTLSClosed
	}
	if err != nil || len(pt) == 0 {
		d.Counters.RxDropped.Add(1)
		return nil
	}
	switch Type(pt[0]) {
	case TypeData:
		d.Counters.RxPackets.Add(1)
		d.Counters.RxBytes.Add(uint64(len(pt) - 1))
		d.deliver(pt[1:])
	case TypeDPDReq:
		// Echo the payload, padding included: the headend may be
		// probing the path MTU.
		return d.sendControl(TypeDPDResp, pt[1:])
	case TypeDPDResp:
		d.live.Answered(time.Now())
	case TypeKeepalive:
	case TypeDisconnect:
		return fmt.Errorf("%w: %s", ErrPeerDisconnect, reasonText(pt[1:]))
	case TypeTerminate:
		return ErrTerminated
	default:
		d.Counters.RxDropped.Add(1)
	}
	return nil
}

// Close stops the channel and closes its socket. The headend is not told:
// the session lives on over CSTP.
func (d *DTLS) Close() {
	d.closeOnce.Do(func() {
		d.closing.Store(true)
		d.conn.Close()
	})
}
