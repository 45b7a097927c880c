package netstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// pair wires two stacks back to back, the way the tunnel wires ocnet's
// stack to the headend, with 8 bytes of headroom as CSTP wants.
func pair(t *testing.T) (a, b *Stack) {
	t.Helper()
	var pa, pb *Stack
	mk := func(addr string, peer **Stack) *Stack {
		s, err := New(Config{
			Addrs:    []netip.Prefix{netip.MustParsePrefix(addr)},
			MTU:      1400,
			Headroom: 8,
		}, func(frame []byte) error {
			(*peer).Inject(frame[8:])
			(*peer).Flush()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	pa = mk("198.19.20.50/24", &pb)
	pb = mk("198.18.120.10/24", &pa)
	return pa, pb
}

func TestDialThroughStack(t *testing.T) {
	a, b := pair(t)

	ln, err := gonet.ListenTCP(b.s, tcpip.FullAddress{
		NIC: nicID, Addr: tcpip.AddrFrom4([4]byte{198, 18, 120, 10}), Port: 80,
	}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	payload := make([]byte, 1<<20)
	rand.Read(payload)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write(payload)
		c.Close()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp", "198.18.120.10:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes, want %d identical bytes", len(got), len(payload))
	}
	if a.Stats().Injected == 0 {
		t.Error("no packet counted as injected")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	out := func([]byte) error { return nil }
	for _, tc := range []struct {
		name string
		c    Config
	}{
		{"no address", Config{MTU: 1400}},
		{"tiny MTU", Config{Addrs: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24")}, MTU: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.c, out); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestDialWantsIPLiteral(t *testing.T) {
	a, _ := pair(t)
	_, err := a.DialContext(context.Background(), "tcp", "intranet.corp.example:80")
	if err == nil {
		t.Fatal("dial by name reached the stack")
	}
}

// TestCloseWhileInjecting: a stack closed while the datapath still
// injects (a reconnect that brings a new address swaps stacks under a
// running reader) must close, not deadlock. Closing took the stack's lock
// and then GRO's, while delivery held GRO's and waited for the stack's.
func TestCloseWhileInjecting(t *testing.T) {
	local := netip.MustParseAddr("198.19.20.50")
	pkt := udpPacket(200, netip.MustParseAddr("198.18.120.10"), local, 9)

	for i := range 200 {
		s, err := New(Config{Addrs: []netip.Prefix{netip.PrefixFrom(local, 24)},
			MTU: 1400}, func([]byte) error { return nil })
		if err != nil {
			t.Fatal(err)
		}

		stop := make(chan struct{})
		injected := make(chan struct{})
		go func() {
			defer close(injected)
			for {
				select {
				case <-stop:
					return
				default:
				}
				s.Inject(pkt)
				s.Flush()
			}
		}()

		closed := make(chan struct{})
		go func() {
			s.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Close still blocked after 10 s with injects running", i)
		}
		close(stop)
		<-injected
	}
}
