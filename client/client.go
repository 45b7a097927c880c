package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocnet/ocnet/datapath"
	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/netstack"
	"github.com/ocnet/ocnet/proxy"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/split"
)

// Options say where to connect and what to serve.
type Options struct {
	URL       *url.URL
	TLS       *tls.Config
	UserAgent string
	Cookie    string

	// Conn, when set, is a TLS connection to the headend from
	// session.Dial, opened while the login ran, for the first CONNECT;
	// Start owns it.
	Conn *tls.Conn

	// NoDTLS keeps data on the TLS channel.
	NoDTLS bool

	// SOCKSAddr and HTTPAddr are the proxy listen addresses; "" turns a
	// proxy off.
	SOCKSAddr string
	HTTPAddr  string

	// Proxy holds the proxies' credentials, app identification and -L
	// local forwards.
	Proxy proxy.Options

	// ReconnectTimeout bounds how long a lost tunnel is retried. Zero
	// means for as long as the headend keeps a dropped session (its
	// X-CSTP-Disconnected-Timeout, else DefaultReconnectTimeout).
	ReconnectTimeout time.Duration

	// Divert, when set, sees each inbound packet before the stack does
	// and keeps it by returning true; TUN mode uses it to hand packets of
	// host flows to the device. pkt is only valid during the call.
	Divert func(pkt []byte) bool

	// OnReconnect, when set, is called after each reconnect with what the
	// headend assigned this time (the address may have changed); TUN mode
	// updates the device's address and routes from it. It runs on the
	// client's goroutine before data flows again, so it should be quick.
	OnReconnect func(cfg *session.Config)

	// PortRange is the stack's local port range (see netstack.Config).
	PortRange [2]uint16

	// Local adds the user's overrides, the host's subnets and the app and
	// on-demand lists to the headend's split policy.
	Local split.Local

	// DNSListen, when set, serves the split-DNS resolver to other
	// programs on this address, over UDP and TCP.
	DNSListen string

	// Accept, when set, sees what the headend assigned (its banner among
	// it) after the first CONNECT and before any listener opens, so that
	// no flow reaches the tunnel before the user took the headend's
	// terms. An error ends Start with ErrNotAccepted; the headend is told
	// goodbye and frees the session. Later CONNECTs (reconnects) do not
	// call it.
	Accept func(cfg *session.Config) error

	// Reauth, when set, logs in again after the headend stops accepting
	// the cookie, and returns a fresh one. Without it such a session ends
	// with ErrSessionGone.
	Reauth func(ctx context.Context) (string, error)

	Logger *slog.Logger
}

// DefaultReconnectTimeout is how long a lost tunnel is retried when the
// headend does not say: ocserv keeps a dropped session's cookie for its
// cookie-timeout, 300 s by default.
const DefaultReconnectTimeout = 300 * time.Second

// Reasons a client ends on its own.
var (
	// ErrSessionGone means the headend ended the session or no longer
	// accepts the cookie, and no way to log in again was given.
	ErrSessionGone = errors.New("client: the headend ended the session")

	// ErrReconnectTimeout means the tunnel stayed down past the bound.
	ErrReconnectTimeout = errors.New("client: gave up reconnecting")

	// ErrNotAccepted means Options.Accept refused the session (the user
	// declined the banner).
	ErrNotAccepted = errors.New("client: session not accepted")
)

// Client is a tunnel with its stack and proxies. It outlives the tunnel's
// TLS connection: a lost connection is re-established with the cookie,
// and while the headend hands back the same address the stack, and so
// every proxied flow, stays as it was.
type Client struct {
	o       Options
	log     *slog.Logger
	host    string
	started time.Time

	sw     *datapath.Switch
	stack  atomic.Pointer[netstack.Stack]
	router *proxy.Router
	fwds   []net.Listener   // -L forwards, in Options.Proxy.Forwards order
	lns    [2]net.Listener  // SOCKS5, HTTP
	dns    *dnsproxy.Server // --dns-listen, or nil

	mu     sync.Mutex // guards the fields below
	cfg    *session.Config
	tunnel *session.Tunnel
	cstp   *datapath.CSTP
	cstpOf *session.Tunnel // the tunnel cstp belongs to
	cookie string

	reconnects atomic.Int64
	ended      counters // traffic of channels that have ended
	closing    atomic.Bool

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	done      chan struct{}
	runErr    error
	closeOnce sync.Once
}

// Start opens the tunnel and the proxies. The client runs until Close or
// until the tunnel is lost for good; Done and Err report the latter.
func Start(ctx context.Context, o Options) (*Client, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	c := &Client{
		o: o, log: o.Logger, host: host, started: time.Now(),
		cookie: o.Cookie, sw: &datapath.Switch{}, done: make(chan struct{}),
	}

	// Bounded as a reconnect's CONNECT is: a headend that takes the TCP
	// connection and never answers used to hold Start for ever.
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	t, err := c.connect(cctx, netip.Addr{}, o.Conn)
	cancel()
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("client: the headend set up no tunnel within %v: %w",
				connectTimeout, err)
		}
		return nil, err
	}
	c.tunnel, c.cfg = t, t.Config
	if o.Accept != nil {
		if err := o.Accept(t.Config); err != nil {
			c.goodbye(t)
			return nil, fmt.Errorf("%w: %w", ErrNotAccepted, err)
		}
	}

	stk, err := c.newStack(t.Config)
	if err != nil {
		c.goodbye(t)
		return nil, err
	}
	c.stack.Store(stk)
	// The channel is ready before Start returns, so a flow that starts at
	// once does not lose its first packets.
	c.attach(t)

	pol := c.policyFor(t.Config)
	ro := resolverOptions(t.Config, pol)
	ro.Tunnel, ro.Logger = tunnelDialer{c}, c.log
	c.router = &proxy.Router{
		Policy:   pol,
		Resolver: dnsproxy.New(ro),
		Tunnel:   tunnelDialer{c},
		Logger:   c.log.With("sub", "router"),
	}
	c.log.Info("tunnel up", "address", t.Config.Prefixes(), "mtu", t.Config.MTU,
		"dns", t.Config.DNS, "split_dns", pol.Domains,
		"routes", t.Config.SplitInclude, "excluded", t.Config.SplitExclude)

	if err := c.listen(); err != nil {
		stk.Close()
		c.goodbye(t)
		return nil, err
	}
	if o.DNSListen != "" {
		if c.dns, err = dnsproxy.Listen(o.DNSListen, c.router.Resolver, c.log); err != nil {
			c.closeListeners()
			stk.Close()
			c.goodbye(t)
			return nil, err
		}
	}

	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.serve(runCtx)
	return c, nil
}

// connect runs one CONNECT with the current cookie, over conn if it is
// not nil.
func (c *Client) connect(ctx context.Context, prev netip.Addr,
	conn *tls.Conn) (*session.Tunnel, error) {
	c.mu.Lock()
	cookie := c.cookie
	c.mu.Unlock()
	return session.Connect(ctx, session.Options{
		URL:             c.o.URL,
		TLS:             c.o.TLS,
		UserAgent:       c.o.UserAgent,
		Cookie:          cookie,
		Hostname:        c.host,
		BaseMTU:         1500,
		PrevAddress:     prev,
		DTLSCipherSuite: dtlsSuite(c.o.NoDTLS),
		Logger:          c.log,
		Conn:            conn,
	})
}

// goodbye ends a tunnel that will not be used, freeing it on the headend.
func (c *Client) goodbye(t *session.Tunnel) {
	cstp := datapath.NewCSTP(datapath.CSTPOptions{Conn: t.Conn, Reader: t.Reader})
	cstp.Disconnect()
}

func (c *Client) newStack(cfg *session.Config) (*netstack.Stack, error) {
	mtu := cfg.MTU
	if mtu == 0 {
		// TODO: derive from the base MTU and the channel's overhead
		// when the headend sends no X-CSTP-MTU.
		mtu = 1280
	}
	return netstack.New(netstack.Config{
		Addrs:     cfg.Prefixes(),
		MTU:       mtu,
		Headroom:  datapath.Headroom,
		PortRange: c.o.PortRange,
		Logger:    c.log.With("sub", "netstack"),
	}, c.sw.WritePacket)
}

// inject hands an inbound packet to the current stack; flush delivers the
// packets handed so far.
func (c *Client) inject(pkt []byte) {
	if c.o.Divert != nil && c.o.Divert(pkt) {
		return
	}
	c.stack.Load().Inject(pkt)
}
func (c *Client) flush() { c.stack.Load().Flush() }

// SendPacket sends one raw IP packet into the tunnel, bypassing the stack
// (TUN mode's fast path). The packet is copied; it may be dropped while no
// channel is up, and the sender's own TCP recovers as with any loss.
func (c *Client) SendPacket(pkt []byte) error {
	fp := framePool.Get().(*[]byte)
	defer framePool.Put(fp)
	if len(pkt) > len(*fp)-datapath.Headroom-datapath.DTLSOverhead {
		return fmt.Errorf("client: packet of %d bytes is too large", len(pkt))
	}
	n := copy((*fp)[datapath.Headroom:], pkt)
	return c.sw.WritePacket((*fp)[:datapath.Headroom+n])
}

// framePool holds frames for SendPacket with room for any channel's
// headroom and tag.
var framePool = sync.Pool{New: func() any {
	b := make([]byte, 1<<16+datapath.Headroom+datapath.DTLSOverhead)
	return &b
}}

// MTU is the largest packet the tunnel carries now.
func (c *Client) MTU() int {
	if m := c.Config().MTU; m > 0 {
		return m
	}
	return 1280
}

// tunnelDialer dials through whichever stack is current, so the router
// and resolver survive a stack replaced after an address change.
type tunnelDialer struct{ c *Client }

func (d tunnelDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.c.stack.Load().DialContext(ctx, network, addr)
}

// PolicyFrom builds the split policy the headend asked for: its routes,
// and the domains whose names resolve through the tunnel (the split-dns
// list, or the default domain when there is none).
func PolicyFrom(cfg *session.Config) *split.Policy {
	return split.FromConfig(cfg)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func dtlsSuite(off bool) string {
	if off {
		return ""
	}
	return session.PSKNegotiate
}

func (c *Client) listen() error {
	for i, addr := range []string{c.o.SOCKSAddr, c.o.HTTPAddr} {
		if addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			c.closeListeners()
			return fmt.Errorf("client: proxy listen: %w", err)
		}
		c.lns[i] = ln
		if err := proxy.CheckExposure(ln.Addr().String(), c.o.Proxy.Auth); err != nil {
			c.closeListeners()
			return fmt.Errorf("client: %w", err)
		}
	}
	fwds, err := proxy.ListenForwards(c.o.Proxy.Forwards)
	if err != nil {
		c.closeListeners()
		return fmt.Errorf("client: %w", err)
	}
	c.fwds = fwds
	return nil
}

func (c *Client) closeListeners() {
	for _, l := range append(c.lns[:], c.fwds...) {
		if l != nil {
			l.Close()
		}
	}
}

func (c *Client) serve(ctx context.Context) {
	srv := &proxy.Server{Router: c.router, Options: c.o.Proxy, Logger: c.log}
	if ln := c.lns[0]; ln != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			srv.ServeSOCKS5(ctx, ln)
		}()
	}
	if ln := c.lns[1]; ln != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			srv.ServeHTTP(ctx, ln)
		}()
	}
	for i, ln := range c.fwds {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			srv.ServeForward(ctx, ln, c.o.Proxy.Forwards[i])
		}()
	}
	go func() {
		c.runErr = c.run(ctx)
		close(c.done)
	}()
}

// SOCKSAddr returns where the SOCKS5 proxy listens, or "".
func (c *Client) SOCKSAddr() string { return addrOf(c.lns[0]) }

// HTTPAddr returns where the HTTP proxy listens, or "".
func (c *Client) HTTPAddr() string { return addrOf(c.lns[1]) }

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Config returns what the headend assigned on the latest CONNECT.
func (c *Client) Config() *session.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// Router returns the flow router, for front ends beyond the two proxies.
func (c *Client) Router() *proxy.Router { return c.router }

// Done is closed when the client has ended, by Close or for good.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the client ended on its own; nil after Close.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.runErr
	default:
		return nil
	}
}

// Close says goodbye to the headend (so it frees the session and cookie
// at once), stops the proxies and tears the stack down.
func (c *Client) Close() error {
	return c.shutdown((*datapath.CSTP).Disconnect)
}

// Suspend ends the tunnel like Close but keeps the cookie valid on the
// headend for a later Start (connect-on-demand's idle teardown).
func (c *Client) Suspend() error {
	return c.shutdown((*datapath.CSTP).Suspend)
}

func (c *Client) shutdown(bye func(*datapath.CSTP) error) error {
	var err error
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.mu.Lock()
		cstp := c.cstp
		c.mu.Unlock()
		if cstp != nil {
			err = bye(cstp)
		}
		c.cancel()
		<-c.done
		c.closeListeners()
		if c.dns != nil {
			c.dns.Close()
		}
		c.wg.Wait()

		st := c.Status()
		c.stack.Load().Close()
		c.log.Info("disconnected", "tx_bytes", st.TxBytes, "rx_bytes", st.RxBytes,
			"reconnects", st.Reconnects, "retransmits", st.Stack.TCPRetransmits)
	})
	return err
}
