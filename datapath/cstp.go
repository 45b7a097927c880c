// CSTP framing: the 8-byte header that precedes every packet on the TLS
// stream once the headend has answered CONNECT with 200 (protocol.md §3).
//
//	offset 0..3  'S' 'T' 'F' 0x01   magic and version
//	offset 4..5  payload length, big-endian, header not counted
//	offset 6     packet type (Type)
//	offset 7     0x00, ocserv drops the frame otherwise

package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// CSTPHeaderLen is the size of the header in front of every CSTP frame.
const CSTPHeaderLen = 8

// MaxCSTPPayload is the largest payload ocnet is prepared to receive. The
// headend may send frames larger than the negotiated MTU; openconnect copes
// by reserving 16 KiB, and so do we.
const MaxCSTPPayload = 16384

// CSTPReadBufferLen is the buffer size callers should give to
// CSTPReader.ReadFrame: one header plus the largest payload.
const CSTPReadBufferLen = CSTPHeaderLen + MaxCSTPPayload

// maxCSTPLength is what the 16-bit length field can express.
const maxCSTPLength = 0xFFFF

// Type is the packet type in byte 6 of a CSTP header and in the first byte
// of a DTLS record; both channels share the numbering (protocol.md §3.2).
type Type byte

// Packet types. 0x01 and 0x02 are unassigned.
const (
	TypeData       Type = 0x00 // one raw IPv4 or IPv6 packet
	TypeDPDReq     Type = 0x03 // dead-peer-detection probe; the peer echoes it
	TypeDPDResp    Type = 0x04 // answer to TypeDPDReq with the same payload
	TypeDisconnect Type = 0x05 // session end; see DisconnectPayload
	TypeKeepalive  Type = 0x07 // no payload; the receiver discards it
	TypeCompressed Type = 0x08 // compressed IP packet; ocnet never asks for it
	TypeTerminate  Type = 0x09 // server kicked the session; cookie is dead
)

// String returns the protocol name of t, or its number when t is unknown.
func (t Type) String() string {
	switch t {
	case TypeData:
		return "DATA"
	case TypeDPDReq:
		return "DPD-REQ"
	case TypeDPDResp:
		return "DPD-RESP"
	case TypeDisconnect:
		return "DISCONNECT"
	case TypeKeepalive:
		return "KEEPALIVE"
	case TypeCompressed:
		return "COMPRESSED"
	case TypeTerminate:
		return "TERMINATE"
	}
	return "Type(0x" + strconv.FormatUint(uint64(t), 16) + ")"
}

// Errors returned by ParseCSTPHeader and CSTPReader. A header error means
// the byte stream is no longer aligned on frames and the connection must be
// dropped; ErrFrameTooLarge leaves the stream aligned (the payload has been
// skipped).
var (
	ErrShortHeader   = errors.New("datapath: cstp header shorter than 8 bytes")
	ErrBadMagic      = errors.New("datapath: cstp header does not start with STF")
	ErrBadVersion    = errors.New("datapath: cstp header has unknown version")
	ErrBadReserved   = errors.New("datapath: cstp header has non-zero reserved byte")
	ErrFrameTooLarge = errors.New("datapath: cstp frame larger than read buffer")
)

// PutCSTPHeader writes the header of a frame of type t carrying n payload
// bytes into b[:CSTPHeaderLen]. The payload itself is the caller's business;
// it usually already sits at b[CSTPHeaderLen:].
//
// b shorter than CSTPHeaderLen or n outside [0, 65535] is a programming
// error and panics: the length field cannot say more, and a truncated length
// would desynchronise the peer's parser.
func PutCSTPHeader(b []byte, t Type, n int) {
	if n < 0 || n > maxCSTPLength {
		panic("datapath: cstp payload length " + strconv.Itoa(n) + " out of range")
	}
	_ = b[CSTPHeaderLen-1]

	b[0], b[1], b[2], b[3] = 'S', 'T', 'F', 1
	binary.BigEndian.PutUint16(b[4:6], uint16(n))
	b[6] = byte(t)
	b[7] = 0
}

// ParseCSTPHeader checks the header at the start of b and returns the frame
// type and payload length. Types outside the known set are returned as-is:
// whether to drop or fail on them is the caller's policy.
func ParseCSTPHeader(b []byte) (Type, int, error) {
	if len(b) < CSTPHeaderLen {
		return 0, 0, ErrShortHeader
	}
	if b[0] != 'S' || b[1] != 'T' || b[2] != 'F' {
		return 0, 0, ErrBadMagic
	}
	if b[3] != 1 {
		return 0, 0, ErrBadVersion
	}
	if b[7] != 0 {
		return 0, 0, ErrBadReserved
	}
	return Type(b[6]), int(binary.BigEndian.Uint16(b[4:6])), nil
}

// CSTPReader splits the TLS byte stream into CSTP frames. It adds no
// buffering of its own: wrap the connection in a bufio.Reader (session hands
// one over, already holding any bytes read past the CONNECT reply).
//
// A CSTPReader is not safe for concurrent use; one receive loop owns it.
type CSTPReader struct {
	r io.Reader
}

// NewCSTPReader returns a reader that takes frames from r.
func NewCSTPReader(r io.Reader) *CSTPReader {
	return &CSTPReader{r: r}
}

// ReadFrame blocks until one whole frame has arrived, reads it into buf and
// returns its type and payload. The payload aliases buf and is valid until
// the next call. buf should be CSTPReadBufferLen bytes; ReadFrame does not
// allocate.
//
// A frame whose payload does not fit in buf is read and thrown away, and
// ReadFrame returns an error wrapping ErrFrameTooLarge with the frame's
// type; the stream stays aligned so the caller may go on reading. A clean
// end of stream between frames is io.EOF; an end inside a frame is
// io.ErrUnexpectedEOF.
func (c *CSTPReader) ReadFrame(buf []byte) (Type, []byte, error) {
	if len(buf) < CSTPHeaderLen {
		return 0, nil, fmt.Errorf("datapath: cstp read buffer of %d bytes cannot hold a header",
			len(buf))
	}

	if _, err := io.ReadFull(c.r, buf[:CSTPHeaderLen]); err != nil {
		return 0, nil, err
	}
	t, n, err := ParseCSTPHeader(buf)
	if err != nil {
		return 0, nil, err
	}

	end := CSTPHeaderLen + n
	if end > len(buf) {
		return t, nil, c.skip(buf, t, n)
	}

	if _, err := io.ReadFull(c.r, buf[CSTPHeaderLen:end]); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	return t, buf[CSTPHeaderLen:end], nil
}

// skip discards an n-byte payload that does not fit in buf, so that the
// next ReadFrame starts on a header again. buf keeps the header for the
// caller. It used buf as scratch once: that overwrote the header, and a
// buffer of exactly CSTPHeaderLen bytes left no room and looped forever
// (found by FuzzCSTPFrame; the crasher is in its corpus).
func (c *CSTPReader) skip(buf []byte, t Type, n int) error {
	if _, err := io.CopyN(io.Discard, c.r, int64(n)); err != nil {
		return unexpectedEOF(err)
	}
	return fmt.Errorf("%w: %s frame with %d-byte payload, buffer holds %d",
		ErrFrameTooLarge, t, n, len(buf)-CSTPHeaderLen)
}

// unexpectedEOF turns a clean EOF inside a frame into io.ErrUnexpectedEOF,
// since the peer stopped half-way through.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// DisconnectUserLogout is the first payload byte of a client DISCONNECT
// that ends the session for good: ocserv then invalidates the cookie. An
// empty DISCONNECT payload instead announces a reconnect.
const DisconnectUserLogout = 0xB0

// DisconnectPayload returns the payload of a user-logout DISCONNECT frame:
// DisconnectUserLogout followed by reason, which ocserv logs. Reason is
// trimmed to printable ASCII so it cannot smuggle anything into server logs.
func DisconnectPayload(reason string) []byte {
	p := make([]byte, 0, 1+len(reason))
	p = append(p, DisconnectUserLogout)
	for i := 0; i < len(reason); i++ {
		if c := reason[i]; c >= 0x20 && c < 0x7F {
			p = append(p, c)
		}
	}
	return p
}

// DisconnectReason returns the human-readable part of a DISCONNECT payload
// from the server: a reason code byte followed by text. Bytes that are not
// printable ASCII are dropped, so the result is safe to log or show.
func DisconnectReason(payload []byte) string {
	if len(payload) <= 1 {
		return ""
	}
	var b strings.Builder
	for _, c := range payload[1:] {
		if c >= 0x20 && c < 0x7F {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}
