package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ocnet/ocnet/auth"
	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/control"
	"github.com/ocnet/ocnet/proxy"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/trust"
)

// connectFlags are openconnect's names wherever openconnect has one.
type connectFlags struct {
	user          string
	authgroup     string
	passwdOnStdin bool
	cookieOnStdin bool
	authenticate  bool
	useragent     string
	servercert    []string
	cafile        string
	socks         string
	httpProxy     string
	nonInter      bool
	noDTLS        bool
	onDemand      bool
	idleTimeout   time.Duration
	control       string

	reconnectTimeout time.Duration
	verbose          bool
	logFormat        string

	tun    tunFlags    // tun.go
	proxy  proxyFlags  // proxyflags.go
	policy policyFlags // policyflags.go
}

func newConnectCmd() *cobra.Command {
	var f connectFlags
	cmd := &cobra.Command{
		Use:   "connect [flags] URL",
		Short: "Log in to a headend and serve SOCKS5/HTTP proxies into its network",
		Args:  cobra.RangeArgs(1, 2), // "--tun NAME URL": see tunFlags.takeName
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := f.tun.takeName(args)
			if err != nil {
				return err
			}
			return runConnect(cmd.Context(), f, u)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.user, "user", "u", "", "login name")
	fl.StringVarP(&f.authgroup, "authgroup", "g", "", "authentication group to select")
	fl.BoolVar(&f.passwdOnStdin, "passwd-on-stdin", false,
		"read the password (and any further answers) from standard input, one per line")
	fl.BoolVar(&f.cookieOnStdin, "cookie-on-stdin", false,
		"read a session cookie from standard input instead of logging in")
	fl.BoolVar(&f.authenticate, "authenticate", false,
		"log in, print the cookie and server fingerprint as shell variables, then exit")
	fl.StringVar(&f.useragent, "useragent", auth.DefaultUserAgent, "HTTP User-Agent to send")
	fl.StringArrayVar(&f.servercert, "servercert", nil,
		"accept the server certificate with this pin (pin-sha256:BASE64, sha256:HEX); repeatable")
	fl.StringVar(&f.cafile, "cafile", "", "PEM file of extra CAs to trust for the server")
	fl.StringVar(&f.socks, "socks", "127.0.0.1:1080", `SOCKS5 proxy listen address ("" = off)`)
	fl.StringVar(&f.httpProxy, "http-proxy", "127.0.0.1:8080", `HTTP proxy listen address ("" = off)`)
	fl.BoolVar(&f.nonInter, "non-inter", false, "never prompt; accept the banner")
	fl.BoolVar(&f.noDTLS, "no-dtls", false, "keep data on the TLS channel; do not try DTLS")
	fl.BoolVar(&f.onDemand, "on-demand", false,
		"serve the proxies at once but bring the tunnel up only when a flow needs it")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 5*time.Minute,
		"with --on-demand: take the tunnel down after this long without flows")
	fl.DurationVar(&f.reconnectTimeout, "reconnect-timeout", 0,
		"give up a lost tunnel after this long (e.g. 20s); 0 = as long as the headend keeps the session")
	fl.StringVar(&f.control, "control", defaultControlPath(),
		`status socket, readable only by this user ("" = none)`)
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "debug logging (secrets are redacted)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	f.tun.register(fl)
	addProxyFlags(cmd, &f.proxy)
	addPolicyFlags(fl, &f.policy)
	return cmd
}

// errTunnelLost marks a tunnel that ended without the user asking.
var errTunnelLost = errors.New("tunnel lost")

func runConnect(ctx context.Context, f connectFlags, rawURL string) error {
	start := time.Now()
	log, err := newLogger(f.verbose, f.logFormat)
	if err != nil {
		return err
	}
	u, urlUser, err := session.ParseServerURL(rawURL)
	if err != nil {
		return usageError{err}
	}
	if f.user, err = pickUser(f.user, urlUser); err != nil {
		return usageError{err}
	}
	if f.passwdOnStdin && f.cookieOnStdin {
		return usageError{errors.New("--passwd-on-stdin and --cookie-on-stdin exclude each other")}
	}
	proxyOpts, err := f.proxy.options(f.passwdOnStdin || f.cookieOnStdin, f.socks, f.httpProxy)
	if err != nil {
		return usageError{err}
	}
	local, err := f.policy.local()
	if err != nil {
		return err
	}
	if err := checkLocal(f, proxyOpts); err != nil {
		return usageError{err}
	}

	tlsConf, err := trust.TLSConfig(u.Hostname(), trust.Options{
		CAFile: f.cafile, Pins: f.servercert,
	})
	if err != nil {
		return usageError{err}
	}

	stdin := bufio.NewReader(os.Stdin)
	if f.onDemand {
		if f.tun.enabled() || f.authenticate {
			return usageError{errors.New("--on-demand works in proxy mode only")}
		}
		return runOnDemand(ctx, f, u, tlsConf, stdin, client.Options{
			URL:       u,
			TLS:       tlsConf,
			UserAgent: f.useragent,
			NoDTLS:    f.noDTLS,
			SOCKSAddr: f.socks,
			HTTPAddr:  f.httpProxy,
			Proxy:     proxyOpts,
			Logger:    log,
			Local:     local,

			ReconnectTimeout: f.reconnectTimeout,
		}, log)
	}

	// The device needs privileges the headend cannot give: found only
	// after the login, it cost a login and a session (and exited 5).
	if !f.authenticate {
		if err := f.tun.openDevice(); err != nil {
			return err
		}
		defer f.tun.closeDevice()
	}

	var cookie, banner, pin string
	var reauth func(context.Context) (string, error)
	var early earlyConn
	if f.cookieOnStdin {
		cookie, err = readLine(stdin)
		if err != nil || cookie == "" {
			return usageError{errors.New("--cookie-on-stdin: no cookie on standard input")}
		}
	} else {
		if !f.authenticate && (f.passwdOnStdin || f.nonInter) {
			early = dialAhead(ctx, u, tlsConf)
		}
		res, fl, err := login(ctx, f, u, tlsConf, stdin, log)
		if err != nil {
			early.close()
			return err
		}
		cookie, banner, pin = res.Cookie, res.Banner, res.ServerPin
		reauth = fl.reauth(f, u, tlsConf, log)
	}

	if f.authenticate {
		// The shell-variable form openconnect prints, for scripts.
		fmt.Printf("COOKIE=%s\nHOST=%s\nCONNECT_URL=%s\nFINGERPRINT=%s\n",
			shellQuote(cookie), shellQuote(u.Hostname()),
			shellQuote(u.String()), shellQuote(pin))
		return nil
	}

	c, err := client.Start(ctx, client.Options{
		URL:       u,
		TLS:       tlsConf,
		UserAgent: f.useragent,
		Cookie:    cookie,
		Conn:      early.get(),
		NoDTLS:    f.noDTLS,
		SOCKSAddr: f.socks,
		HTTPAddr:  f.httpProxy,
		Proxy:     proxyOpts,
		Logger:    log,

		ReconnectTimeout: f.reconnectTimeout,
		Reauth:           reauth,
		Divert:           f.tun.divert(),
		PortRange:        f.tun.portRange(),
		OnReconnect:      f.tun.onReconnect(),
		Local:            local,
		DNSListen:        f.policy.dnsListen,

		// The banner comes with the CONNECT's reply; the user takes it
		// before any listener or device carries a flow.
		Accept: func(cfg *session.Config) error {
			if b := firstNonEmpty(cfg.Banner, banner); b != "" {
				return showBanner(ctx, b, f.nonInter)
			}
			return nil
		},
	})
	if err != nil {
		return cookieHint(err, f.cookieOnStdin)
	}
	stopTun, err := f.tun.start(ctx, c, u, log)
	if err != nil {
		c.Close()
		return err
	}
	defer stopTun()
	stopControl, err := serveControl(ctx, f.control, c, f.tun.status, log)
	if err != nil {
		c.Close()
		return err
	}
	defer stopControl()

	log.Info("proxy ready", "socks", c.SOCKSAddr(), "http", c.HTTPAddr(),
		"elapsed", time.Since(start).Round(time.Millisecond))

	select {
	case <-ctx.Done():
		log.Info("signal received, disconnecting")
		c.Close()
		return nil
	case <-c.Done():
		err := c.Err()
		c.Close()
		return fmt.Errorf("%w: %w", errTunnelLost, err)
	}
}

// cookieHint says what to do about a cookie the headend refused at the
// first CONNECT. The cookie itself is never repeated.
func cookieHint(err error, fromStdin bool) error {
	if !errors.Is(err, session.ErrCookieRejected) {
		return err
	}
	if fromStdin {
		return fmt.Errorf("%w; it may have expired, been logged out or been copied "+
			"wrong: log in again, or get a fresh one with ocnet connect --authenticate", err)
	}
	// ocserv refuses the cookie it has just issued when it has no
	// address left to give (seen with 1.1.6: 401, as for a stale cookie).
	return fmt.Errorf("%w, although it was just issued: the headend may be out of "+
		"addresses or sessions for this user", err)
}

// pickUser merges --user with the URL's "user@": either may be given, or
// both when they agree.
func pickUser(flag, inURL string) (string, error) {
	if flag != "" && inURL != "" && flag != inURL {
		return "", fmt.Errorf("--user %q and the server URL's %q@ disagree", flag, inURL)
	}
	return firstNonEmpty(flag, inURL), nil
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// showBanner prints the headend's banner and, for an interactive user who
// did not pass --non-inter, asks to accept it as the Cisco client does.
func showBanner(ctx context.Context, b string, nonInter bool) error {
	fmt.Fprintf(os.Stderr, "\n%s\n\n", sanitize(b))
	if nonInter || !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil
	}
	fmt.Fprint(os.Stderr, "Accept this banner? [y/N] ")

	// The read cannot be interrupted, so it runs aside and Ctrl-C (ctx)
	// wins; the goroutine ends with the process.
	ans := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		ans <- s
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr)
		return errBannerDeclined{interrupted: true}
	case a := <-ans:
		if a = strings.ToLower(strings.TrimSpace(a)); a == "y" || a == "yes" {
			return nil
		}
	}
	return errBannerDeclined{}
}

// errBannerDeclined is the user's "no" to the banner (or Ctrl-C at its
// prompt): the headend's terms were refused, so the session is given
// back, and ocnet exits as for a refused login (3).
type errBannerDeclined struct{ interrupted bool }

func (e errBannerDeclined) Error() string {
	if e.interrupted {
		return "banner not accepted (interrupted); disconnected"
	}
	return "banner not accepted; disconnected"
}

// sanitize keeps text from the headend printable, so it cannot drive the
// terminal with control sequences.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || (r >= 0x20 && r != 0x7f) {
			return r
		}
		return -1
	}, s)
}

// shellQuote wraps s in single quotes for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkLocal catches mistakes that need no headend before logging in, so
// they cost no login (an OTP, on some headends): bad durations, and listen
// addresses that are malformed or already taken. --authenticate opens no
// listener, so a running ocnet on the default ports does not stop it.
func checkLocal(f connectFlags, po proxy.Options) error {
	if f.reconnectTimeout < 0 {
		return fmt.Errorf("--reconnect-timeout %v: must not be negative", f.reconnectTimeout)
	}
	if f.onDemand && f.idleTimeout <= 0 {
		return fmt.Errorf("--idle-timeout %v: must be positive", f.idleTimeout)
	}
	if f.authenticate {
		return nil
	}
	if f.control != "" {
		// Found only after the tunnel was up, this cost a login and a
		// session on the headend.
		if err := control.Check(f.control); err != nil {
			return err
		}
	}

	type want struct {
		flag, network, addr string
		fw                  *proxy.Forward
	}
	ws := []want{{"--socks", "tcp", f.socks, nil}, {"--http-proxy", "tcp", f.httpProxy, nil}}
	if d := f.policy.dnsListen; d != "" {
		ws = append(ws, want{"--dns-listen", "tcp", d, nil}, want{"--dns-listen", "udp", d, nil})
	}
	for i, fw := range po.Forwards {
		ws = append(ws, want{"-L", "tcp", fw.Listen, &po.Forwards[i]})
	}

	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for _, w := range ws {
		if w.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(w.addr); err != nil {
			return fmt.Errorf("%s %q: %w", w.flag, w.addr, err)
		}
		// Hold each listener until all are checked, so two flags naming
		// the same port clash here too.
		var c io.Closer
		var err error
		if w.network == "udp" {
			c, err = net.ListenPacket("udp", w.addr)
		} else {
			c, err = net.Listen("tcp", w.addr)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", w.flag, w.addr, err)
		}
		held = append(held, c)
		if ln, ok := c.(net.Listener); ok && w.fw != nil && w.fw.TargetsItself(ln.Addr()) {
			return fmt.Errorf("-L %s: the target is the forward's own listening address",
				w.fw)
		}
	}
	return nil
}

// earlyConn is the CONNECT's TLS connection, dialed while the login runs
// so that its handshake (a private-key operation on the headend, about
// 10 ms on ocserv) does not add to the start-up. The zero value is none.
type earlyConn struct {
	c      chan *tls.Conn
	cancel context.CancelFunc
}

// dialAheadTimeout bounds the dial ahead, as the login bounds its own
// handshakes: a headend that takes the connection and never answers held
// both the CONNECT (get) and the exit after a failed login (close) for
// ever. A variable for tests.
var dialAheadTimeout = 15 * time.Second

// dialAhead starts dialing; only where no person answers the login, so
// the connection never idles on the headend for long.
func dialAhead(ctx context.Context, u *url.URL, tlsConf *tls.Config) earlyConn {
	ctx, cancel := context.WithTimeout(ctx, dialAheadTimeout)
	e := earlyConn{c: make(chan *tls.Conn, 1), cancel: cancel}
	go func() {
		conn, err := session.Dial(ctx, session.Options{URL: u, TLS: tlsConf})
		if err != nil {
			// The CONNECT dials again and reports what is wrong.
			conn = nil
		}
		e.c <- conn
	}()
	return e
}

// get waits for the dial, at most dialAheadTimeout, and returns its
// connection, or nil.
func (e earlyConn) get() *tls.Conn {
	if e.c == nil {
		return nil
	}
	c := <-e.c
	e.cancel()
	return c
}

// close abandons the dial at once and closes what it got.
func (e earlyConn) close() {
	if e.c == nil {
		return
	}
	e.cancel()
	if c := <-e.c; c != nil {
		c.Close()
	}
}
