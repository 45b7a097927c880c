package netstack

import (
	"context"
	"io"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// BenchmarkStackToStack moves bulk TCP between two stacks wired back to
// back: the ceiling of the netstack part of the data path.
func BenchmarkStackToStack(b *testing.B) {
	t := &testing.T{}
	a, s := pair(t)
	ln, err := gonet.ListenTCP(s.s, tcpip.FullAddress{
		NIC: nicID, Addr: tcpip.AddrFrom4([4]byte{198, 18, 120, 10}), Port: 80,
	}, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const chunk = 1 << 20
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, chunk)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c, err := a.DialContext(context.Background(), "tcp", "198.18.120.10:80")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}
