package datapath

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
)

// The DTLS 1.2 record layer for AEAD suites (RFC 6347 §4.1, RFC 5288 for
// the GCM nonce), owned here rather than left to pion: pion's Conn costs
// tens of allocations per packet, and the data path must cost none. pion
// still does the handshake; its keys arrive here as DTLSKeys.

const (
	recordHeaderLen = 13 // type, version, epoch, sequence (48 bits), length
	explicitNonce   = 8  // the per-record part of the GCM nonce
	gcmTag          = 16
	contentAppData  = 23
	contentAlert    = 21

	// DTLSHeadroom is what a DTLS frame needs in front of a packet: the
	// record header, the explicit nonce and the one-byte payload type.
	DTLSHeadroom = recordHeaderLen + explicitNonce + 1

	// DTLSOverhead is every byte a packet grows by inside a record.
	DTLSOverhead = DTLSHeadroom + gcmTag
)

// Record errors; a record that fails is dropped and counted, never fatal.
var (
	ErrRecordShort   = errors.New("datapath: dtls record too short")
	ErrRecordType    = errors.New("datapath: dtls record of a content type we do not carry")
	ErrRecordEpoch   = errors.New("datapath: dtls record from another epoch")
	ErrRecordReplay  = errors.New("datapath: dtls record replayed or too old")
	ErrRecordAuth    = errors.New("datapath: dtls record failed authentication")
	ErrRecordVersion = errors.New("datapath: dtls record of another version")
)

// DTLSKeys are the keys of an established DTLS 1.2 association with an
// AES-GCM suite. The key and salt slices are copied by NewRecordLayer.
type DTLSKeys struct {
	Epoch             uint16
	NextSeq           uint64 // first sequence number this side sends
	WriteKey, WriteIV []byte // IV: the 4-byte implicit salt
	ReadKey, ReadIV   []byte
	CipherSuite       uint16
	CipherSuiteName   string
}

// recordLayer seals and opens records in place. seal and open are not safe
// for concurrent use; the DTLS channel serialises each direction.
type recordLayer struct {
	epoch     uint16
	seq       uint64
	seal, opn cipher.AEAD
	wsalt     [4]byte
	rsalt     [4]byte

	// Scratch for seal and open, so neither allocates.
	wnonce, rnonce [12]byte
	waad, raad     [13]byte

	replay replayWindow
}

func newRecordLayer(k DTLSKeys) (*recordLayer, error) {
	if len(k.WriteIV) != 4 || len(k.ReadIV) != 4 {
		return nil, errors.New("datapath: dtls keys: GCM salt must be 4 bytes")
	}
	w, err := newGCM(k.WriteKey)
	if err != nil {
		return nil, err
	}
	r, err := newGCM(k.ReadKey)
	if err != nil {
		return nil, err
	}
	rl := &recordLayer{epoch: k.Epoch, seq: k.NextSeq, seal: w, opn: r}
	copy(rl.wsalt[:], k.WriteIV)
	copy(rl.rsalt[:], k.ReadIV)
	return rl, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("datapath: dtls key: %w", err)
	}
	return cipher.NewGCM(b)
}

// sealInPlace turns frame into one record. frame[:DTLSHeadroom-1] is free,
// frame[DTLSHeadroom-1] is the payload type and the rest the payload; the
// frame's capacity must leave gcmTag bytes after it. It returns the record.
func (rl *recordLayer) sealInPlace(frame []byte) ([]byte, error) {
	if cap(frame)-len(frame) < gcmTag {
		return nil, errors.New("datapath: dtls frame has no room for the tag")
	}
	pt := frame[recordHeaderLen+explicitNonce:]
	seq := rl.seq
	rl.seq++
	epochSeq := uint64(rl.epoch)<<48 | seq&(1<<48-1)

	hdr := frame[:recordHeaderLen]
	hdr[0] = contentAppData
	hdr[1], hdr[2] = 0xfe, 0xfd
	binary.BigEndian.PutUint64(hdr[3:11], epochSeq)
	binary.BigEndian.PutUint16(hdr[11:13], uint16(explicitNonce+len(pt)+gcmTag))

	// The explicit nonce is the record's epoch and sequence number, as
	// GnuTLS and pion both do; it never repeats under one key.
	binary.BigEndian.PutUint64(frame[recordHeaderLen:], epochSeq)
	copy(rl.wnonce[:4], rl.wsalt[:])
	binary.BigEndian.PutUint64(rl.wnonce[4:], epochSeq)

	binary.BigEndian.PutUint64(rl.waad[:8], epochSeq)
	rl.waad[8] = contentAppData
	rl.waad[9], rl.waad[10] = 0xfe, 0xfd
	binary.BigEndian.PutUint16(rl.waad[11:], uint16(len(pt)))

	rl.seal.Seal(pt[:0], rl.wnonce[:], pt, rl.waad[:])
	return frame[:len(frame)+gcmTag], nil
}

// openInPlace checks and decrypts one record; the plaintext aliases rec.
func (rl *recordLayer) openInPlace(rec []byte) ([]byte, error) {
	if len(rec) < recordHeaderLen+explicitNonce+gcmTag {
		return nil, ErrRecordShort
	}
	switch rec[0] {
	case contentAppData, contentAlert:
	default:
		return nil, ErrRecordType
	}
	if rec[1] != 0xfe || rec[2] != 0xfd {
		return nil, ErrRecordVersion
	}
	epochSeq := binary.BigEndian.Uint64(rec[3:11])
	if uint16(epochSeq>>48) != rl.epoch {
		return nil, ErrRecordEpoch
	}
	n := int(binary.BigEndian.Uint16(rec[11:13]))
	if n != len(rec)-recordHeaderLen || n < explicitNonce+gcmTag {
		return nil, ErrRecordShort
	}
	seq := epochSeq & (1<<48 - 1)
	if !rl.replay.check(seq) {
		return nil, ErrRecordReplay
	}

	copy(rl.rnonce[:4], rl.rsalt[:])
	copy(rl.rnonce[4:], rec[recordHeaderLen:recordHeaderLen+explicitNonce])
	ct := rec[recordHeaderLen+explicitNonce:]
	binary.BigEndian.PutUint64(rl.raad[:8], epochSeq)
	rl.raad[8] = rec[0]
	rl.raad[9], rl.raad[10] = 0xfe, 0xfd
	binary.BigEndian.PutUint16(rl.raad[11:], uint16(len(ct)-gcmTag))

	pt, err := rl.opn.Open(ct[:0], rl.rnonce[:], ct, rl.raad[:])
	if err != nil {
		return nil, ErrRecordAuth
	}
	rl.replay.accept(seq)
	if rec[0] == contentAlert {
		return pt, errAlert
	}
	return pt, nil
}

// errAlert marks a (decrypted) alert record: the peer is closing DTLS.
var errAlert = errors.New("datapath: dtls alert from headend")

// replayWindow is RFC 6347 §4.1.2.6's sliding window of 64 records.
type replayWindow struct {
	top  uint64 // highest sequence number accepted
	bits uint64 // bit i set: top-i was seen
	seen bool
}

func (w *replayWindow) check(seq uint64) bool {
	if !w.seen || seq > w.top {
		return true
	}
	d := w.top - seq
	if d >= 64 {
		return false
	}
	return w.bits&(1<<d) == 0
}

// accept records seq; call only after the record authenticated.
func (w *replayWindow) accept(seq uint64) {
	switch {
	case !w.seen:
		w.top, w.bits, w.seen = seq, 1, true
	case seq > w.top:
		shift := seq - w.top
		if shift >= 64 {
			w.bits = 1
		} else {
			w.bits = w.bits<<shift | 1
		}
		w.top = seq
	default:
		w.bits |= 1 << (w.top - seq)
	}
}
