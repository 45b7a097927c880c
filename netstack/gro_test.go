package netstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// batchedPair wires two stacks whose inbound side receives packets in
// batches with one Flush each, as the DTLS read loop delivers them, so GRO
// joins segments.
func batchedPair(t *testing.T) (a, b *Stack) {
	t.Helper()
	type q struct {
		mu   sync.Mutex
		pkts [][]byte
	}
	var qa, qb q
	mk := func(addr string, peerQ *q) *Stack {
		s, err := New(Config{
			Addrs:    []netip.Prefix{netip.MustParsePrefix(addr)},
			MTU:      1400,
			Headroom: 8,
		}, func(frame []byte) error {
			peerQ.mu.Lock()
			peerQ.pkts = append(peerQ.pkts, append([]byte(nil), frame[8:]...))
			peerQ.mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a = mk("198.19.20.50/24", &qb)
	b = mk("198.18.120.10/24", &qa)
	pump := func(s *Stack, in *q) {
		for {
			in.mu.Lock()
			batch := in.pkts
			in.pkts = nil
			in.mu.Unlock()
			if len(batch) == 0 {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			for _, p := range batch {
				s.Inject(p)
			}
			s.Flush()
		}
	}
	go pump(a, &qa)
	go pump(b, &qb)
	return a, b
}

func TestGROKeepsDataIntact(t *testing.T) {
	a, b := batchedPair(t)
	ln, err := gonet.ListenTCP(b.s, tcpip.FullAddress{
		NIC: nicID, Addr: tcpip.AddrFrom4([4]byte{198, 18, 120, 10}), Port: 80,
	}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	payload := make([]byte, 8<<20)
	rand.Read(payload)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write(payload)
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := a.DialContext(ctx, "tcp", "198.18.120.10:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("after %d bytes: %v (stats %+v)", len(got), err, a.Stats())
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("data differs")
	}
	t.Logf("stats %+v", a.Stats())
}
