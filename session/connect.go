// Package session opens the CSTP tunnel: it dials the headend, sends
// CONNECT /CSCOSSLC/tunnel with the session cookie, and decodes the reply
// headers into a typed Config. It hands a connected TLS stream, with the
// buffered reader positioned on the first CSTP frame, to datapath; it never
// reads or writes frames itself.
package session

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options configures Connect.
type Options struct {
	URL       *url.URL    // https://host[:port]/...; only host and port are used
	TLS       *tls.Config // from trust; nil means system roots for URL's host
	UserAgent string
	Cookie    string // the webvpn session cookie from auth; a secret
	Hostname  string // sent as X-CSTP-Hostname; "" = os.Hostname()

	// BaseMTU is our link MTU towards the headend (default 1406, the
	// openconnect fallback). MTU is the tunnel MTU we ask for; 0 derives it
	// from BaseMTU. ocserv only looks at MTU when BaseMTU is absent.
	BaseMTU int
	MTU     int

	// PrevAddress and PrevAddress6 are the addresses of the previous
	// tunnel, sent on reconnect as a hint to keep them.
	PrevAddress  netip.Addr
	PrevAddress6 netip.Addr

	// DTLSCipherSuite is the X-DTLS-CipherSuite offer: "" offers no DTLS,
	// "PSK-NEGOTIATE" asks for DTLS keyed from the TLS session.
	DTLSCipherSuite string

	Logger *slog.Logger
	Dialer *net.Dialer // nil = a zero net.Dialer

	// Conn, when set, is a connection from Dial for Connect to use
	// instead of dialing; Connect owns it from then on. A headend may
	// close a connection that waited too long: Connect then dials again.
	Conn *tls.Conn
}

// Tunnel is an established CSTP tunnel. Reader wraps Conn and may already
// hold the first frames: read frames only through Reader, write them to
// Conn. The caller owns the Tunnel and must Close it.
type Tunnel struct {
	Conn   *tls.Conn
	Reader *bufio.Reader
	Config *Config
}

// Close closes the TLS connection, which ends the tunnel (the server keeps
// the session for its cookie timeout; send a DISCONNECT first to end it).
func (t *Tunnel) Close() error {
	return t.Conn.Close()
}

// pskLabel is the TLS exporter label ocserv uses to key PSK-NEGOTIATE DTLS.
const pskLabel = "EXPORTER-openconnect-psk"

// ExportPSK derives the 32-byte DTLS pre-shared key from the tunnel's TLS
// session (protocol.md §4.2). The context must be nil, not empty: in TLS
// 1.2 an empty context changes the key. Go refuses the TLS 1.2 exporter
// without Extended Master Secret unless GODEBUG=tlsunsafeekm=1 is set; the
// error then says so and the caller may stay on CSTP.
func (t *Tunnel) ExportPSK() ([]byte, error) {
	st := t.Conn.ConnectionState()
	key, err := st.ExportKeyingMaterial(pskLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("session: export dtls psk: %w", err)
	}
	return key, nil
}

// ErrCookieRejected is wrapped when the headend refuses the cookie itself:
// it answers CONNECT with 401 (ocserv: a cookie it does not know, one that
// expired or was logged out; also its address pool being empty, which it
// reports the same way), or with a bare 503 followed by a TLS access-denied
// alert (ocserv: a cookie it cannot even decode, e.g. mistyped). Retrying
// the same cookie cannot help; the user must log in again.
var ErrCookieRejected = errors.New("session: the headend does not accept the session cookie")

// ErrHeadendClosed is wrapped when the headend closes the connection
// before its answer to CONNECT is complete: a network failure, which
// ocnet reports as one (exit status 5), not as an unknown error.
var ErrHeadendClosed = errors.New("the headend closed the connection")

// ConnectError is a CONNECT answered with a status other than 200 or 401
// that is not a refused cookie, such as ocserv's 503 "Server configuration
// error": a server-side condition worth retrying. Reason is the server's
// X-Reason text (or the status text), already stripped of control bytes.
type ConnectError struct {
	Status int
	Reason string
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("session: connect refused: HTTP %d: %s", e.Status, e.Reason)
}

const (
	defaultBaseMTU = 1406

	// cstpOverhead is what a tunnel packet costs on the link in the worst
	// common case: IPv6 40 + TCP 20 + timestamps 12 + TLS 1.2 AES-GCM record
	// 29 + CSTP header 8.
	cstpOverhead = 109

	// readerSize holds a couple of maximum-size CSTP frames, so datapath's
	// reads rarely reach the connection for less than a full record.
	readerSize = 32 << 10

	// maxReason bounds server-supplied text copied into errors.
	maxReason = 200

	// maxReplyHead bounds the status line and headers of the reply; ocserv
	// sends about 1.5 KiB.
	maxReplyHead = 64 << 10

	// alertWait bounds the wait for the alert that tells a refused cookie
	// from a busy headend after a bare 503. ocserv sends it right behind
	// the reply, so it arrives with it; a headend that sends none costs
	// this much once per failed CONNECT.
	alertWait = time.Second
)

// errReplyTooLarge stops a headend that keeps sending header lines.
var errReplyTooLarge = fmt.Errorf("session: connect reply headers exceed %d bytes",
	maxReplyHead)

// capReader fails once more than left bytes have passed through it while
// armed. It sits under the bufio.Reader so the header phase is bounded,
// then is disarmed and passes frames through untouched.
type capReader struct {
	r     io.Reader
	left  int
	armed bool
}

func (c *capReader) Read(p []byte) (int, error) {
	if !c.armed {
		return c.r.Read(p)
	}
	if c.left <= 0 {
		return 0, errReplyTooLarge
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

// Connect dials the headend in o.URL, sends CONNECT with the cookie and
// returns the tunnel once the server has answered 200 and its headers
// parse. It blocks until then or until ctx ends; ctx bounds only the setup,
// not the tunnel's life.
func Connect(ctx context.Context, o Options) (*Tunnel, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("sub", "session")

	req, err := buildRequest(&o)
	if err != nil {
		if o.Conn != nil {
			o.Conn.Close()
		}
		return nil, err
	}

	conn := o.Conn
	if conn == nil {
		if conn, err = Dial(ctx, o); err != nil {
			return nil, err
		}
	}

	t, err := exchange(ctx, conn, req, log)
	if err != nil && o.Conn != nil && ctx.Err() == nil && !answered(err) {
		// The dialed-ahead connection went stale; a fresh one decides.
		conn.Close()
		log.Debug("connect: early connection unusable, dialing again", "err", err)
		if conn, err = Dial(ctx, o); err != nil {
			return nil, err
		}
		t, err = exchange(ctx, conn, req, log)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	log.Info("tunnel connected", "config", t.Config)
	return t, nil
}

// answered says whether a failed CONNECT got the headend's answer, which
// another connection would not change.
func answered(err error) bool {
	var ce *ConnectError
	return errors.As(err, &ce) || errors.Is(err, ErrCookieRejected)
}

// Dial opens TCP to the headend in o.URL and runs the TLS handshake, both
// bounded by ctx. A caller may dial while the login runs and hand the
// connection to Connect in Options.Conn: the handshake, a private-key
// operation on the headend, then overlaps the login instead of following
// it (ocserv offers no TLS session resumption that Go's client can use).
func Dial(ctx context.Context, o Options) (*tls.Conn, error) {
	if o.URL == nil || o.URL.Hostname() == "" {
		return nil, errors.New("session: dial needs a headend URL with a host")
	}
	host := o.URL.Hostname()
	port := o.URL.Port()
	if port == "" {
		port = "443"
	}

	d := o.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("session: dial headend: %w", err)
	}

	var cfg *tls.Config
	if o.TLS != nil {
		cfg = o.TLS.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}

	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("session: tls handshake: %w", err)
	}
	return conn, nil
}

// header is one request header, kept in a slice to fix the wire order.
type header struct{ name, value string }

// request is the CONNECT request before it is serialised.
type request struct {
	host    string
	headers []header
}

// buildRequest checks the options and lays out the CONNECT headers in the
// order openconnect sends them.
func buildRequest(o *Options) (*request, error) {
	if o.URL == nil || o.URL.Hostname() == "" {
		return nil, errors.New("session: connect needs a headend URL with a host")
	}
	if o.Cookie == "" {
		return nil, errors.New("session: connect needs a session cookie")
	}

	hostname := o.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	base := o.BaseMTU
	if base == 0 {
		base = defaultBaseMTU
	}
	mtu := o.MTU
	if mtu == 0 {
		mtu = base - cstpOverhead
	}

	r := &request{host: hostHeader(o.URL)}
	add := func(name, value string) {
		r.headers = append(r.headers, header{name, value})
	}
	add("Host", r.host)
	add("User-Agent", o.UserAgent)
	add("Cookie", "webvpn="+o.Cookie)
	add("X-Transcend-Version", "1")
	add("X-Aggregate-Auth", "1")
	add("X-CSTP-Version", "1")
	if hostname != "" {
		add("X-CSTP-Hostname", hostname)
	}
	add("X-CSTP-Base-MTU", strconv.Itoa(base))
	add("X-CSTP-MTU", strconv.Itoa(mtu))
	add("X-CSTP-Address-Type", "IPv6,IPv4")
	add("X-CSTP-Full-IPv6-Capability", "true")
	for _, a := range []netip.Addr{o.PrevAddress, o.PrevAddress6} {
		if a.IsValid() {
			add("X-CSTP-Address", a.String())
		}
	}
	// TODO: offer legacy DTLS (X-DTLS-Master-Secret with 48 random bytes and
	// X-DTLS12-CipherSuite) for Cisco ASAs, which lack PSK-NEGOTIATE.
	if o.DTLSCipherSuite != "" {
		add("X-DTLS-CipherSuite", o.DTLSCipherSuite)
	}

	// A CR or LF in any value would let it inject headers of its own.
	for _, h := range r.headers {
		if strings.ContainsAny(h.value, "\r\n\x00") {
			if IsSecretHeader(h.name) {
				return nil, fmt.Errorf("session: %s value contains a line break", h.name)
			}
			return nil, fmt.Errorf("session: %s value %q contains a line break",
				h.name, h.value)
		}
	}
	return r, nil
}

// hostHeader renders the Host header: the port only when it is not 443,
// IPv6 literals in brackets.
func hostHeader(u *url.URL) string {
	host, port := u.Hostname(), u.Port()
	if port != "" && port != "443" {
		return net.JoinHostPort(host, port)
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

func (r *request) bytes() []byte {
	var b strings.Builder
	b.WriteString("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n")
	for _, h := range r.headers {
		b.WriteString(h.name + ": " + h.value + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// exchange writes the request and reads the reply on conn. Cancelling ctx
// while it runs unblocks it; the tunnel is handed on with no deadline set.
func exchange(ctx context.Context, conn *tls.Conn, req *request,
	log *slog.Logger) (*Tunnel, error) {
	// Only the context moves the deadline (accessDenied too, but only once
	// the answer is known to be a failure), so an I/O error caused by it is
	// always seen together with ctx.Err().
	stop := context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0))
	})
	defer stop()

	log.Debug("connect request", "headers", requestLogValue(req.headers))

	// One write, so the request goes out in a single TLS record.
	if _, err := conn.Write(req.bytes()); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("session: send connect: %w", err))
	}

	capped := &capReader{r: conn, left: maxReplyHead, armed: true}
	br := bufio.NewReaderSize(capped, readerSize)
	status, text, hdr, err := readReply(br)
	if err != nil && capped.left <= 0 {
		// textproto reports the cut-off line, not the cause.
		err = errReplyTooLarge
	}
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	capped.armed = false
	log.Debug("connect reply", "status", status, "headers", replyLogValue(hdr))

	if err := replyError(status, text, hdr); err != nil {
		if bareUnavailable(status, hdr) && accessDenied(conn, br) {
			return nil, fmt.Errorf("%w (HTTP 503, then TLS alert access denied: "+
				"not a cookie it can read)", ErrCookieRejected)
		}
		return nil, err
	}
	cfg, err := ParseConfig(hdr)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(cfg.Unknown) {
		log.Debug("unknown connect header", "name", k, "value", cfg.Unknown[k])
	}

	if !stop() {
		return nil, ctx.Err()
	}
	conn.SetDeadline(time.Time{})
	return &Tunnel{Conn: conn, Reader: br, Config: cfg}, nil
}

// ctxErr prefers the context's error to the I/O error its cancellation
// caused, so callers see context.Canceled rather than a deadline timeout.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("session: connect: %w", ctx.Err())
	}
	return err
}

// readReply reads the status line and headers, and nothing more: the bytes
// after the blank line are CSTP frames and stay in br for datapath.
func readReply(br *bufio.Reader) (int, string, http.Header, error) {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, "", nil, fmt.Errorf("session: read connect reply: %w", closed(err))
	}

	proto, rest, _ := strings.Cut(line, " ")
	code, text, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || len(code) != 3 {
		return 0, "", nil, fmt.Errorf("session: connect reply is not HTTP: %q",
			clean(line))
	}

	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return 0, "", nil, fmt.Errorf("session: read connect reply headers: %w", closed(err))
	}
	return status, text, http.Header(mh), nil
}

// closed marks an end of stream in the reply as ErrHeadendClosed.
func closed(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", ErrHeadendClosed, err)
	}
	return err
}

// replyError maps a non-200 status to the error callers branch on.
func replyError(status int, text string, hdr http.Header) error {
	reason := clean(hdr.Get("X-Reason"))
	if reason == "" {
		reason = clean(text)
	}

	switch {
	case status == http.StatusOK:
		return nil
	case status == http.StatusUnauthorized:
		return fmt.Errorf("%w (HTTP 401: %s)", ErrCookieRejected, reason)
	}
	return &ConnectError{Status: status, Reason: reason}
}

// alertDenied is the text of TLS alert 49, access_denied, as crypto/tls
// renders it for an alert sent by the peer.
var alertDenied = tls.AlertError(49).Error()

// bareUnavailable matches the answer ocserv gives a CONNECT whose cookie it
// cannot decode: 503 with no header at all (1.1.6). Its 503 for a
// server-side problem carries an X-Reason; only the alert that follows
// decides, so other headers are let pass.
func bareUnavailable(status int, hdr http.Header) bool {
	return status == http.StatusServiceUnavailable && hdr.Get("X-Reason") == ""
}

// accessDenied reads past the reply for at most alertWait and says whether
// the headend then sent a fatal access_denied alert: ocserv's way to end a
// connection whose cookie it refused, and never one it merely could not
// serve. The connection is useless afterwards; the caller closes it.
func accessDenied(conn *tls.Conn, br *bufio.Reader) bool {
	conn.SetReadDeadline(time.Now().Add(alertWait))
	_, err := br.Peek(1)
	return isAccessDenied(err)
}

// isAccessDenied says whether err is an access_denied alert from the peer.
// crypto/tls reports it as a *net.OpError "remote error" around an
// unexported alert type, so it is recognised by the alert's text.
func isAccessDenied(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil &&
		oe.Err.Error() == alertDenied
}

// clean keeps server-supplied text printable and short before it goes into
// an error or log line.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7F {
			return -1
		}
		return r
	}, s)
	if len(s) > maxReason {
		s = s[:maxReason] + "..."
	}
	return strings.TrimSpace(s)
}

// redacted stands in for secret header values in logs.
const redacted = "[redacted]"

// requestLogValue renders request headers for a debug line, with secret
// values replaced.
func requestLogValue(hs []header) slog.Value {
	attrs := make([]slog.Attr, 0, len(hs))
	for _, h := range hs {
		v := h.value
		if IsSecretHeader(h.name) {
			v = redacted
		}
		attrs = append(attrs, slog.String(h.name, v))
	}
	return slog.GroupValue(attrs...)
}

// replyLogValue renders reply headers in sorted order, with secret values
// replaced.
func replyLogValue(h http.Header) slog.Value {
	attrs := make([]slog.Attr, 0, len(h))
	for _, k := range sortedKeys(h) {
		v := strings.Join(h[k], ", ")
		if IsSecretHeader(k) {
			v = redacted
		}
		attrs = append(attrs, slog.String(k, v))
	}
	return slog.GroupValue(attrs...)
}

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
