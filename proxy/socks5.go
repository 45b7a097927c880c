package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/ocnet/ocnet/dnsproxy"
)

// ocnet speaks SOCKS5 itself rather than through armon/go-socks5: that
// library has no UDP ASSOCIATE and no hook to add one (its command switch
// is closed), dials with context.Background, and would need the handshake
// parsed twice to learn the app ID. CONNECT, UDP ASSOCIATE and RFC 1929
// authentication fit in a few hundred lines here, with one parser that is
// fuzzed.

// handshakeTimeout bounds the SOCKS5 greeting, authentication and request
// so that an idle client cannot hold a goroutine forever.
const handshakeTimeout = 30 * time.Second

// dialTimeout bounds one Router dial for a proxied flow.
const dialTimeout = 30 * time.Second

// ServeSOCKS5 serves SOCKS5 on ln with no authentication and sends every
// flow through r; see Server.ServeSOCKS5.
func ServeSOCKS5(ctx context.Context, ln net.Listener, r *Router, log *slog.Logger) error {
	return (&Server{Router: r, Logger: log}).ServeSOCKS5(ctx, ln)
}

// ServeSOCKS5 serves SOCKS5 CONNECT and UDP ASSOCIATE on ln and sends
// every flow through s.Router. Names in requests are not resolved here:
// they reach the Router as "name:port", so socks5h clients get split DNS.
// With s.Auth set, clients must authenticate with username/password
// (RFC 1929); without it a username, if offered, names the app.
//
// ServeSOCKS5 refuses a listener beyond loopback without s.Auth. It
// closes ln and every connection when ctx is cancelled, waits for its
// goroutines and returns nil; any other accept error is returned after
// the same cleanup.
func (s *Server) ServeSOCKS5(ctx context.Context, ln net.Listener) error {
	if err := CheckExposure(ln.Addr().String(), s.Auth); err != nil {
		ln.Close()
		return err
	}
	log := s.logger("socks5")
	defer s.Router.AddSelf(ln.Addr())()

	var t tracker
	return acceptLoop(ctx, ln, &t, log, func(conn net.Conn) {
		s.socksConn(ctx, conn, &t, log)
	})
}

// socksConn runs one SOCKS5 client connection to its end.
func (s *Server) socksConn(ctx context.Context, conn net.Conn, t *tracker, log *slog.Logger) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReaderSize(conn, 512)

	user, err := s.socksAuth(br, conn)
	if err != nil {
		log.Debug("handshake failed", "client", conn.RemoteAddr(), "err", err)
		return
	}
	ctx = WithApp(ctx, s.appID(user, conn, log))

	req, err := ReadSOCKSRequest(br)
	if err != nil {
		rep := byte(repGeneralFailure)
		if errors.Is(err, errAddrType) {
			rep = repAddrTypeNotSupport
		}
		writeSOCKSReply(conn, rep, netip.AddrPort{})
		log.Debug("bad request", "client", conn.RemoteAddr(), "err", err)
		return
	}

	switch req.Cmd {
	case SOCKSConnect:
		s.socksConnect(ctx, conn, br, req.Addr, t, log)
	case SOCKSUDPAssociate:
		s.socksUDP(ctx, conn, req.Addr, log)
	default:
		writeSOCKSReply(conn, repCmdNotSupported, netip.AddrPort{})
	}
}

// socksAuth picks a method and runs it. With Auth set only
// username/password is acceptable; without, username/password is still
// preferred when offered, since the username names the app, and any
// password passes. It returns the username, if any.
func (s *Server) socksAuth(r io.Reader, w io.Writer) (string, error) {
	methods, err := readGreeting(r)
	if err != nil {
		return "", err
	}

	var none, userPass bool
	for _, m := range methods {
		none = none || m == methodNone
		userPass = userPass || m == methodUserPass
	}
	switch {
	case userPass:
		if _, err := w.Write([]byte{socksVersion, methodUserPass}); err != nil {
			return "", err
		}
	case none && s.Auth == nil:
		_, err := w.Write([]byte{socksVersion, methodNone})
		return "", err
	default:
		w.Write([]byte{socksVersion, methodNoAccept})
		return "", errors.New("proxy: socks5: client offers no acceptable auth method")
	}

	user, pass, err := readUserPass(r)
	if err != nil {
		return "", err
	}
	if s.Auth != nil && !s.Auth.ok(user, pass) {
		w.Write([]byte{userPassVersion, 1})
		return "", errors.New("proxy: socks5: wrong username or password")
	}
	_, err = w.Write([]byte{userPassVersion, 0})
	return user, err
}

// socksConnect dials addr through the Router, replies, and splices.
func (s *Server) socksConnect(ctx context.Context, conn net.Conn, br *bufio.Reader,
	addr string, t *tracker, log *slog.Logger) {
	if strings.HasSuffix(addr, ":0") {
		writeSOCKSReply(conn, repHostUnreachable, netip.AddrPort{})
		return
	}

	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	target, err := s.Router.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		writeSOCKSReply(conn, replyCode(err), netip.AddrPort{})
		log.Debug("connect failed", "dst", addr, "app", AppFrom(ctx), "err", err)
		return
	}
	if !t.add(target) {
		target.Close()
		return
	}
	defer t.done(target)

	bnd, _ := netip.ParseAddrPort(target.LocalAddr().String())
	if err := writeSOCKSReply(conn, repSucceeded, bnd); err != nil {
		target.Close()
		return
	}
	conn.SetDeadline(time.Time{})

	// Bytes the client sent right after its request (optimistic data)
	// sit in br; hand them on before splicing.
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		if _, err := target.Write(early); err != nil {
			target.Close()
			return
		}
	}
	splice(conn, target)
}

// replyCode maps a dial error to the closest SOCKS5 reply (RFC 1928
// section 6). A name that did not resolve is host unreachable (4) however
// its resolver failed: a resolver that refused the query, or a local one
// that is not listening ("read: connection refused"), must not read as a
// refused connection (5), which only the destination itself can give.
func replyCode(err error) byte {
	switch {
	case errors.Is(err, ErrRefused), errors.Is(err, ErrLoop):
		return repNotAllowed
	case isResolveError(err):
		return repHostUnreachable
	case errors.Is(err, ErrNoTunnel), errors.Is(err, syscall.ENETUNREACH),
		strings.Contains(err.Error(), "network is unreachable"):
		return repNetUnreachable
	case errors.Is(err, syscall.ECONNREFUSED), isStackRefused(err):
		return repConnRefused
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "timed out"):
		return repTTLExpired
	}
	return repHostUnreachable
}

// isResolveError says whether err is a failure to resolve the flow's
// name: the Router's ErrResolve, or, for a flow a Gate dialled itself, a
// resolver's own error.
func isResolveError(err error) bool {
	var de *net.DNSError
	return errors.Is(err, ErrResolve) || errors.As(err, &de) ||
		errors.Is(err, dnsproxy.ErrNotFound) || errors.Is(err, dnsproxy.ErrNoServers) ||
		errors.Is(err, dnsproxy.ErrServerFailed)
}

// isStackRefused matches a reset answer to a SYN sent through the tunnel:
// gVisor's gonet turns its tcpip.Error into text, so no errno survives.
func isStackRefused(err error) bool {
	return strings.Contains(err.Error(), "connection was refused")
}
