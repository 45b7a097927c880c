package datapath

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v2"
)

// udpPeer is a net.Conn over an unconnected socket with one fixed peer, for
// pion's server side in tests.
type udpPeer struct {
	*net.UDPConn
	peer *net.UDPAddr
}

func (u udpPeer) Read(p []byte) (int, error) {
	for {
		n, from, err := u.ReadFromUDP(p)
		if err != nil || from.String() == u.peer.String() {
			return n, err
		}
	}
}
func (u udpPeer) Write(p []byte) (int, error) { return u.WriteToUDP(p, u.peer) }
func (u udpPeer) RemoteAddr() net.Addr        { return u.peer }

// handshake runs a pion PSK handshake over loopback and hands the client's
// socket to our record layer, as the session does against ocserv. The
// server sends early, if any, as soon as its side of the handshake is done,
// and the client takes its time before it detaches the socket.
func handshake(t *testing.T, suite dtls.CipherSuiteID, early ...[]byte) (*DTLS, *dtls.Conn,
	chan []byte) {
	t.Helper()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	srvSock, err := net.ListenUDP("udp", lo)
	if err != nil {
		t.Fatal(err)
	}
	cliSock, err := net.DialUDP("udp", lo, srvSock.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	psk := bytes.Repeat([]byte{7}, 32)
	conf := &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return psk, nil },
		PSKIdentityHint: []byte("psk"),
		CipherSuites:    []dtls.CipherSuiteID{suite},
	}

	srvc := make(chan *dtls.Conn, 1)
	go func() {
		c, err := dtls.Server(udpPeer{srvSock, cliSock.LocalAddr().(*net.UDPAddr)}, conf)
		if err != nil {
			t.Error(err)
		}
		for _, p := range early {
			c.Write(p)
		}
		srvc <- c
	}()
	hc := NewHandoffConn(cliSock)
	cli, err := dtls.Client(hc, conf)
	if err != nil {
		t.Fatal(err)
	}
	srv := <-srvc
	if srv == nil {
		t.FailNow()
	}

	keys, err := KeysFromPion(cli)
	if err != nil {
		t.Fatal(err)
	}
	if len(early) > 0 {
		time.Sleep(50 * time.Millisecond) // pion's reader sees them first
	}
	sock, pending := hc.Detach()
	cli.Close()

	got := make(chan []byte, 16)
	d, err := NewDTLS(DTLSOptions{
		Conn: sock, Pending: pending, Keys: keys,
		DPD: 30 * time.Second, Keepalive: time.Hour,
		Deliver: func(p []byte) { got <- append([]byte(nil), p...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); srv.Close(); srvSock.Close() })
	return d, srv, got
}

// TestDTLSEarlyDataKept: records the headend sends right after its side
// of the handshake, before the socket leaves pion, still reach the stack.
// They used to be swallowed by pion's reader (a tunnel's first DNS answer
// was lost that way).
func TestDTLSEarlyDataKept(t *testing.T) {
	var early [][]byte
	for i := range 3 {
		early = append(early, []byte{byte(TypeData), 0x45, byte(i)})
	}
	d, _, got := handshake(t, dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, early...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)

	for i := range early {
		select {
		case p := <-got:
			if !bytes.Equal(p, early[i][1:]) {
				t.Fatalf("packet %d: got %x, want %x", i, p, early[i][1:])
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet %d of %d sent before the handoff never arrived", i, len(early))
		}
	}
}

func TestDTLSRecordsInteroperateWithPion(t *testing.T) {
	for _, tc := range []struct {
		name  string
		suite dtls.CipherSuiteID
	}{
		{"PSK AES-128-GCM", dtls.TLS_PSK_WITH_AES_128_GCM_SHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, srv, got := handshake(t, tc.suite)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go d.Run(ctx)

			// Ours to pion: one data record per packet.
			pkt := bytes.Repeat([]byte{0x45, 1, 2, 3}, 350)
			frame := make([]byte, DTLSHeadroom+len(pkt), DTLSOverhead+len(pkt))
			copy(frame[DTLSHeadroom:], pkt)
			if err := d.WritePacket(frame); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := srv.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if buf[0] != byte(TypeData) || !bytes.Equal(buf[1:n], pkt) {
				t.Fatalf("pion read %d bytes of another packet", n)
			}

			// Pion to ours.
			if _, err := srv.Write(append([]byte{0}, pkt...)); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-got:
				if !bytes.Equal(p, pkt) {
					t.Fatal("delivered packet differs")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no packet delivered")
			}

			// A padded DPD request comes back with the same bytes.
			probe := append([]byte{byte(TypeDPDReq)}, make([]byte, 1200)...)
			probe[600] = 0x5a
			srv.Write(probe)
			n, err = srv.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if buf[0] != byte(TypeDPDResp) || !bytes.Equal(buf[1:n], probe[1:]) {
				t.Fatalf("DPD response of %d bytes does not echo the request", n)
			}
		})
	}
}

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	for _, tc := range []struct {
		seq  uint64
		want bool
	}{
		{5, true}, {5, false}, {4, true}, {4, false}, {70, true},
		{6, false}, {69, true}, {69, false}, {200, true}, {137, true}, {136, false},
	} {
		ok := w.check(tc.seq)
		if ok != tc.want {
			t.Fatalf("seq %d: check = %v, want %v", tc.seq, ok, tc.want)
		}
		if ok {
			w.accept(tc.seq)
		}
	}
}

func TestOpenRejectsBadRecords(t *testing.T) {
	rl, err := newRecordLayer(DTLSKeys{
		Epoch: 1, WriteKey: make([]byte, 16), WriteIV: make([]byte, 4),
		ReadKey: make([]byte, 16), ReadIV: make([]byte, 4),
	})
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, DTLSHeadroom+20, DTLSOverhead+20)
	rec, err := rl.sealInPlace(frame)
	if err != nil {
		t.Fatal(err)
	}
	good := append([]byte(nil), rec...)

	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
		want error
	}{
		{"short", func(b []byte) []byte { return b[:10] }, ErrRecordShort},
		{"handshake type", func(b []byte) []byte { b[0] = 22; return b }, ErrRecordType},
		{"epoch", func(b []byte) []byte { b[4] = 2; return b }, ErrRecordEpoch},
		{"length", func(b []byte) []byte { b[12]++; return b }, ErrRecordShort},
		{"tampered", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, ErrRecordAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rl.openInPlace(tc.mod(append([]byte(nil), good...)))
			if err != tc.want {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Our own reader shares the keys in this test (read = write key).
	if _, err := rl.openInPlace(append([]byte(nil), good...)); err != nil {
		t.Fatalf("good record: %v", err)
	}
	if _, err := rl.openInPlace(append([]byte(nil), good...)); err != ErrRecordReplay {
		t.Fatalf("replayed record: %v", err)
	}
}
