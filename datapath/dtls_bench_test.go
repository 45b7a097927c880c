package datapath

import (
	"crypto/aes"
	"crypto/cipher"
	"strconv"
	"testing"
)

// benchSizes are IP packet sizes: a bare ACK-ish packet, a small request,
// the tunnel MTU and a jumbo frame.
var benchSizes = []int{64, 512, 1400, 9000}

// benchLayers returns two record layers with crossed keys, as the client
// and the headend hold them: what one seals the other opens.
func benchLayers(b *testing.B) (tx, rx *recordLayer) {
	k1, k2 := make([]byte, 32), make([]byte, 32)
	for i := range k1 {
		k1[i], k2[i] = byte(i), byte(255-i)
	}
	s1, s2 := []byte{1, 2, 3, 4}, []byte{5, 6, 7, 8}
	tx, err := newRecordLayer(DTLSKeys{Epoch: 1, WriteKey: k1, WriteIV: s1,
		ReadKey: k2, ReadIV: s2})
	if err != nil {
		b.Fatal(err)
	}
	rx, err = newRecordLayer(DTLSKeys{Epoch: 1, WriteKey: k2, WriteIV: s2,
		ReadKey: k1, ReadIV: s1})
	if err != nil {
		b.Fatal(err)
	}
	return tx, rx
}

// BenchmarkRecordSealOpen seals one packet into a record and opens it again,
// in place, with AES-256-GCM as ocserv negotiates: the per-packet crypto
// cost of both directions. Compare with BenchmarkGCMSealOpen, the bare
// cipher on the same sizes.
func BenchmarkRecordSealOpen(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			tx, rx := benchLayers(b)
			buf := make([]byte, DTLSHeadroom+n, DTLSHeadroom+n+gcmTag)
			buf[DTLSHeadroom-1] = 0 // payload type: data

			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				rec, err := tx.sealInPlace(buf)
				if err != nil {
					b.Fatal(err)
				}
				pt, err := rx.openInPlace(rec)
				if err != nil {
					b.Fatal(err)
				}
				if len(pt) != n+1 {
					b.Fatalf("opened %d bytes, want %d", len(pt), n+1)
				}
			}
		})
	}
}

// BenchmarkGCMSealOpen is the floor under BenchmarkRecordSealOpen: one
// AES-256-GCM seal and open of the same payload with a 13-byte AAD, as the
// record layer does, and nothing else.
func BenchmarkGCMSealOpen(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			blk, err := aes.NewCipher(make([]byte, 32))
			if err != nil {
				b.Fatal(err)
			}
			aead, err := cipher.NewGCM(blk)
			if err != nil {
				b.Fatal(err)
			}
			nonce, aad := make([]byte, 12), make([]byte, 13)
			buf := make([]byte, n+1, n+1+gcmTag)

			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				ct := aead.Seal(buf[:0], nonce, buf, aad)
				if _, err := aead.Open(ct[:0], nonce, ct, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
