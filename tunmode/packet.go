package tunmode

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the demux looks at.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// flowKey is what the demux needs from one IP packet's headers.
type flowKey struct {
	proto    uint8
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	ports    bool // sport and dport were read (TCP or UDP, first fragment)
	l4       int  // offset of the transport header in the packet
}

// parseFlow reads the addresses, the transport protocol and, for TCP and
// UDP, the ports of pkt. It checks every length before reading and
// reports false for anything that is not a well-formed IPv4 or IPv6
// header. IPv6 extension headers are not walked: such packets come back
// with their next-header value as proto and no ports.
func parseFlow(pkt []byte) (flowKey, bool) {
	var k flowKey
	if len(pkt) < 1 {
		return k, false
	}

	var l4 []byte
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return k, false
		}
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || len(pkt) < ihl {
			return k, false
		}
		k.proto = pkt[9]
		k.src = netip.AddrFrom4([4]byte(pkt[12:16]))
		k.dst = netip.AddrFrom4([4]byte(pkt[16:20]))
		if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
			return k, true // a later fragment carries no ports
		}
		l4 = pkt[ihl:]
		k.l4 = ihl
	case 6:
		if len(pkt) < 40 {
			return k, false
		}
		k.proto = pkt[6]
		k.src = netip.AddrFrom16([16]byte(pkt[8:24]))
		k.dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		l4 = pkt[40:]
		k.l4 = 40
	default:
		return k, false
	}

	if (k.proto == protoTCP || k.proto == protoUDP) && len(l4) >= 4 {
		k.sport = binary.BigEndian.Uint16(l4[0:2])
		k.dport = binary.BigEndian.Uint16(l4[2:4])
		k.ports = true
	}
	return k, true
}

// icmpErrorFlow reads the packet an ICMP or ICMPv6 error message quotes
// (destination unreachable, time exceeded, packet too big...), which is
// the header of a packet the receiver sent: its source port says which
// stack the error belongs to. It reports false for anything else,
// echo replies included, and for a quote too short to carry ports.
func icmpErrorFlow(pkt []byte, k flowKey) (flowKey, bool) {
	const icmpHeader = 8 // type, code, checksum, 4 bytes of type data
	if k.l4+icmpHeader > len(pkt) {
		return flowKey{}, false
	}
	typ := pkt[k.l4]
	switch {
	case k.proto == protoICMP && pkt[0]>>4 == 4:
		// RFC 792 and RFC 1191: unreachable, source quench, redirect,
		// time exceeded, parameter problem.
		if typ != 3 && typ != 4 && typ != 5 && typ != 11 && typ != 12 {
			return flowKey{}, false
		}
	case k.proto == protoICMPv6 && pkt[0]>>4 == 6:
		if typ >= 128 { // RFC 4443: error messages have types below 128
			return flowKey{}, false
		}
	default:
		return flowKey{}, false
	}
	inner, ok := parseFlow(pkt[k.l4+icmpHeader:])
	if !ok || !inner.ports {
		return flowKey{}, false
	}
	return inner, true
}
