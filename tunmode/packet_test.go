package tunmode

import (
	"net/netip"
	"testing"
)

func ipv4Packet(proto byte, src, dst string, sport, dport uint16, frag uint16) []byte {
	p := make([]byte, 28)
	p[0] = 0x45
	p[6], p[7] = byte(frag>>8), byte(frag)
	p[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	p[20], p[21] = byte(sport>>8), byte(sport)
	p[22], p[23] = byte(dport>>8), byte(dport)
	return p
}

func ipv6Packet(proto byte, src, dst string, sport, dport uint16) []byte {
	p := make([]byte, 48)
	p[0] = 0x60
	p[6] = proto
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	p[40], p[41] = byte(sport>>8), byte(sport)
	p[42], p[43] = byte(dport>>8), byte(dport)
	return p
}

func TestParseFlow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pkt   []byte
		ok    bool
		ports bool
		dst   string
		dport uint16
	}{
		{"udp4", ipv4Packet(protoUDP, "10.0.0.1", "10.0.0.53", 40000, 53, 0), true, true, "10.0.0.53", 53},
		{"tcp4", ipv4Packet(protoTCP, "10.0.0.1", "10.0.0.2", 61000, 80, 0), true, true, "10.0.0.2", 80},
		{"icmp4", ipv4Packet(protoICMP, "10.0.0.1", "10.0.0.2", 0, 0, 0), true, false, "10.0.0.2", 0},
		{"later fragment", ipv4Packet(protoUDP, "10.0.0.1", "10.0.0.2", 1, 2, 0x0010), true, false, "10.0.0.2", 0},
		{"tcp6", ipv6Packet(protoTCP, "fd00::1", "fd00::2", 1, 443), true, true, "fd00::2", 443},
		{"empty", nil, false, false, "", 0},
		{"short v4", ipv4Packet(protoTCP, "1.1.1.1", "2.2.2.2", 1, 2, 0)[:19], false, false, "", 0},
		{"bad ihl", append([]byte{0x4f}, make([]byte, 30)...), false, false, "", 0},
		{"short v6", ipv6Packet(protoTCP, "::1", "::2", 1, 2)[:39], false, false, "", 0},
		{"v4 header only", ipv4Packet(protoTCP, "1.1.1.1", "2.2.2.2", 1, 2, 0)[:21], true, false, "2.2.2.2", 0},
		{"version 5", []byte{0x50, 1, 2, 3}, false, false, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, ok := parseFlow(tc.pkt)
			if ok != tc.ok || k.ports != tc.ports {
				t.Fatalf("ok=%v ports=%v, want %v %v", ok, k.ports, tc.ok, tc.ports)
			}
			if !ok {
				return
			}
			if k.dst.String() != tc.dst || k.dport != tc.dport {
				t.Errorf("dst %v:%d, want %s:%d", k.dst, k.dport, tc.dst, tc.dport)
			}
		})
	}
}

func FuzzParseFlow(f *testing.F) {
	f.Add(ipv4Packet(protoUDP, "10.0.0.1", "10.0.0.53", 40000, 53, 0))
	f.Add(ipv6Packet(protoTCP, "fd00::1", "fd00::2", 1, 443))
	f.Add(icmpError(3, ipv4Packet(protoUDP, "10.0.0.1", "10.0.0.53", 61234, 53, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, ok := parseFlow(b); ok {
			icmpErrorFlow(b, k)
		}
	})
}

// icmpError wraps the first bytes of quoted in an ICMP error of typ
// (ICMPv6 when quoted is IPv6), sent from a router to the quoted source.
func icmpError(typ byte, quoted []byte) []byte {
	if len(quoted) > 0 && quoted[0]>>4 == 6 {
		p := ipv6Packet(protoICMPv6, "fd00::fe", "fd00::1", 0, 0)[:40]
		return append(append(p, typ, 0, 0, 0, 0, 0, 0, 0), quoted...)
	}
	p := ipv4Packet(protoICMP, "10.0.0.254", "10.0.0.1", 0, 0, 0)[:20]
	return append(append(p, typ, 0, 0, 0, 0, 0, 0, 0), quoted...)
}

// TestDivertICMPError: an ICMP error goes to the stack that sent the
// packet it quotes.
func TestDivertICMPError(t *testing.T) {
	stackUDP := ipv4Packet(protoUDP, "10.0.0.1", "10.0.0.53", 61234, 53, 0)
	hostUDP := ipv4Packet(protoUDP, "10.0.0.1", "10.0.0.53", 40000, 53, 0)
	stackTCP6 := ipv6Packet(protoTCP, "fd00::1", "fd00::2", 65000, 443)
	hostTCP6 := ipv6Packet(protoTCP, "fd00::1", "fd00::2", 50000, 443)
	for _, tc := range []struct {
		name   string
		pkt    []byte
		divert bool // for the TUN
	}{
		{"unreachable for the stack", icmpError(3, stackUDP), false},
		{"unreachable for the host", icmpError(3, hostUDP), true},
		{"time exceeded for the stack", icmpError(11, stackUDP), false},
		{"echo reply", icmpError(0, stackUDP), true},
		{"v6 too big for the stack", icmpError(2, stackTCP6), false},
		{"v6 unreachable for the host", icmpError(1, hostTCP6), true},
		{"v6 echo reply", icmpError(129, stackTCP6), true},
		{"quote without ports", icmpError(3, stackUDP[:21]), true},
		{"no room for the icmp header", icmpError(3, stackUDP)[:24], true},
		{"stack's own tcp", ipv4Packet(protoTCP, "10.0.0.2", "10.0.0.1", 80, 61000, 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := New(nil)
			e.running.Store(true)
			if got := e.Divert(tc.pkt); got != tc.divert {
				t.Fatalf("Divert = %v, want %v", got, tc.divert)
			}
		})
	}
}
