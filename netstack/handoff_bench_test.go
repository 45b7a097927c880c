package netstack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// udpPacket builds an IPv4/UDP packet of total length n from src:1 to
// dst:port, checksums set, as the datapath would hand it over.
func udpPacket(n int, src, dst netip.Addr, port uint16) []byte {
	pkt := make([]byte, n)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(n), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(pkt[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: 1, DstPort: port,
		Length: uint16(n - header.IPv4MinimumSize)})
	// A zero UDP checksum means "none" over IPv4 (RFC 768).
	return pkt
}

// BenchmarkInjectFlush is the inbound hand-off from the datapath: one
// decrypted IPv4/UDP packet copied into the stack and flushed through GRO.
// "udp-N" goes on through IP and UDP to a bound socket drained in the
// background (gVisor's UDP queue and the reader's allocations count here);
// "notours-N" is addressed elsewhere and dropped by IP, which isolates
// ocnet's own part of the hand-off.
func BenchmarkInjectFlush(b *testing.B) {
	cases := []struct {
		name string
		n    int
		dst  string
	}{
		{"udp-64", 64, "198.19.20.50"},
		{"udp-1400", 1400, "198.19.20.50"},
		{"notours-1400", 1400, "198.19.99.9"},
	}
	for _, tc := range cases {
		n := tc.n
		b.Run(tc.name, func(b *testing.B) {
			local := netip.MustParseAddr("198.19.20.50")
			s, err := New(Config{
				Addrs: []netip.Prefix{netip.PrefixFrom(local, 24)}, MTU: 1434,
				Headroom: 8,
			}, func([]byte) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			uc, err := gonet.DialUDP(s.s, &tcpip.FullAddress{
				NIC: nicID, Addr: tcpip.AddrFrom4(local.As4()), Port: 5000,
			}, nil, ipv4.ProtocolNumber)
			if err != nil {
				b.Fatal(err)
			}
			defer uc.Close()
			go func() {
				buf := make([]byte, 2048)
				for {
					if _, err := uc.Read(buf); err != nil {
						return
					}
				}
			}()
			pkt := udpPacket(n, netip.MustParseAddr("198.18.120.10"),
				netip.MustParseAddr(tc.dst), 5000)

			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				s.Inject(pkt)
				s.Flush()
			}
		})
	}
}

// BenchmarkWritePackets is the outbound hand-off: the stack's link copies
// a batch of 1400-byte packets behind the datapath's headroom, one frame at
// a time, into the output function (here one that keeps nothing).
func BenchmarkWritePackets(b *testing.B) {
	const size, batch = 1400, 16
	var got int
	l := newLink(1434, 8, func(frame []byte) error {
		got += len(frame)
		return nil
	})
	var pkts stack.PacketBufferList
	for range batch {
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{
			Payload: buffer.MakeWithData(make([]byte, size)),
		})
		defer pb.DecRef()
		pkts.PushBack(pb)
	}

	b.ReportAllocs()
	b.SetBytes(size * batch)
	for b.Loop() {
		if n, err := l.WritePackets(pkts); err != nil || n != batch {
			b.Fatalf("WritePackets = %d, %v", n, err)
		}
	}
	if got == 0 {
		b.Fatal("output function never called")
	}
}
