package datapath

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

// benchPacket is the packet size of the DTLS benchmarks: a full-size
// packet under the bed's 1434-byte tunnel MTU.
const benchPacket = 1400

// loopbackLayer is a record layer whose read side opens what its write
// side seals (same key and salt both ways).
func loopbackLayer(tb testing.TB) *recordLayer {
	tb.Helper()
	k := testKeys()
	k.ReadKey, k.ReadIV = k.WriteKey, k.WriteIV
	rl, err := newRecordLayer(k)
	if err != nil {
		tb.Fatal(err)
	}
	return rl
}

// sealOpen seals one data frame of benchPacket bytes in place and opens
// the record again in place, as the two ends of the data path do.
func sealOpen(tb testing.TB, rl *recordLayer, frame []byte) {
	frame[DTLSHeadroom-1] = byte(TypeData)
	rec, err := rl.sealInPlace(frame)
	if err != nil {
		tb.Fatal(err)
	}
	pt, err := rl.openInPlace(rec)
	if err != nil || len(pt) != benchPacket+1 {
		tb.Fatalf("open: %d bytes, %v", len(pt), err)
	}
}

// BenchmarkDTLSSealOpen is the DTLS record layer's cost per packet both
// ways; BenchmarkAESGCMSealOpen is the bare cipher on the same bytes, the
// floor the record layer's framing sits on.
func BenchmarkDTLSSealOpen(b *testing.B) {
	rl := loopbackLayer(b)
	frame := make([]byte, DTLSHeadroom+benchPacket, DTLSOverhead+benchPacket)
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	for b.Loop() {
		sealOpen(b, rl, frame)
	}
}

func BenchmarkAESGCMSealOpen(b *testing.B) {
	blk, err := aes.NewCipher(testKeys().WriteKey)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		b.Fatal(err)
	}
	var nonce [12]byte
	var aad [13]byte
	buf := make([]byte, benchPacket+1, benchPacket+1+gcmTag)
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	for b.Loop() {
		nonce[11]++
		ct := aead.Seal(buf[:0], nonce[:], buf, aad[:])
		if _, err := aead.Open(ct[:0], nonce[:], ct, aad[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDTLSSealOpenAllocs guards the hot path: sealing and opening a
// record allocates nothing.
func TestDTLSSealOpenAllocs(t *testing.T) {
	rl := loopbackLayer(t)
	frame := make([]byte, DTLSHeadroom+benchPacket, DTLSOverhead+benchPacket)
	if n := testing.AllocsPerRun(1000, func() { sealOpen(t, rl, frame) }); n != 0 {
		t.Fatalf("seal+open allocates %.1f times per packet, want 0", n)
	}
}
