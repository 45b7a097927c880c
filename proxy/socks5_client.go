package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// ErrSOCKSRefused means the SOCKS5 server answered a request with a
// failure; the error text carries its reply code.
var ErrSOCKSRefused = errors.New("proxy: socks5 server refused")

// SOCKSClient dials through a SOCKS5 server, as `ocnet nc` does. With
// Auth set, or a non-empty App, it offers username/password: Auth's
// credentials, else App as the username (naming the app to a proxy with
// no credentials).
type SOCKSClient struct {
	Server string // "host:port" of the SOCKS5 proxy
	Auth   *Auth
	App    string
}

// Dial connects to dst ("host:port", a name is resolved by the proxy)
// with CONNECT. ctx bounds the handshake only.
func (c *SOCKSClient) Dial(ctx context.Context, dst string) (net.Conn, error) {
	conn, _, err := c.request(ctx, SOCKSConnect, dst)
	return conn, err
}

// Associate opens a UDP ASSOCIATE and returns the control connection,
// which must stay open while the association is used, and the relay's
// address.
func (c *SOCKSClient) Associate(ctx context.Context) (net.Conn, netip.AddrPort, error) {
	return c.request(ctx, SOCKSUDPAssociate, "0.0.0.0:0")
}

func (c *SOCKSClient) request(ctx context.Context, cmd byte,
	dst string) (net.Conn, netip.AddrPort, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Server)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("proxy: socks5 server %s: %w", c.Server, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(handshakeTimeout))
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	bnd, err := c.handshake(conn, cmd, dst)
	if err != nil {
		conn.Close()
		return nil, netip.AddrPort{}, err
	}
	conn.SetDeadline(time.Time{})
	return conn, bnd, nil
}

func (c *SOCKSClient) handshake(rw io.ReadWriter, cmd byte, dst string) (netip.AddrPort, error) {
	user, pass := c.App, ""
	if c.Auth != nil {
		user, pass = c.Auth.User, c.Auth.Pass
	}
	if len(user) > 255 || len(pass) > 255 {
		return netip.AddrPort{}, errors.New("proxy: socks5: username or password over 255 bytes")
	}

	method := byte(methodNone)
	if user != "" {
		method = methodUserPass
	}
	if _, err := rw.Write([]byte{socksVersion, 1, method}); err != nil {
		return netip.AddrPort{}, err
	}
	var sel [2]byte
	if _, err := io.ReadFull(rw, sel[:]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("proxy: socks5 method: %w", err)
	}
	if sel[0] != socksVersion || sel[1] != method {
		return netip.AddrPort{}, fmt.Errorf("%w: no acceptable auth method "+
			"(proxy credentials needed?)", ErrSOCKSRefused)
	}
	if method == methodUserPass {
		b := append([]byte{userPassVersion, byte(len(user))}, user...)
		b = append(append(b, byte(len(pass))), pass...)
		if _, err := rw.Write(b); err != nil {
			return netip.AddrPort{}, err
		}
		var st [2]byte
		if _, err := io.ReadFull(rw, st[:]); err != nil {
			return netip.AddrPort{}, fmt.Errorf("proxy: socks5 auth: %w", err)
		}
		if st[1] != 0 {
			return netip.AddrPort{}, fmt.Errorf("%w: wrong proxy username or password",
				ErrSOCKSRefused)
		}
	}

	req, err := appendRequest([]byte{socksVersion, cmd, 0}, dst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if _, err := rw.Write(req); err != nil {
		return netip.AddrPort{}, err
	}
	var rep [3]byte
	if _, err := io.ReadFull(rw, rep[:]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("proxy: socks5 reply: %w", err)
	}
	bndStr, err := readSOCKSAddr(rw)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if rep[0] != socksVersion || rep[1] != repSucceeded {
		return netip.AddrPort{}, fmt.Errorf("%w %s: %s", ErrSOCKSRefused, dst, replyText(rep[1]))
	}
	bnd, _ := netip.ParseAddrPort(bndStr)
	return bnd, nil
}

// appendRequest appends ATYP, DST.ADDR and DST.PORT for dst.
func appendRequest(b []byte, dst string) ([]byte, error) {
	host, portStr, err := net.SplitHostPort(dst)
	if err != nil {
		return nil, fmt.Errorf("proxy: socks5 destination %q: %w", dst, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("proxy: socks5 destination %q: bad port", dst)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return appendSOCKSAddr(b, netip.AddrPortFrom(ip, uint16(port))), nil
	}
	if err := checkName([]byte(host)); err != nil || len(host) > 255 {
		return nil, fmt.Errorf("proxy: socks5 destination %q: bad host name", dst)
	}
	b = append(append(b, atypDomain, byte(len(host))), host...)
	return append(b, byte(port>>8), byte(port)), nil
}

// replyText explains a SOCKS5 reply code (RFC 1928 section 6).
func replyText(rep byte) string {
	switch rep {
	case repGeneralFailure:
		return "general failure"
	case repNotAllowed:
		return "not allowed by the proxy's rules"
	case repNetUnreachable:
		return "network unreachable"
	case repHostUnreachable:
		return "host unreachable"
	case repConnRefused:
		return "connection refused"
	case repTTLExpired:
		return "timed out"
	case repCmdNotSupported:
		return "command not supported"
	case repAddrTypeNotSupport:
		return "address type not supported"
	}
	return fmt.Sprintf("reply code %d", rep)
}
