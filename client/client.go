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

	// NoDTLS keeps data on the TLS channel.
	NoDTLS bool

	// SOCKSAddr and HTTPAddr are the proxy listen addresses; "" turns a
	// proxy off.
	SOCKSAddr string
	HTTPAddr  string

	Logger *slog.Logger
}

// Client is a connected tunnel with its proxies. Close ends it.
type Client struct {
	Config *session.Config // what the headend assigned

	log    *slog.Logger
	tunnel *session.Tunnel
	cstp   *datapath.CSTP
	sw     *datapath.Switch
	noDTLS bool

	// Counters of DTLS channels that have ended.
	dtlsTx, dtlsRx, dtlsDrop atomic.Uint64
	stack                    *netstack.Stack
	router                   *proxy.Router
	lns                      []net.Listener
	cancel                   context.CancelFunc
	wg                       sync.WaitGroup
	done                     chan struct{}
	runErr                   error
	closeMu                  sync.Once
}

// Start opens the tunnel and the proxies. The returned client runs until
// Close or until the tunnel fails; Done and Err report the latter.
func Start(ctx context.Context, o Options) (*Client, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()

	t, err := session.Connect(ctx, session.Options{
		URL:             o.URL,
		TLS:             o.TLS,
		UserAgent:       o.UserAgent,
		Cookie:          o.Cookie,
		Hostname:        host,
		BaseMTU:         1500,
		DTLSCipherSuite: dtlsSuite(o.NoDTLS),
		Logger:          log,
	})
	if err != nil {
		return nil, err
	}
	cfg := t.Config
	c := &Client{
		Config: cfg, log: log, tunnel: t, noDTLS: o.NoDTLS,
		done: make(chan struct{}),
	}

	if err := c.build(o); err != nil {
		t.Conn.Close()
		return nil, err
	}
	if err := c.listen(o); err != nil {
		c.stack.Close()
		t.Conn.Close()
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.serve(runCtx)
	return c, nil
}

// build wires channel, stack and router from the headend's configuration.
func (c *Client) build(o Options) error {
	cfg := c.Config

	var addrs []netip.Prefix
	if cfg.Address.IsValid() {
		addrs = append(addrs, cfg.Address)
	}
	if cfg.Address6.IsValid() {
		addrs = append(addrs, cfg.Address6)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		// TODO: derive from the base MTU and the channel's overhead
		// when the headend sends no X-CSTP-MTU.
		mtu = 1280
	}

	var stk *netstack.Stack
	c.cstp = datapath.NewCSTP(datapath.CSTPOptions{
		Conn:      c.tunnel.Conn,
		Reader:    c.tunnel.Reader,
		DPD:       cfg.DPD,
		Keepalive: cfg.Keepalive,
		Deliver:   func(pkt []byte) { stk.Inject(pkt) },
		Logger:    c.log,
	})
	c.sw = datapath.NewSwitch(c.cstp)
	stk, err := netstack.New(netstack.Config{
		Addrs:    addrs,
		MTU:      mtu,
		Headroom: datapath.Headroom,
		Logger:   c.log.With("sub", "netstack"),
	}, c.sw.WritePacket)
	if err != nil {
		return err
	}
	c.stack = stk

	pol := PolicyFrom(cfg)
	res := dnsproxy.New(dnsproxy.Options{
		Policy:       pol,
		Servers:      cfg.DNS,
		SearchDomain: first(cfg.DefaultDomains),
		Tunnel:       stk,
		Logger:       c.log,
	})
	c.router = &proxy.Router{
		Policy:   pol,
		Resolver: res,
		Tunnel:   stk,
		Logger:   c.log.With("sub", "router"),
	}

	c.log.Info("tunnel up",
		"address", addrs, "mtu", mtu,
		"dns", cfg.DNS, "split_dns", pol.Domains,
		"routes", cfg.SplitInclude, "excluded", cfg.SplitExclude)
	return nil
}

// PolicyFrom builds the split policy the headend asked for: its routes,
// and the domains whose names resolve through the tunnel (the split-dns
// list, or the default domain when there is none).
func PolicyFrom(cfg *session.Config) *split.Policy {
	domains := cfg.SplitDNS
	if len(domains) == 0 {
		domains = cfg.DefaultDomains
	}
	return &split.Policy{
		Include:      cfg.SplitInclude,
		Exclude:      cfg.SplitExclude,
		DNSServers:   cfg.DNS,
		Domains:      domains,
		TunnelAllDNS: cfg.TunnelAllDNS,
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func (c *Client) listen(o Options) error {
	for _, addr := range []string{o.SOCKSAddr, o.HTTPAddr} {
		if addr == "" {
			c.lns = append(c.lns, nil)
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range c.lns {
				if l != nil {
					l.Close()
				}
			}
			return fmt.Errorf("client: proxy listen: %w", err)
		}
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil &&
			!ap.Addr().IsLoopback() {
			// TODO: require proxy credentials on non-loopback listeners.
			c.log.Warn("proxy listens beyond loopback; anyone who reaches it uses the VPN",
				"addr", ln.Addr())
		}
		c.lns = append(c.lns, ln)
	}
	return nil
}

func (c *Client) serve(ctx context.Context) {
	if ln := c.lns[0]; ln != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			proxy.ServeSOCKS5(ctx, ln, c.router, c.log)
		}()
	}
	if ln := c.lns[1]; ln != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			proxy.ServeHTTP(ctx, ln, c.router, c.log)
		}()
	}
	go func() {
		c.runErr = c.cstp.Run(ctx)
		close(c.done)
	}()
	if !c.noDTLS {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.runDTLS(ctx)
		}()
	}
}

func dtlsSuite(off bool) string {
	if off {
		return ""
	}
	return session.PSKNegotiate
}

// dtlsRetry is the pause before a new DTLS attempt. ocserv drops a second
// UDP handover for a session within 3 s, so never retry faster than that.
const dtlsRetry = 10 * time.Second

// runDTLS brings DTLS up, moves data onto it, and when it fails moves data
// back to CSTP and tries again, until ctx ends. Flows never notice: both
// channels feed the same stack.
func (c *Client) runDTLS(ctx context.Context) {
	for {
		link, err := session.DialDTLS(ctx, c.tunnel, c.log)
		if errors.Is(err, session.ErrNoDTLS) {
			c.log.Info("headend offers no DTLS; data stays on TLS")
			return
		}
		if err == nil {
			err = c.useDTLS(ctx, link)
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("DTLS unavailable, data on TLS", "err", err, "retry_in", dtlsRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(dtlsRetry):
		}
	}
}

// useDTLS runs one DTLS association until it fails.
func (c *Client) useDTLS(ctx context.Context, link *session.DTLSLink) error {
	cfg := c.Config
	d, err := datapath.NewDTLS(datapath.DTLSOptions{
		Conn:      link.Conn,
		Pending:   link.Pending,
		Keys:      link.Keys,
		DPD:       cfg.DTLSDPD,
		Keepalive: cfg.DTLSKeepalive,
		Deliver:   c.stack.Inject,
		Logger:    c.log,
	})
	if err != nil {
		link.Conn.Close()
		return err
	}
	c.sw.SetDTLS(d)
	c.log.Info("data channel", "channel", "DTLS", "suite", d.CipherSuite())
	err = d.Run(ctx)
	c.sw.SetDTLS(nil)
	c.dtlsTx.Add(d.Counters.TxPackets.Load())
	c.dtlsRx.Add(d.Counters.RxPackets.Load())
	c.dtlsDrop.Add(d.Counters.RxDropped.Load())
	return err
}

// SOCKSAddr and HTTPAddr return where the proxies listen, or "".
func (c *Client) SOCKSAddr() string { return addrOf(c.lns[0]) }

// HTTPAddr returns where the HTTP proxy listens, or "".
func (c *Client) HTTPAddr() string { return addrOf(c.lns[1]) }

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Router returns the flow router, for front ends beyond the two proxies.
func (c *Client) Router() *proxy.Router { return c.router }

// Done is closed when the tunnel has ended, by Close or by failure.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the tunnel ended; nil after Close.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.runErr
	default:
		return nil
	}
}

// ErrTunnelEnded wraps the reason a tunnel stopped on its own.
var ErrTunnelEnded = errors.New("client: tunnel ended")

// Close says goodbye to the headend (so it frees the session at once),
// stops the proxies and tears the stack down.
func (c *Client) Close() error {
	var err error
	c.closeMu.Do(func() {
		err = c.cstp.Disconnect()
		c.cancel()
		<-c.done
		for _, l := range c.lns {
			if l != nil {
				l.Close()
			}
		}
		c.wg.Wait()
		st := c.stack.Stats()
		c.stack.Close()
		c.log.Info("disconnected",
			"tx_packets", c.cstp.Counters.TxPackets.Load()+c.dtlsTx.Load(),
			"rx_packets", c.cstp.Counters.RxPackets.Load()+c.dtlsRx.Load(),
			"retransmits", st.TCPRetransmits, "out_dropped", st.OutDropped,
			"dtls_rx_dropped", c.dtlsDrop.Load())
	})
	return err
}
