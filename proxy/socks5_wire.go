package proxy

// The SOCKS5 wire format (RFC 1928) and its username/password
// sub-negotiation (RFC 1929): readers that check every length before
// using it, and writers for the replies and the UDP relay header.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// SOCKS5 constants from RFC 1928 and RFC 1929.
const (
	socksVersion = 5

	methodNone     = 0x00
	methodUserPass = 0x02
	methodNoAccept = 0xff

	userPassVersion = 1

	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4
)

// SOCKS5 commands (RFC 1928 section 4).
const (
	SOCKSConnect      byte = 1
	SOCKSBind         byte = 2
	SOCKSUDPAssociate byte = 3
)

// SOCKS5 reply codes (RFC 1928 section 6).
const (
	repSucceeded          = 0
	repGeneralFailure     = 1
	repNotAllowed         = 2
	repNetUnreachable     = 3
	repHostUnreachable    = 4
	repConnRefused        = 5
	repTTLExpired         = 6
	repCmdNotSupported    = 7
	repAddrTypeNotSupport = 8
)

// ErrSOCKSProtocol marks a SOCKS5 message that breaks RFC 1928 or 1929.
var ErrSOCKSProtocol = errors.New("proxy: socks5 protocol error")

// errAddrType is a request whose address type is none of the three.
var errAddrType = fmt.Errorf("%w: unknown address type", ErrSOCKSProtocol)

// SOCKSRequest is one SOCKS5 request: the command and the destination as
// "host:port", the host an IP literal or a name that is not resolved here.
type SOCKSRequest struct {
	Cmd  byte
	Addr string
}

// ReadSOCKSRequest reads a request (RFC 1928 section 4) from r. A domain
// name must be 1 to 255 bytes of a host name's alphabet (see checkName);
// it is returned unresolved.
// Port 0 is allowed because UDP ASSOCIATE uses it; CONNECT refuses it.
func ReadSOCKSRequest(r io.Reader) (SOCKSRequest, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return SOCKSRequest{}, fmt.Errorf("proxy: socks5 request: %w", err)
	}
	if hdr[0] != socksVersion {
		return SOCKSRequest{}, fmt.Errorf("%w: request version %d", ErrSOCKSProtocol, hdr[0])
	}
	addr, err := readSOCKSAddr(r)
	if err != nil {
		return SOCKSRequest{}, err
	}
	return SOCKSRequest{Cmd: hdr[1], Addr: addr}, nil
}

// readSOCKSAddr reads ATYP, DST.ADDR and DST.PORT and returns "host:port".
func readSOCKSAddr(r io.Reader) (string, error) {
	var atyp [1]byte
	if _, err := io.ReadFull(r, atyp[:]); err != nil {
		return "", fmt.Errorf("proxy: socks5 address: %w", err)
	}

	var host string
	switch atyp[0] {
	case atypIPv4, atypIPv6:
		n := 4
		if atyp[0] == atypIPv6 {
			n = 16
		}
		var b [16]byte
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			return "", fmt.Errorf("proxy: socks5 address: %w", err)
		}
		ip, _ := netip.AddrFromSlice(b[:n])
		host = ip.String()
	case atypDomain:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return "", fmt.Errorf("proxy: socks5 address: %w", err)
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(r, name); err != nil {
			return "", fmt.Errorf("proxy: socks5 address: %w", err)
		}
		if err := checkName(name); err != nil {
			return "", err
		}
		host = string(name)
	default:
		return "", errAddrType
	}

	var port [2]byte
	if _, err := io.ReadFull(r, port[:]); err != nil {
		return "", fmt.Errorf("proxy: socks5 port: %w", err)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), nil
}

// checkName accepts a host name of letters, digits, '-', '_' and '.', so
// that nothing odd reaches the resolver or a log line and "name:port"
// splits back into the two. (An IPv6 literal comes with its own address
// type, never as a name.)
func checkName(name []byte) error {
	if len(name) == 0 {
		return fmt.Errorf("%w: empty domain name", ErrSOCKSProtocol)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: domain name with byte %#x", ErrSOCKSProtocol, c)
		}
	}
	return nil
}

// validHost reports whether host is an IP literal or a host name that
// checkName accepts.
func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return len(host) <= 255 && checkName([]byte(host)) == nil
}

// appendSOCKSAddr appends ATYP, ADDR and PORT for ap.
func appendSOCKSAddr(b []byte, ap netip.AddrPort) []byte {
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		b = append(b, atypIPv4)
	} else {
		b = append(b, atypIPv6)
	}
	b = append(b, ip.AsSlice()...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// writeSOCKSReply sends a reply with the bound address bnd (the zero
// AddrPort becomes 0.0.0.0:0).
func writeSOCKSReply(w io.Writer, rep byte, bnd netip.AddrPort) error {
	if !bnd.Addr().IsValid() {
		bnd = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	}
	b := appendSOCKSAddr([]byte{socksVersion, rep, 0}, bnd)
	_, err := w.Write(b)
	return err
}

// readGreeting reads the client's method list (RFC 1928 section 3).
func readGreeting(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("proxy: socks5 greeting: %w", err)
	}
	if hdr[0] != socksVersion {
		return nil, fmt.Errorf("%w: version %d", ErrSOCKSProtocol, hdr[0])
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, fmt.Errorf("proxy: socks5 greeting: %w", err)
	}
	return methods, nil
}

// readUserPass reads an RFC 1929 username/password request.
func readUserPass(r io.Reader) (user, pass string, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", "", fmt.Errorf("proxy: socks5 auth: %w", err)
	}
	if hdr[0] != userPassVersion {
		return "", "", fmt.Errorf("%w: auth version %d", ErrSOCKSProtocol, hdr[0])
	}
	u := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, u); err != nil {
		return "", "", fmt.Errorf("proxy: socks5 auth: %w", err)
	}
	var plen [1]byte
	if _, err := io.ReadFull(r, plen[:]); err != nil {
		return "", "", fmt.Errorf("proxy: socks5 auth: %w", err)
	}
	p := make([]byte, plen[0])
	if _, err := io.ReadFull(r, p); err != nil {
		return "", "", fmt.Errorf("proxy: socks5 auth: %w", err)
	}
	return string(u), string(p), nil
}

// ParseSOCKSUDP splits a datagram from a UDP ASSOCIATE client (RFC 1928
// section 7) into its destination ("host:port") and payload. The payload
// aliases b. Fragments (FRAG != 0) are refused: no client in use sends
// them and the RFC lets a relay drop them.
func ParseSOCKSUDP(b []byte) (dst string, payload []byte, err error) {
	if len(b) < 4 {
		return "", nil, fmt.Errorf("%w: short UDP header", ErrSOCKSProtocol)
	}
	if b[0] != 0 || b[1] != 0 {
		return "", nil, fmt.Errorf("%w: UDP header reserved bytes set", ErrSOCKSProtocol)
	}
	if b[2] != 0 {
		return "", nil, fmt.Errorf("%w: UDP fragment %d", ErrSOCKSProtocol, b[2])
	}
	r := &sliceReader{b: b[3:]}
	dst, err = readSOCKSAddr(r)
	if err != nil {
		return "", nil, err
	}
	return dst, r.b, nil
}

// AppendSOCKSUDPHeader appends the header of a datagram relayed back to
// the client from src.
func AppendSOCKSUDPHeader(b []byte, src netip.AddrPort) []byte {
	return appendSOCKSAddr(append(b, 0, 0, 0), src)
}

// sliceReader reads from a byte slice without copying what is left.
type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}
