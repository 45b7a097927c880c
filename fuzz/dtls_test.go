package fuzz

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ocnet/ocnet/datapath"
)

// The DTLS record keys of the fuzz targets: the client writes with the
// first pair and reads what the "headend" seals with the second.
var (
	fuzzWriteKey  = bytes.Repeat([]byte{0x11}, 16)
	fuzzWriteSalt = []byte{1, 2, 3, 4}
	fuzzReadKey   = bytes.Repeat([]byte{0x22}, 16)
	fuzzReadSalt  = []byte{5, 6, 7, 8}
)

const (
	contentAlert   = 21
	contentAppData = 23
	epoch          = 1
)

// sealRecord builds a DTLS 1.2 AES-128-GCM record as a headend would send
// it (RFC 6347 §4.1, RFC 5288): written here from the RFCs, independently
// of datapath's record layer, so that the two check each other.
func sealRecord(content byte, seq uint64, plain []byte) []byte {
	blk, _ := aes.NewCipher(fuzzReadKey)
	aead, _ := cipher.NewGCM(blk)
	es := uint64(epoch)<<48 | seq&(1<<48-1)

	rec := make([]byte, 13+8, 13+8+len(plain)+16)
	rec[0], rec[1], rec[2] = content, 0xfe, 0xfd
	binary.BigEndian.PutUint64(rec[3:], es)
	binary.BigEndian.PutUint16(rec[11:], uint16(8+len(plain)+16))
	binary.BigEndian.PutUint64(rec[13:], es)

	var nonce [12]byte
	copy(nonce[:], fuzzReadSalt)
	binary.BigEndian.PutUint64(nonce[4:], es)
	var aad [13]byte
	binary.BigEndian.PutUint64(aad[:], es)
	aad[8], aad[9], aad[10] = content, 0xfe, 0xfd
	binary.BigEndian.PutUint16(aad[11:], uint16(len(plain)))
	return aead.Seal(rec, nonce[:], plain, aad[:])
}

// opensUnderKey says whether rec is a well-formed record that
// authenticates under the read key, whatever its sequence number.
func opensUnderKey(rec []byte) bool {
	if len(rec) < 13+8+16 || rec[1] != 0xfe || rec[2] != 0xfd ||
		int(binary.BigEndian.Uint16(rec[11:])) != len(rec)-13 {
		return false
	}
	if rec[0] != contentAppData && rec[0] != contentAlert {
		return false
	}
	if binary.BigEndian.Uint16(rec[3:]) != epoch {
		return false
	}
	blk, _ := aes.NewCipher(fuzzReadKey)
	aead, _ := cipher.NewGCM(blk)
	var nonce [12]byte
	copy(nonce[:], fuzzReadSalt)
	copy(nonce[4:], rec[13:21])
	var aad [13]byte
	copy(aad[:8], rec[3:11])
	aad[8], aad[9], aad[10] = rec[0], 0xfe, 0xfd
	binary.BigEndian.PutUint16(aad[11:], uint16(len(rec)-13-8-16))
	_, err := aead.Open(nil, nonce[:], rec[21:], aad[:])
	return err == nil
}

// sink is a UDP socket on loopback that never reads: the channel's DPD
// responses go there. One per process, shared by every fuzz iteration.
var sink = sync.OnceValues(func() (*net.UDPConn, error) {
	return net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
})

// runRecords hands recs to a fresh DTLS channel as datagrams that arrived
// during the handoff, lets it handle them all, and returns what it
// delivered and why it stopped (nil when it was still running).
func runRecords(t *testing.T, recs [][]byte) ([][]byte, error) {
	t.Helper()

	to, err := sink()
	if err != nil {
		t.Fatal("fuzz: loopback UDP:", err)
	}
	sock, err := net.DialUDP("udp", nil, to.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal("fuzz: loopback UDP:", err)
	}

	var got [][]byte
	var d *datapath.DTLS
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err = datapath.NewDTLS(datapath.DTLSOptions{
		Conn:    sock,
		Pending: recs,
		Keys: datapath.DTLSKeys{
			Epoch: epoch, NextSeq: 1,
			WriteKey: fuzzWriteKey, WriteIV: fuzzWriteSalt,
			ReadKey: fuzzReadKey, ReadIV: fuzzReadSalt,
		},
		DPD:       30 * time.Second,
		Keepalive: 20 * time.Second,
		Deliver:   func(p []byte) { got = append(got, append([]byte(nil), p...)) },
		// The first flush follows the pending datagrams: stop there.
		Flush: func() { cancel(); d.Close() },
	})
	if err != nil {
		sock.Close()
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		d.Close()
		t.Fatal("DTLS channel did not stop after its pending records")
	}
	return got, err
}

// FuzzDTLSRecord feeds the DTLS channel one arbitrary datagram followed by
// a record sealed with the channel's read key around an arbitrary
// payload. The record layer and the payload handler must never panic;
// garbage must be dropped without effect; and the sealed record must be
// acted on exactly as its payload type says: data delivered byte for byte,
// TERMINATE, DISCONNECT and alerts ending the channel with their errors.
func FuzzDTLSRecord(f *testing.F) {
	ipv4 := append([]byte{0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0,
		198, 18, 122, 10, 198, 19, 22, 50}, make([]byte, 20)...)
	f.Add(sealRecord(contentAppData, 1, append([]byte{0}, ipv4...)), uint64(2),
		append([]byte{0}, ipv4...), false)
	f.Add([]byte{0x17, 0xfe}, uint64(7), append([]byte{3}, make([]byte, 1200)...), false)
	f.Add([]byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint64(1), []byte{9}, false)
	f.Add(sealRecord(contentAppData, 3, []byte{7})[:30], uint64(3),
		[]byte("\x05\xb0server shutting down"), false)
	f.Add(sealRecord(contentAppData, 9, []byte{0, 1}), uint64(9), []byte{0, 1}, false)
	f.Add([]byte{}, uint64(1<<48-1), []byte{}, false)
	f.Add([]byte{}, uint64(4), []byte{1, 0}, true)

	f.Fuzz(func(t *testing.T, raw []byte, seq uint64, plain []byte, alert bool) {
		if len(plain) > 16384 {
			plain = plain[:16384]
		}
		content := byte(contentAppData)
		if alert {
			content = contentAlert
		}
		rawValid := opensUnderKey(raw)
		sealed := sealRecord(content, seq, plain)

		got, err := runRecords(t, [][]byte{append([]byte(nil), raw...), sealed})
		for _, p := range got {
			if len(p) > len(raw)+len(sealed) {
				t.Fatalf("delivered %d bytes from records of %d and %d",
					len(p), len(raw), len(sealed))
			}
		}
		if err != nil && !errors.Is(err, datapath.ErrDTLSClosed) &&
			!errors.Is(err, datapath.ErrTerminated) &&
			!errors.Is(err, datapath.ErrPeerDisconnect) {
			t.Fatalf("channel failed with %v", err)
		}
		if rawValid {
			return // a real record first: either may have ended the channel
		}

		switch {
		case alert:
			if !errors.Is(err, datapath.ErrDTLSClosed) {
				t.Fatalf("alert record: err %v, want ErrDTLSClosed", err)
			}
		case len(plain) == 0:
			if err != nil || len(got) != 0 {
				t.Fatalf("empty record: err %v, %d delivered", err, len(got))
			}
		case datapath.Type(plain[0]) == datapath.TypeData:
			if err != nil || len(got) != 1 || !bytes.Equal(got[0], plain[1:]) {
				t.Fatalf("data record: err %v, %d delivered", err, len(got))
			}
		case datapath.Type(plain[0]) == datapath.TypeTerminate:
			if !errors.Is(err, datapath.ErrTerminated) {
				t.Fatalf("TERMINATE: err %v", err)
			}
		case datapath.Type(plain[0]) == datapath.TypeDisconnect:
			if !errors.Is(err, datapath.ErrPeerDisconnect) {
				t.Fatalf("DISCONNECT: err %v", err)
			}
		default:
			if err != nil || len(got) != 0 {
				t.Fatalf("%v record: err %v, %d delivered",
					datapath.Type(plain[0]), err, len(got))
			}
		}
	})
}

// FuzzLiveness drives the DPD/keepalive clock with arbitrary intervals and
// an arbitrary sequence of events, two bytes each: what happens (tick, DPD
// response, something sent) and how much later, in tenths of a second. The
// clock must follow the rules of protocol.md §3.4 as ocnet implements them:
// dead exactly when no DPD response came for more than 2×DPD; probes only
// after DPD without one, and never two within DPD/2; keepalives only after
// the keepalive interval without sending; nothing for a zero interval.
func FuzzLiveness(f *testing.F) {
	f.Add(uint8(10), uint16(20), []byte{0, 10, 0, 100, 0, 100, 0, 5, 0, 100})
	f.Add(uint8(30), uint16(32400), []byte{1, 200, 0, 255, 2, 3, 0, 255, 0, 255})
	f.Add(uint8(0), uint16(0), []byte{0, 255, 0, 255})
	f.Add(uint8(1), uint16(1), []byte{0, 11, 1, 1, 0, 11, 0, 11, 0, 11})
	f.Add(uint8(10), uint16(20), []byte{2, 10, 0, 10, 2, 10, 0, 10, 1, 0, 0, 101, 0, 50})

	f.Fuzz(func(t *testing.T, dpdSec uint8, keepSec uint16, events []byte) {
		dpd := time.Duration(dpdSec) * time.Second
		keep := time.Duration(keepSec) * time.Second
		l := &datapath.Liveness{DPD: dpd, Keepalive: keep}
		now := time.Unix(1_000_000, 0)
		l.Start(now)
		lastAck, lastTx := now, now
		var lastProbe time.Time

		for i := 0; i+1 < len(events); i += 2 {
			now = now.Add(time.Duration(events[i+1]) * 100 * time.Millisecond)
			switch events[i] % 3 {
			case 1:
				l.Answered(now)
				lastAck = now
				continue
			case 2:
				l.Sent(now)
				lastTx = now
				continue
			}

			act := l.Tick(now)
			unanswered := now.Sub(lastAck)
			dead := dpd > 0 && unanswered > 2*dpd
			if (act == datapath.ActDead) != dead {
				t.Fatalf("dpd %v, %v without a DPD response: %v", dpd, unanswered, act)
			}
			switch act {
			case datapath.ActDead:
				return
			case datapath.ActDPD:
				if dpd == 0 || unanswered <= dpd {
					t.Fatalf("probe after %v without an answer, dpd %v", unanswered, dpd)
				}
				if !lastProbe.IsZero() && now.Sub(lastProbe) <= dpd/2 {
					t.Fatalf("probes %v apart, dpd %v", now.Sub(lastProbe), dpd)
				}
				lastProbe = now
			case datapath.ActKeepalive:
				if keep == 0 || now.Sub(lastTx) <= keep {
					t.Fatalf("keepalive %v after sending, interval %v", now.Sub(lastTx), keep)
				}
			}
			if act == datapath.ActDPD || act == datapath.ActKeepalive {
				// The channel records what it sends.
				l.Sent(now)
				lastTx = now
			}
		}
	})
}
