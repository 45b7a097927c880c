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
// protocol.md §3.4: a DPD request after DPD of silence, at most every DPD/2,
// the peer dead after 2×DPD of silence; a keepalive whenever nothing was
// sent for the keepalive interval. It is a pure clock: the channel reports
// traffic and asks Tick what to do, so the rules are testable without
// waiting. A zero interval turns its rule off.
type Liveness struct {
	DPD, Keepalive time.Duration

	lastRx, lastTx atomic.Int64 // unix nanoseconds
	lastProbe      int64        // owned by the Tick caller
}

// Start resets the clock as if traffic just passed both ways.
func (l *Liveness) Start(now time.Time) {
	l.lastRx.Store(now.UnixNano())
	l.lastTx.Store(now.UnixNano())
	l.lastProbe = 0
}

// Received and Sent record traffic; safe for concurrent use.
func (l *Liveness) Received(now time.Time) { l.lastRx.Store(now.UnixNano()) }

// Sent records that something went out.
func (l *Liveness) Sent(now time.Time) { l.lastTx.Store(now.UnixNano()) }

// Tick says what to do at now. Call it from one goroutine.
func (l *Liveness) Tick(now time.Time) Action {
	t := now.UnixNano()
	if l.DPD > 0 {
		silent := time.Duration(t - l.lastRx.Load())
		if silent > 2*l.DPD {
			return ActDead
		}
		if silent > l.DPD && time.Duration(t-l.lastProbe) > l.DPD/2 {
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
