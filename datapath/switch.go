package datapath

import (
	"errors"
	"sync/atomic"
)

// Headroom is what the netstack leaves in front of every outbound packet:
// enough for the DTLS record header, and so for the smaller CSTP header.
const Headroom = DTLSHeadroom

// Switch sends each packet over DTLS while a DTLS channel is up and over
// CSTP otherwise. It never sends data over CSTP while DTLS is up: ocserv
// takes a data frame on CSTP as the client asking to leave DTLS.
type Switch struct {
	cstp atomic.Pointer[CSTP]
	dtls atomic.Pointer[DTLS]
}

// errNoChannel is returned while no channel is up, during a reconnect;
// the stack retransmits once one is.
var errNoChannel = errors.New("datapath: no channel up")

// SetCSTP sets the CSTP channel, or none (nil) while reconnecting.
func (s *Switch) SetCSTP(c *CSTP) { s.cstp.Store(c) }

// SetDTLS moves data to d, or back to CSTP when d is nil.
func (s *Switch) SetDTLS(d *DTLS) { s.dtls.Store(d) }

// DTLS returns the active DTLS channel, or nil when data is on CSTP.
func (s *Switch) DTLS() *DTLS { return s.dtls.Load() }

// Channel names the channel data uses now: "DTLS" or "TLS".
func (s *Switch) Channel() string {
	if s.dtls.Load() != nil {
		return "DTLS"
	}
	return "TLS"
}

// WritePacket sends one packet; frame[:Headroom] is free and the frame's
// capacity leaves room for a DTLS tag. DTLS seals in place, so a packet
// that fails there is dropped rather than resent over CSTP.
func (s *Switch) WritePacket(frame []byte) error {
	if d := s.dtls.Load(); d != nil {
		return d.WritePacket(frame)
	}
	c := s.cstp.Load()
	if c == nil {
		return errNoChannel
	}
	return c.WritePacket(frame[Headroom-CSTPHeaderLen:])
}
