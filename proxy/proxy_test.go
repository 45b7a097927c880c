package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	xproxy "golang.org/x/net/proxy"

	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/split"
)

// recordingDialer stands in for the netstack (or the host): a loopback
// dialer that remembers every TCP destination it was asked for. Tests
// give their servers addresses in 10.0.0.0/8, which split routes like any
// other, and the dialer reaches them on 127.0.0.1 with the same port: the
// policy never sees loopback, which it always sends direct.
type recordingDialer struct {
	d net.Dialer

	mu   sync.Mutex
	dsts []string // guarded by mu; TCP only, DNS over UDP is not recorded
}

func (r *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if strings.HasPrefix(network, "tcp") {
		r.mu.Lock()
		r.dsts = append(r.dsts, addr)
		r.mu.Unlock()
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !fakeNet.Contains(ap.Addr()) {
		return r.d.DialContext(ctx, network, addr)
	}
	loop := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
	c, err := r.d.DialContext(ctx, network, loop.String())
	if err != nil || !strings.HasPrefix(network, "udp") {
		return c, err
	}
	// The UDP relay names a reply's sender by the flow's remote address.
	return fakeRemote{c, net.UDPAddrFromAddrPort(ap)}, nil
}

// fakeRemote reports the address the test asked for, not 127.0.0.1.
type fakeRemote struct {
	net.Conn
	remote net.Addr
}

func (f fakeRemote) RemoteAddr() net.Addr { return f.remote }

// fakeNet holds the test servers' addresses; see recordingDialer.
var fakeNet = netip.MustParsePrefix("10.0.0.0/8")

// Addresses of the test servers: corpIP inside the fixture's usual
// include (10.99.0.0/16), outsideIP outside it.
const (
	corpIP    = "10.99.0.1"
	outsideIP = "10.98.0.1"
	corpNet   = "10.99.0.0/16"
)

func (r *recordingDialer) used() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.dsts...)
}

// startDNS serves "<name> A 10.99.0.1" (corpIP) for every name under corp.example
// except nx.corp.example, over UDP on a free loopback port.
func startDNS(t *testing.T) netip.AddrPort {
	t.Helper()

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		reply := new(dns.Msg)
		reply.SetReply(q)
		name := strings.ToLower(q.Question[0].Name)
		switch {
		case name == "nx.corp.example." || !strings.HasSuffix(name, ".corp.example."):
			reply.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR(name + " 60 IN A " + corpIP)
			reply.Answer = append(reply.Answer, rr)
		}
		w.WriteMsg(reply)
	})
	srv := &dns.Server{PacketConn: pc, Handler: handler}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// corpHandler is the "corporate web server": it echoes the path and
// reports which proxy-only headers reached it.
func corpHandler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stream" {
		for i := range 3 {
			fmt.Fprintf(w, "chunk %d\n", i)
			http.NewResponseController(w).Flush()
		}
		return
	}
	leaked := []string{}
	for _, h := range []string{"Proxy-Authorization", "Proxy-Connection", "X-Hop"} {
		if r.Header.Get(h) != "" {
			leaked = append(leaked, h)
		}
	}
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Connection", "X-Secret-Hop")
	w.Header().Set("X-Secret-Hop", "1")
	fmt.Fprintf(w, "path=%s host=%s leaked=%v body=%s", r.URL.Path, r.Host, leaked, body)
}

type fixture struct {
	web, tlsWeb    *httptest.Server
	webPort        string
	tunnel, direct *recordingDialer
	router         *Router
	socksAddr      string
	httpAddr       string
	cancel         context.CancelFunc
	done           chan error // one value per server
	stopOnce       sync.Once
}

// newFixture starts both proxies in front of a Router whose policy sends
// include (and the split-DNS domain corp.example) to the tunnel.
func newFixture(t *testing.T, include string) *fixture {
	t.Helper()

	f := &fixture{
		web:    httptest.NewServer(http.HandlerFunc(corpHandler)),
		tlsWeb: httptest.NewTLSServer(http.HandlerFunc(corpHandler)),
		tunnel: &recordingDialer{},
		direct: &recordingDialer{},
		done:   make(chan error, 2),
	}
	t.Cleanup(f.web.Close)
	t.Cleanup(f.tlsWeb.Close)
	_, f.webPort, _ = net.SplitHostPort(f.web.Listener.Addr().String())

	dnsAddr := startDNS(t)
	policy := &split.Policy{
		Include: []netip.Prefix{netip.MustParsePrefix(include)},
		Domains: []string{"corp.example"},
	}
	f.router = &Router{
		Policy: policy,
		Resolver: dnsproxy.New(dnsproxy.Options{
			Policy:  policy,
			Servers: []netip.Addr{dnsAddr.Addr()},
			Port:    dnsAddr.Port(),
			Tunnel:  f.tunnel,
		}),
		Tunnel: f.tunnel,
		Direct: f.direct,
	}

	socksLn := listen(t)
	httpLn := listen(t)
	f.socksAddr, f.httpAddr = socksLn.Addr().String(), httpLn.Addr().String()

	ctx, cancel := context.WithCancel(t.Context())
	f.cancel = cancel
	go func() { f.done <- ServeSOCKS5(ctx, socksLn, f.router, nil) }()
	go func() { f.done <- ServeHTTP(ctx, httpLn, f.router, nil) }()
	t.Cleanup(f.stop(t))
	return f
}

// stop cancels the servers and checks that both return nil.
func (f *fixture) stop(t *testing.T) func() {
	return func() {
		f.stopOnce.Do(func() {
			f.cancel()
			for range 2 {
				select {
				case err := <-f.done:
					if err != nil {
						t.Errorf("server returned %v after cancel, want nil", err)
					}
				case <-time.After(5 * time.Second):
					buf := make([]byte, 1<<20)
					t.Fatalf("server did not return after cancel:\n%s",
						buf[:runtime.Stack(buf, true)])
				}
			}
		})
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func (f *fixture) socksClient(t *testing.T) *http.Client {
	t.Helper()
	d, err := xproxy.SOCKS5("tcp", f.socksAddr, nil, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: d.(xproxy.ContextDialer).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func (f *fixture) httpClient(t *testing.T) *http.Client {
	t.Helper()
	tlsConf := f.tlsWeb.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsConf.ServerName = "example.com" // a name in httptest's certificate
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: f.httpAddr}),
		TLSClientConfig: tlsConf,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", u, err)
	}
	return resp.StatusCode, string(body)
}

func TestFetchThroughProxies(t *testing.T) {
	tests := []struct {
		name     string
		include  string
		client   string // "socks" or "http"
		host     string
		tls      bool
		wantPath string // "tunnel" or "direct"
		wantIP   string
	}{
		{"socks name via split dns", corpNet, "socks", "web.corp.example", false, "tunnel", corpIP},
		{"socks ip literal", corpNet, "socks", corpIP, false, "tunnel", corpIP},
		{"socks routed direct", corpNet, "socks", outsideIP, false, "direct", outsideIP},
		{"http absolute form", corpNet, "http", "web.corp.example", false, "tunnel", corpIP},
		{"http absolute form direct", corpNet, "http", outsideIP, false, "direct", outsideIP},
		{"http connect", corpNet, "http", "web.corp.example", true, "tunnel", corpIP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.include)

			srv := f.web
			if tt.tls {
				srv = f.tlsWeb
			}
			_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
			host := tt.host
			scheme := "http"
			if tt.tls {
				scheme = "https"
			}
			u := fmt.Sprintf("%s://%s/hello", scheme, net.JoinHostPort(host, port))

			c := f.socksClient(t)
			if tt.client == "http" {
				c = f.httpClient(t)
			}
			code, body := get(t, c, u)
			if code != http.StatusOK || !strings.Contains(body, "path=/hello") {
				t.Fatalf("GET %s = %d %q", u, code, body)
			}

			want := tt.wantIP + ":" + port
			used, unused := f.tunnel, f.direct
			if tt.wantPath == "direct" {
				used, unused = f.direct, f.tunnel
			}
			if got := used.used(); len(got) != 1 || got[0] != want {
				t.Errorf("%s dialer saw %v, want [%s]", tt.wantPath, got, want)
			}
			if got := unused.used(); len(got) != 0 {
				t.Errorf("the other dialer saw %v, want nothing", got)
			}
			st := f.router.Stats()
			if st.Tunnel+st.Direct != 1 || st.Failed != 0 {
				t.Errorf("Stats() = %+v, want one flow", st)
			}
		})
	}
}

func TestHTTPForwardHeadersAndBodies(t *testing.T) {
	f := newFixture(t, corpNet)
	c := f.httpClient(t)

	u := "http://web.corp.example:" + f.webPort + "/post"
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader("payload"))
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	want := "path=/post host=web.corp.example:" + f.webPort + " leaked=[] body=payload"
	if string(body) != want {
		t.Errorf("origin saw %q, want %q", body, want)
	}
	if resp.Header.Get("X-Secret-Hop") != "" {
		t.Error("a response header named in Connection was passed on")
	}

	code, body2 := get(t, c, "http://web.corp.example:"+f.webPort+"/stream")
	if code != http.StatusOK || body2 != "chunk 0\nchunk 1\nchunk 2\n" {
		t.Errorf("stream = %d %q", code, body2)
	}
}

func TestHTTPErrors(t *testing.T) {
	f := newFixture(t, corpNet)

	closed := listen(t)
	_, deadPort, _ := net.SplitHostPort(closed.Addr().String())
	deadAddr := net.JoinHostPort(corpIP, deadPort)
	closed.Close()

	tests := []struct {
		name     string
		send     string // raw request to the proxy
		wantCode int
		wantText string
	}{
		{"dial refused", "GET http://" + deadAddr + "/ HTTP/1.1\r\nHost: " + deadAddr + "\r\n\r\n",
			http.StatusBadGateway, "via tunnel"},
		{"unknown tunnel name",
			"GET http://nx.corp.example/ HTTP/1.1\r\nHost: nx.corp.example\r\n\r\n",
			http.StatusBadGateway, "nx.corp.example"},
		{"connect refused",
			"CONNECT " + deadAddr + " HTTP/1.1\r\nHost: " + deadAddr + "\r\n\r\n",
			http.StatusBadGateway, "cannot reach"},
		{"connect without port",
			"CONNECT web.corp.example HTTP/1.1\r\nHost: web.corp.example\r\n\r\n",
			http.StatusBadRequest, "host:port"},
		{"origin form", "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
			http.StatusBadRequest, "absolute URL"},
		{"https absolute form", "GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
			http.StatusBadRequest, "use CONNECT"},
		{"connect port zero", "CONNECT example.com:0 HTTP/1.1\r\nHost: example.com:0\r\n\r\n",
			http.StatusBadRequest, "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", f.httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))

			io.WriteString(conn, tt.send)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(body), tt.wantText) {
				t.Errorf("got %d %q, want %d containing %q",
					resp.StatusCode, body, tt.wantCode, tt.wantText)
			}
		})
	}
	if f.router.Stats().Failed == 0 {
		t.Error("failed flows were not counted")
	}
}

// startEcho runs a TCP server that echoes until the client half-closes,
// then closes its own write side.
func startEcho(t *testing.T) string {
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// TestHalfClose sends data, half-closes, and expects the echo back: the
// proxies must pass the FIN on without tearing down the reverse direction.
func TestHalfClose(t *testing.T) {
	f := newFixture(t, corpNet)
	echo := startEcho(t)

	dialers := []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"socks5", func() (net.Conn, error) {
			d, err := xproxy.SOCKS5("tcp", f.socksAddr, nil, xproxy.Direct)
			if err != nil {
				return nil, err
			}
			return d.Dial("tcp", echo)
		}},
		{"http connect", func() (net.Conn, error) {
			c, err := net.Dial("tcp", f.httpAddr)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echo, echo)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusOK {
				c.Close()
				return nil, fmt.Errorf("CONNECT: %v %v", resp, err)
			}
			if br.Buffered() != 0 {
				c.Close()
				return nil, errors.New("CONNECT reply followed by stray bytes")
			}
			return c, nil
		}},
	}
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			c, err := d.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))

			msg := strings.Repeat("half-close ", 10000)
			go func() {
				io.WriteString(c, msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("reading echo: %v", err)
			}
			if string(got) != msg {
				t.Errorf("echo returned %d bytes, want %d", len(got), len(msg))
			}
		})
	}
}

// TestShutdownLeaksNothing leaves a CONNECT tunnel and a SOCKS flow open,
// cancels the servers and checks that every goroutine they started ends.
func TestShutdownLeaksNothing(t *testing.T) {
	echo := startEcho(t)
	before := runtime.NumGoroutine()

	f := newFixture(t, corpNet)

	var open []net.Conn
	d, _ := xproxy.SOCKS5("tcp", f.socksAddr, nil, xproxy.Direct)
	sc, err := d.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	open = append(open, sc)

	hc, err := net.Dial("tcp", f.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	open = append(open, hc)
	fmt.Fprintf(hc, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echo, echo)
	resp, err := http.ReadResponse(bufio.NewReader(hc), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v", err)
	}

	var served atomic.Int32
	for _, c := range open {
		io.WriteString(c, "ping")
		buf := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err == nil {
			served.Add(1)
		}
	}
	if served.Load() != 2 {
		t.Fatalf("only %d of 2 flows echoed before shutdown", served.Load())
	}

	f.stop(t)()

	// The proxies must have closed the client side of every flow.
	for _, c := range open {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a flow stayed open after shutdown")
		}
		c.Close()
	}

	// Leave the DNS and web servers of the fixture out of the count: they
	// belong to the test, not to the proxies.
	f.web.Close()
	f.tlsWeb.Close()
	var now int
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		if now = runtime.NumGoroutine(); now <= before+dnsGoroutines {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Errorf("%d goroutines before, %d after shutdown:\n%s",
		before, now, buf[:runtime.Stack(buf, true)])
}

// dnsGoroutines is how many goroutines the test DNS server keeps while it
// is running: its UDP read loop.
const dnsGoroutines = 1
