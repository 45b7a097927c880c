package datapath

import (
	"context"
	"sync/atomic"
	"time"
)

// Action is what the liveness clock asks a channel to do.
type Action int

const (
	ActNone      Action = iota
	ActDPD              // send a DPD request
	ActKeepalive        // send a keepalive
	ActDead             // the peer is dead: give the channel up
)

// Liveness is dead-peer detection and keepalive for one channel, after
// protocol.md §3.4: a DPD request once DPD has passed without a DPD
// response, at most every DPD/2, the peer dead after 2×DPD without one; a
// keepalive whenever nothing was sent for the keepalive interval. It is a
// pure clock: the channel reports what it sent and which DPD responses came
// back, and asks Tick what to do, so the rules are testable without
// waiting. A zero interval turns its rule off.
//
// Only a DPD response proves the path works both ways. Any received frame
// used to count, and then a path that lost only the client's upstream (UDP
// to the headend dropped) never looked dead: the headend's TCP
// retransmissions and its own DPD requests kept arriving over DTLS, and the
// fallback took 43 s instead of two DPD intervals (measured on the bed
// with DPD 10 s). The price is one small probe per DPD interval while
// traffic flows.
type Liveness struct {
	DPD, Keepalive time.Duration

	lastAck, lastTx atomic.Int64 // unix nanoseconds
	lastProbe       int64        // owned by the Tick caller
}

// Start resets the clock as if a DPD exchange had just completed.
func (l *Liveness) Start(now time.Time) {
	l.lastAck.Store(now.UnixNano())
	l.lastTx.Store(now.UnixNano())
	l.lastProbe = 0
}

// Answered records a DPD response from the peer; safe for concurrent use.
func (l *Liveness) Answered(now time.Time) { l.lastAck.Store(now.UnixNano()) }

// Sent records that something went out; safe for concurrent use.
func (l *Liveness) Sent(now time.Time) { l.lastTx.Store(now.UnixNano()) }

// Tick says what to do at now. Call it from one goroutine.
func (l *Liveness) Tick(now time.Time) Action {
	t := now.UnixNano()
	if l.DPD > 0 {
		unanswered := time.Duration(t - l.lastAck.Load())
		if unanswered > 2*l.DPD {
			return ActDead
		}
		if unanswered > l.DPD && time.Duration(t-l.lastProbe) > l.DPD/2 {
			l.lastProbe = t
			return ActDPD
		}
	}
	if l.Keepalive > 0 && time.Duration(t-l.lastTx.Load()) > l.Keepalive {
		return ActKeepalive
	}
	return ActNone
}

// livenessTick is how often the clock is read; every interval above is a
// whole number of seconds, as headends send them.
const livenessTick = time.Second

// runLiveness drives l until ctx ends or the channel closes, sending
// through send; it returns ErrDeadPeer when the peer is dead.
func runLiveness(ctx context.Context, l *Liveness, closing *atomic.Bool,
	send func(Type) error) error {
	tick := time.NewTicker(livenessTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if closing.Load() {
				return nil
			}
			var err error
			switch l.Tick(now) {
			case ActDead:
				return ErrDeadPeer
			case ActDPD:
				err = send(TypeDPDReq)
			case ActKeepalive:
				err = send(TypeKeepalive)
			}
			if err != nil {
				return err
			}
		}
	}
}
