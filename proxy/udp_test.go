package proxy

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/split"
)

// startUDPEcho answers every datagram with "echo:" and its payload.
func startUDPEcho(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// TestUDPAssociate relays datagrams to a tunnel name, a tunnel address
// and a direct address through one association, and checks the path each
// took, the reply headers, and that a stranger's datagrams are dropped.
func TestUDPAssociate(t *testing.T) {
	port := startUDPEcho(t)
	dnsAddr := startDNS(t)
	tunnel, direct := &appDialer{}, &appDialer{}
	policy := &split.Policy{
		Include: []netip.Prefix{netip.MustParsePrefix(corpNet)},
		Domains: []string{"corp.example"},
	}
	r := &Router{
		Policy: policy,
		Resolver: dnsproxy.New(dnsproxy.Options{
			Policy: policy, Servers: []netip.Addr{dnsAddr.Addr()}, Port: dnsAddr.Port(),
			Tunnel: &recordingDialer{},
		}),
		Tunnel: tunnel,
		Direct: direct,
	}
	socksAddr, _ := servers(t, r, Options{})

	c := &SOCKSClient{Server: socksAddr, App: "dig"}
	ctrl, relay, err := c.Associate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	if !relay.Addr().IsLoopback() || relay.Port() == 0 {
		t.Fatalf("relay address %v, want a loopback port", relay)
	}

	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	ps := strconv.Itoa(int(port))
	tests := []struct {
		name, dst, wantSrc string
	}{
		{"tunnel name", "echo.corp.example:" + ps, corpIP + ":" + ps},
		{"tunnel address", corpIP + ":" + ps, corpIP + ":" + ps},
		{"direct address", outsideIP + ":" + ps, outsideIP + ":" + ps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr, err := appendRequest([]byte{0, 0, 0}, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			msg := append(hdr, "hello "+tt.name...)
			got := exchangeUDP(t, pc, relay, msg)
			src, payload, err := ParseSOCKSUDP(got)
			if err != nil {
				t.Fatalf("reply %q: %v", got, err)
			}
			if src != tt.wantSrc || string(payload) != "echo:hello "+tt.name {
				t.Errorf("reply from %s: %q; want from %s: %q", src, payload, tt.wantSrc,
					"echo:hello "+tt.name)
			}
		})
	}

	wantT := []string{"udp " + corpIP + ":" + ps + " dig"}
	wantD := []string{"udp " + outsideIP + ":" + ps + " dig"}
	// The name and the literal are two flows to the same address.
	if got := tunnel.seen(); !slices.Equal(got, append(wantT, wantT...)) {
		t.Errorf("tunnel dials %q, want %q twice", got, wantT)
	}
	if got := direct.seen(); !slices.Equal(got, wantD) {
		t.Errorf("direct dials %q, want %q", got, wantD)
	}

	// Datagrams from another port than the first are not the client's.
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	hdr, _ := appendRequest([]byte{0, 0, 0}, corpIP+":"+ps)
	stranger.WriteToUDPAddrPort(append(hdr, "intruder"...), relay)
	stranger.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := stranger.ReadFromUDPAddrPort(make([]byte, 100)); err == nil {
		t.Error("relay answered a datagram from a stranger's port")
	}

	// Closing the control connection ends the association.
	ctrl.Close()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		hdr, _ := appendRequest([]byte{0, 0, 0}, corpIP+":"+ps)
		pc.WriteToUDPAddrPort(append(hdr, "late"...), relay)
		pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := pc.ReadFromUDPAddrPort(make([]byte, 100)); err != nil {
			return // timeout, or ICMP port unreachable: the relay is gone
		}
	}
	t.Error("the relay still answers after the control connection closed")
}

func exchangeUDP(t *testing.T, pc *net.UDPConn, to netip.AddrPort, msg []byte) []byte {
	t.Helper()
	buf := make([]byte, 65535)
	// UDP may drop; try a few times within a bound.
	for range 5 {
		if _, err := pc.WriteToUDPAddrPort(msg, to); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err == nil {
			if from != to {
				t.Fatalf("reply from %v, want the relay %v", from, to)
			}
			return buf[:n]
		}
	}
	t.Fatal("no reply through the relay")
	return nil
}
