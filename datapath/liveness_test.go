package datapath

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestLivenessOneWayPath is the bed's UDP-block fault on the pure clock:
// the headend's frames keep arriving but our DPD requests go unanswered.
// Only DPD responses prove the path, so the peer is dead within two DPD
// intervals of the last answer, whatever else arrived.
func TestLivenessOneWayPath(t *testing.T) {
	t0 := time.Unix(5000, 0)
	const dpd = 10 * time.Second

	for _, tc := range []struct {
		name     string
		lastAck  time.Duration // after t0; the path breaks right after it
		wantDead time.Duration // first tick (whole seconds after t0) that says dead
	}{
		{"breaks at start", 0, 21 * time.Second},
		{"breaks after an answer at 7s", 7 * time.Second, 28 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Liveness{DPD: dpd, Keepalive: MaxDTLSKeepalive}
			l.Start(t0)
			l.Answered(t0.Add(tc.lastAck))
			probes := 0
			for s := time.Second; s <= 60*time.Second; s += time.Second {
				now := t0.Add(s)
				// Data is sent all the time; nothing the peer sends
				// counts, however much arrives.
				l.Sent(now)
				switch l.Tick(now) {
				case ActDPD:
					probes++
				case ActKeepalive:
					t.Fatalf("keepalive at %v while sending all the time", s)
				case ActDead:
					if s != tc.wantDead {
						t.Fatalf("dead at %v, want %v", s, tc.wantDead)
					}
					if s-tc.lastAck > 2*dpd+time.Second {
						t.Fatalf("dead %v after the last answer, over 2×DPD", s-tc.lastAck)
					}
					if probes < 2 {
						t.Fatalf("dead after %d probes, want at least 2", probes)
					}
					return
				}
			}
			t.Fatal("never declared dead")
		})
	}
}

// TestLivenessProbesWhileBusy: a busy path is still probed once per DPD
// interval, and each answer resets the clock.
func TestLivenessProbesWhileBusy(t *testing.T) {
	t0 := time.Unix(5000, 0)
	l := &Liveness{DPD: 10 * time.Second}
	l.Start(t0)
	var probes []time.Duration
	for s := time.Second; s <= 60*time.Second; s += time.Second {
		now := t0.Add(s)
		l.Sent(now)
		switch l.Tick(now) {
		case ActDPD:
			probes = append(probes, s)
			l.Answered(now.Add(5 * time.Millisecond)) // round trip
		case ActDead:
			t.Fatalf("dead at %v although every probe was answered", s)
		}
	}
	if len(probes) < 4 || len(probes) > 6 {
		t.Fatalf("probes at %v, want about one per 10 s", probes)
	}
}

// TestDTLSKeepaliveWithoutWaiting: a headend advertising a 9-hour DTLS
// keepalive still gets one within MaxDTLSKeepalive of silence, driven
// through the channel's own clock with made-up times.
func TestDTLSKeepaliveWithoutWaiting(t *testing.T) {
	for _, adv := range []time.Duration{0, 9 * time.Hour, 30 * time.Second, 5 * time.Second} {
		t.Run(adv.String(), func(t *testing.T) {
			d, err := NewDTLS(DTLSOptions{Keepalive: adv, Keys: testKeys()})
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Unix(9000, 0)
			d.live.Start(t0)
			want := min(adv, MaxDTLSKeepalive)
			if adv == 0 {
				want = MaxDTLSKeepalive
			}
			var first time.Duration
			for s := time.Second; s <= 30*time.Second && first == 0; s += time.Second {
				if d.live.Tick(t0.Add(s)) == ActKeepalive {
					first = s
				}
			}
			if first == 0 || first > want+time.Second || first < want {
				t.Fatalf("first keepalive after %v of silence, want just past %v", first, want)
			}
			// ocserv's switch-to-tcp-timeout is 25 s by default.
			if first >= 25*time.Second {
				t.Fatalf("keepalive after %v lets ocserv move its downstream to TCP", first)
			}
		})
	}
}

func testKeys() DTLSKeys {
	return DTLSKeys{
		Epoch:    1,
		WriteKey: bytes.Repeat([]byte{1}, 16), WriteIV: []byte{1, 2, 3, 4},
		ReadKey: bytes.Repeat([]byte{2}, 16), ReadIV: []byte{5, 6, 7, 8},
	}
}

// headendPipe runs a CSTP channel over an in-memory pipe; the test plays
// the headend on the other end.
func headendPipe(t *testing.T, dpd time.Duration) (*CSTP, net.Conn, chan error) {
	t.Helper()
	cli, srv := net.Pipe()
	c := NewCSTP(CSTPOptions{Conn: cli, DPD: dpd, Deliver: func([]byte) {}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		done <- c.Run(ctx)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Error("CSTP channel did not stop")
		}
	})
	return c, srv, done
}

// TestCSTPDPDEcho: a padded DPD request on CSTP is answered with a DPD
// response carrying the same bytes; the padding is how a headend probes
// the path MTU.
func TestCSTPDPDEcho(t *testing.T) {
	for _, n := range []int{0, 1, 100, 1400, MaxCSTPPayload} {
		t.Run(strconv.Itoa(n)+" bytes", func(t *testing.T) {
			_, srv, _ := headendPipe(t, 0)
			pad := make([]byte, n)
			for i := range pad {
				pad[i] = byte(i * 7)
			}
			req := make([]byte, CSTPHeaderLen+n)
			PutCSTPHeader(req, TypeDPDReq, n)
			copy(req[CSTPHeaderLen:], pad)
			go srv.Write(req)

			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, CSTPReadBufferLen)
			typ, p, err := NewCSTPReader(bufio.NewReader(srv)).ReadFrame(buf)
			if err != nil {
				t.Fatal(err)
			}
			if typ != TypeDPDResp || !bytes.Equal(p, pad) {
				t.Fatalf("got %v with %d bytes, want DPD-RESP echoing %d", typ, len(p), n)
			}
		})
	}
}

// TestCSTPDeadPeer: a headend that takes our frames but never answers a
// DPD request is given up after two DPD intervals, with ErrDeadPeer; one
// that answers, even without echoing the padding, is kept.
func TestCSTPDeadPeer(t *testing.T) {
	const dpd = time.Second
	for _, tc := range []struct {
		name   string
		answer bool
	}{
		{"silent headend", false},
		{"answering headend", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, srv, done := headendPipe(t, dpd)
			rd := NewCSTPReader(bufio.NewReader(srv))
			go func() {
				buf := make([]byte, CSTPReadBufferLen)
				for {
					typ, _, err := rd.ReadFrame(buf)
					if err != nil {
						return
					}
					if typ == TypeDPDReq && tc.answer {
						// A response without the request's bytes.
						resp := make([]byte, CSTPHeaderLen)
						PutCSTPHeader(resp, TypeDPDResp, 0)
						if _, err := srv.Write(resp); err != nil {
							return
						}
					}
				}
			}()
			begin := time.Now()
			select {
			case err := <-done:
				if tc.answer {
					t.Fatalf("answering headend dropped: %v", err)
				}
				if !errors.Is(err, ErrDeadPeer) {
					t.Fatalf("err %v, want ErrDeadPeer", err)
				}
				if took := time.Since(begin); took > 2*dpd+1500*time.Millisecond {
					t.Fatalf("dead after %v, want about 2×DPD", took)
				}
			case <-time.After(4 * dpd):
				if !tc.answer {
					t.Fatal("silent headend still alive after 4×DPD")
				}
			}
		})
	}
}

// TestDTLSDeadPeer: the same on DTLS, where the channel's socket talks to
// a UDP socket that reads and never answers: data and keepalives go out,
// nothing comes back, and the channel ends with ErrDeadPeer.
func TestDTLSDeadPeer(t *testing.T) {
	const dpd = time.Second
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	hole, err := net.ListenUDP("udp", lo)
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	go io.Copy(io.Discard, hole)
	sock, err := net.DialUDP("udp", lo, hole.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDTLS(DTLSOptions{Conn: sock, Keys: testKeys(), DPD: dpd, Keepalive: time.Hour,
		Deliver: func([]byte) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	begin := time.Now()
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrDeadPeer) {
			t.Fatalf("err %v, want ErrDeadPeer", err)
		}
		if took := time.Since(begin); took > 2*dpd+1500*time.Millisecond {
			t.Fatalf("dead after %v, want about 2×DPD", took)
		}
	case <-time.After(5 * dpd):
		t.Fatal("DTLS channel to a silent peer still alive after 5×DPD")
	}
}
