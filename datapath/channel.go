package datapath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a channel stops, for callers that branch on them.
var (
	// ErrTerminated means the headend ended the session (TERMINATE); the
	// cookie must not be used again.
	ErrTerminated = errors.New("datapath: headend terminated the session")

	// ErrPeerDisconnect means the headend sent DISCONNECT.
	ErrPeerDisconnect = errors.New("datapath: headend disconnected")

	// ErrDeadPeer means nothing arrived for two DPD intervals.
	ErrDeadPeer = errors.New("datapath: headend stopped answering (dead peer detection)")
)

// maxFrame is the receive buffer: openconnect tolerates frames up to 16 KiB
// whatever the MTU, and so do we.
const maxFrame = 16384 + CSTPHeaderLen

// CSTPOptions configure a CSTP channel.
type CSTPOptions struct {
	// Conn is the TLS connection that carried the CONNECT; Reader reads
	// from it and may hold bytes already buffered past the response.
	Conn   net.Conn
	Reader *bufio.Reader

	// DPD and Keepalive are the headend's X-CSTP-DPD and X-CSTP-Keepalive;
	// zero turns the respective timer off.
	DPD, Keepalive time.Duration

	// Deliver takes each inbound IP packet; the slice is only valid for
	// the call. Flush, if set, is called whenever no more input is ready,
	// so the receiver may hold delivered packets until then (GRO).
	Deliver func(pkt []byte)
	Flush   func()

	Logger *slog.Logger
}

// CSTP is the packet channel inside the TLS stream. WritePacket is safe for
// concurrent use; Run must be called once.
type CSTP struct {
	conn    net.Conn
	br      *bufio.Reader
	rd      *CSTPReader
	deliver func([]byte)
	flush   func()
	log     *slog.Logger

	live Liveness

	closeOnce sync.Once
	closing   atomic.Bool

	Counters Counters
}

// Counters are a channel's traffic counters, updated atomically.
type Counters struct {
	TxPackets, TxBytes atomic.Uint64
	RxPackets, RxBytes atomic.Uint64
	RxDropped          atomic.Uint64 // frames of a type we do not carry
}

// NewCSTP wraps a connected tunnel stream.
func NewCSTP(o CSTPOptions) *CSTP {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rd := o.Reader
	if rd == nil {
		rd = bufio.NewReaderSize(o.Conn, maxFrame)
	}
	c := &CSTP{
		conn:    o.Conn,
		br:      rd,
		rd:      NewCSTPReader(rd),
		deliver: o.Deliver,
		flush:   orNop(o.Flush),
		log:     log.With("sub", "cstp"),
	}
	c.live.DPD, c.live.Keepalive = o.DPD, o.Keepalive
	c.live.Start(time.Now())
	return c
}

// WritePacket sends one IP packet. frame[:CSTPHeaderLen] is free for the CSTP
// header and frame[Headroom:] is the packet; the frame goes out as one TLS
// write, as ocserv requires. It blocks while the TLS stream is full.
func (c *CSTP) WritePacket(frame []byte) error {
	n := len(frame) - CSTPHeaderLen
	if n <= 0 || n > 0xffff {
		return fmt.Errorf("datapath: packet of %d bytes cannot be framed", n)
	}
	PutCSTPHeader(frame, TypeData, n)
	if err := c.write(frame); err != nil {
		return err
	}
	c.Counters.TxPackets.Add(1)
	c.Counters.TxBytes.Add(uint64(n))
	return nil
}

// write sends one whole frame. tls.Conn serialises concurrent writers, so
// frames never interleave.
func (c *CSTP) write(frame []byte) error {
	if _, err := c.conn.Write(frame); err != nil {
		return fmt.Errorf("datapath: cstp write: %w", err)
	}
	c.live.Sent(time.Now())
	return nil
}

func (c *CSTP) writeControl(t Type, payload []byte) error {
	f := make([]byte, CSTPHeaderLen+len(payload))
	PutCSTPHeader(f, t, len(payload))
	copy(f[CSTPHeaderLen:], payload)
	return c.write(f)
}

// Run moves packets until ctx is cancelled, the headend ends the session,
// or the stream fails, and says which. After ctx is cancelled it returns
// nil; call Disconnect to tell the headend first.
func (c *CSTP) Run(ctx context.Context) error {
	// The liveness loop stops with Run, not a tick later.
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- c.readLoop() }()
	go func() {
		errc <- runLiveness(lctx, &c.live, &c.closing, func(t Type) error {
			return c.writeControl(t, nil)
		})
	}()

	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	userClosed := c.closing.Load()
	stop()
	c.close()
	// The other loop ends once the connection is closed.
	<-errc
	if userClosed {
		return nil
	}
	return err
}

func (c *CSTP) readLoop() error {
	buf := make([]byte, maxFrame)
	for {
		if c.br.Buffered() == 0 {
			c.flush()
		}
		t, payload, err := c.rd.ReadFrame(buf)
		if err != nil {
			if c.closing.Load() {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("datapath: headend closed the tunnel stream: %w", err)
			}
			return fmt.Errorf("datapath: cstp read: %w", err)
		}
		switch t {
		case TypeData:
			c.Counters.RxPackets.Add(1)
			c.Counters.RxBytes.Add(uint64(len(payload)))
			c.deliver(payload)
		case TypeDPDReq:
			// The response echoes the request's payload, padding included.
			if err := c.writeControl(TypeDPDResp, payload); err != nil {
				return err
			}
		case TypeDPDResp:
			c.live.Answered(time.Now())
		case TypeKeepalive:
		case TypeDisconnect:
			return fmt.Errorf("%w: %s", ErrPeerDisconnect, reasonText(payload))
		case TypeTerminate:
			return ErrTerminated
		default:
			// Compressed frames are never offered; anything else is
			// counted and skipped rather than ending every flow.
			c.Counters.RxDropped.Add(1)
		}
	}
}

func orNop(f func()) func() {
	if f == nil {
		return func() {}
	}
	return f
}

// reasonText renders a DISCONNECT payload: an optional reason byte and
// text. Only printable ASCII survives, so a hostile headend cannot write
// control sequences to the user's terminal.
func reasonText(p []byte) string {
	if len(p) > 0 && p[0] >= 0x80 {
		p = p[1:]
	}
	out := make([]byte, 0, len(p))
	for _, b := range p {
		if b >= 0x20 && b < 0x7f {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return "no reason given"
	}
	return string(out)
}

// Disconnect tells the headend the user is leaving (DISCONNECT with the
// logout code 0xB0), so it frees the session and the cookie at once, then
// closes the stream. It is safe to call more than once.
func (c *CSTP) Disconnect() error {
	return c.sayGoodbye(DisconnectPayload("user logout"))
}

// Suspend tells the headend the client is leaving for now (an empty
// DISCONNECT): it frees the session's tunnel but keeps the cookie for a
// later CONNECT. Then it closes the stream.
func (c *CSTP) Suspend() error { return c.sayGoodbye(nil) }

// sayGoodbye sends one DISCONNECT with payload, bounded to a second, and
// closes the stream; only the first close of a channel says anything.
func (c *CSTP) sayGoodbye(payload []byte) error {
	var err error
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		err = c.writeControl(TypeDisconnect, payload)
		c.conn.Close()
	})
	return err
}

// Abort closes the stream without telling the headend, which keeps the
// session for a reconnect (a rekey by new tunnel does this).
func (c *CSTP) Abort() { c.close() }

func (c *CSTP) close() {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.conn.Close()
	})
}
