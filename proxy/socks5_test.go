package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/ocnet/ocnet/dnsproxy"
	"github.com/ocnet/ocnet/split"
)

// appDialer dials loopback like recordingDialer and remembers the app ID
// each dial carried, by network and destination.
type appDialer struct {
	recordingDialer

	mu   sync.Mutex
	apps []string // "network addr app"
}

func (a *appDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	a.mu.Lock()
	a.apps = append(a.apps, fmt.Sprintf("%s %s %s", network, addr, AppFrom(ctx)))
	a.mu.Unlock()
	return a.recordingDialer.DialContext(ctx, network, addr)
}

func (a *appDialer) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.apps...)
}

// servers runs a SOCKS5 and an HTTP proxy with options o in front of a
// router that sends everything to d, and stops them at the end of the
// test, checking they return nil.
func servers(t *testing.T, r *Router, o Options) (socksAddr, httpAddr string) {
	t.Helper()
	s := &Server{Router: r, Options: o}
	sl, hl := listen(t), listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- s.ServeSOCKS5(ctx, sl) }()
	go func() { done <- s.ServeHTTP(ctx, hl) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("server returned %v after cancel", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("server did not stop")
			}
		}
	})
	return sl.Addr().String(), hl.Addr().String()
}

func TestSOCKS5Auth(t *testing.T) {
	echo := startEcho(t)
	auth := &Auth{User: "alice", Pass: "s3cret"}
	tests := []struct {
		name    string
		server  *Auth
		client  *Auth
		app     string
		wantErr string // "" = success
		wantApp string
	}{
		{"no auth", nil, nil, "", "", ""},
		{"username names the app", nil, nil, "com.example.ssh", "", "com.example.ssh"},
		{"right password", auth, &Auth{User: "alice", Pass: "s3cret"}, "", "", ""},
		{"wrong password", auth, &Auth{User: "alice", Pass: "nope"}, "", "wrong proxy username", ""},
		{"wrong user", auth, &Auth{User: "bob", Pass: "s3cret"}, "", "wrong proxy username", ""},
		{"missing credentials", auth, nil, "", "no acceptable auth method", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &appDialer{}
			socksAddr, _ := servers(t, &Router{Tunnel: d, Direct: d}, Options{Auth: tt.server})

			c := &SOCKSClient{Server: socksAddr, Auth: tt.client, App: tt.app}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			conn, err := c.Dial(ctx, echo)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Dial error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "nope") {
					t.Errorf("error %q carries a password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			roundTrip(t, conn, "ping")

			want := []string{"tcp " + echo + " " + tt.wantApp}
			if got := d.seen(); len(got) != 1 || got[0] != want[0] {
				t.Errorf("router dials %q, want %q", got, want)
			}
		})
	}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q, %v; want %q", buf, err, msg)
	}
}

// TestSOCKS5XProxyAuth checks interoperation with another client's
// RFC 1929 implementation.
func TestSOCKS5XProxyAuth(t *testing.T) {
	echo := startEcho(t)
	d := &appDialer{}
	socksAddr, _ := servers(t, &Router{Tunnel: d}, Options{Auth: &Auth{User: "u", Pass: "p"}})

	good, _ := xproxy.SOCKS5("tcp", socksAddr, &xproxy.Auth{User: "u", Password: "p"}, xproxy.Direct)
	conn, err := good.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn, "hello")
	conn.Close()

	bad, _ := xproxy.SOCKS5("tcp", socksAddr, &xproxy.Auth{User: "u", Password: "x"}, xproxy.Direct)
	if conn, err := bad.Dial("tcp", echo); err == nil {
		conn.Close()
		t.Error("wrong password accepted")
	}
}

// TestSOCKS5Requests sends raw requests and checks the reply codes.
func TestSOCKS5Requests(t *testing.T) {
	fail := &failDialer{}
	socksAddr, _ := servers(t, &Router{Tunnel: fail}, Options{})

	tests := []struct {
		name    string
		req     []byte
		wantRep byte
	}{
		{"bind unsupported", []byte{5, SOCKSBind, 0, 1, 10, 0, 0, 1, 0, 80}, repCmdNotSupported},
		{"unknown command", []byte{5, 9, 0, 1, 10, 0, 0, 1, 0, 80}, repCmdNotSupported},
		{"bad address type", []byte{5, 1, 0, 7, 10, 0, 0, 1, 0, 80}, repAddrTypeNotSupport},
		{"port zero", []byte{5, 1, 0, 1, 10, 0, 0, 1, 0, 0}, repHostUnreachable},
		{"dial fails", []byte{5, 1, 0, 3, 4, 'h', '.', 'x', 'y', 0, 80}, repHostUnreachable},
		{"empty name", []byte{5, 1, 0, 3, 0, 0, 80}, repGeneralFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(append([]byte{5, 1, 0}, tt.req...))
			var sel [2]byte
			if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, 0} {
				t.Fatalf("method selection %v, %v", sel, err)
			}
			var rep [3]byte
			if _, err := io.ReadFull(c, rep[:]); err != nil {
				t.Fatal(err)
			}
			if rep[1] != tt.wantRep {
				t.Errorf("reply %d (%s), want %d (%s)", rep[1], replyText(rep[1]),
					tt.wantRep, replyText(tt.wantRep))
			}
		})
	}
}

// TestHTTPAuthAndApp checks Proxy-Authorization both as a credential and,
// without Auth, as the app name.
func TestHTTPAuthAndApp(t *testing.T) {
	echo := startEcho(t)
	basic := func(u, p string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))
	}
	tests := []struct {
		name     string
		auth     *Auth
		header   string
		wantCode int
		wantApp  string
	}{
		{"open, no header", nil, "", 200, ""},
		{"open, username is the app", nil, basic("org.mozilla.firefox", "x"), 200,
			"org.mozilla.firefox"},
		{"auth, no header", &Auth{User: "a", Pass: "b"}, "", 407, ""},
		{"auth, wrong", &Auth{User: "a", Pass: "b"}, basic("a", "c"), 407, ""},
		{"auth, not basic", &Auth{User: "a", Pass: "b"}, "Bearer abc", 407, ""},
		{"auth, right", &Auth{User: "a", Pass: "b"}, basic("a", "b"), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &appDialer{}
			_, httpAddr := servers(t, &Router{Tunnel: d}, Options{Auth: tt.auth})

			c, err := net.Dial("tcp", httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			hdr := ""
			if tt.header != "" {
				hdr = "Proxy-Authorization: " + tt.header + "\r\n"
			}
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", echo, echo, hdr)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantCode == 407 {
				if resp.Header.Get("Proxy-Authenticate") == "" {
					t.Error("407 without Proxy-Authenticate")
				}
				if len(d.seen()) != 0 {
					t.Error("unauthenticated request was dialled")
				}
				return
			}
			want := "tcp " + echo + " " + tt.wantApp
			if got := d.seen(); len(got) != 1 || got[0] != want {
				t.Errorf("router dials %q, want %q", got, want)
			}
		})
	}
}

// TestAppFromProcess names the app by the executable owning the client
// socket: in this test the client is the test binary itself.
func TestAppFromProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("process lookup is Linux-only")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	echo := startEcho(t)

	d := &appDialer{}
	socksAddr, httpAddr := servers(t, &Router{Tunnel: d}, Options{AppFromProcess: true})

	// SOCKS5 without a username: the process names the app.
	c := &SOCKSClient{Server: socksAddr}
	conn, err := c.Dial(t.Context(), echo)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	// A username still wins over the process.
	c.App = "named"
	conn, err = c.Dial(t.Context(), echo)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	// HTTP CONNECT, no username.
	hc, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	fmt.Fprintf(hc, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echo, echo)
	resp, err := http.ReadResponse(bufio.NewReader(hc), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v", err)
	}

	want := []string{"tcp " + echo + " " + exe, "tcp " + echo + " named", "tcp " + echo + " " + exe}
	got := d.seen()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("apps seen:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseProcAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0100007F:1F90", "127.0.0.1:8080"},
		{"00000000:0016", "0.0.0.0:22"},
		{"00000000000000000000000001000000:0050", "[::1]:80"},
		{"0000000000000000FFFF00000100007F:01BB", "127.0.0.1:443"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseProcAddr(tt.in)
			if err != nil || got.String() != tt.want {
				t.Errorf("parseProcAddr(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "0100007F", "0100007F:", "0100007G:0050", "01:0050", "0100007F:10000"} {
		if _, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q) succeeded", bad)
		}
	}
}

// exposedListener reports an all-interfaces address while listening on
// loopback, so the exposure check can be tested without exposing a port.
type exposedListener struct{ net.Listener }

func (exposedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero, Port: 1080} }

func TestExposureNeedsAuth(t *testing.T) {
	r := &Router{}
	s := &Server{Router: r}
	if err := s.ServeSOCKS5(t.Context(), exposedListener{listen(t)}); !errors.Is(err, ErrAuthRequired) {
		t.Errorf("ServeSOCKS5 beyond loopback without auth: %v, want ErrAuthRequired", err)
	}
	if err := s.ServeHTTP(t.Context(), exposedListener{listen(t)}); !errors.Is(err, ErrAuthRequired) {
		t.Errorf("ServeHTTP beyond loopback without auth: %v, want ErrAuthRequired", err)
	}

	tests := []struct {
		addr string
		auth *Auth
		ok   bool
	}{
		{"127.0.0.1:1080", nil, true},
		{"[::1]:1080", nil, true},
		{"localhost:1080", nil, true},
		{"", nil, true}, // proxy off
		{"0.0.0.0:1080", nil, false},
		{":1080", nil, false},
		{"192.0.2.1:1080", nil, false},
		{"proxy.example:1080", nil, false},
		{"0.0.0.0:1080", &Auth{User: "a", Pass: "b"}, true},
	}
	for _, tt := range tests {
		if err := CheckExposure(tt.addr, tt.auth); (err == nil) != tt.ok {
			t.Errorf("CheckExposure(%q, %v) = %v, want ok=%v", tt.addr, tt.auth, err, tt.ok)
		}
	}
}

func TestAuthNeverPrintsPassword(t *testing.T) {
	a := &Auth{User: "alice", Pass: "hunter2"}
	for _, s := range []string{a.String(), fmt.Sprint(a), fmt.Sprintf("%v", a),
		a.LogValue().String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("%q shows the password", s)
		}
	}
}

func TestSOCKSUDPHeader(t *testing.T) {
	src := netip.MustParseAddrPort("[fd00::1]:53")
	b := AppendSOCKSUDPHeader(nil, src)
	b = append(b, "answer"...)
	dst, payload, err := ParseSOCKSUDP(b)
	if err != nil || dst != src.String() || !bytes.Equal(payload, []byte("answer")) {
		t.Errorf("round trip = %q %q %v", dst, payload, err)
	}

	for name, bad := range map[string][]byte{
		"short":     {0, 0},
		"reserved":  {1, 0, 0, 1, 1, 2, 3, 4, 0, 53},
		"fragment":  {0, 0, 1, 1, 1, 2, 3, 4, 0, 53},
		"truncated": {0, 0, 0, 1, 1, 2},
		"name":      {0, 0, 0, 3, 5, 'a', 'b'},
		"atyp":      {0, 0, 0, 2, 1, 2, 3, 4, 0, 53},
	} {
		if _, _, err := ParseSOCKSUDP(bad); err == nil {
			t.Errorf("%s: ParseSOCKSUDP accepted %v", name, bad)
		}
	}
}

// TestPerAppRules checks that the app a proxy learns reaches the policy:
// an app outside allowed-apps is refused (no bypass) on both proxies,
// another goes through, and without bypass refusal it goes direct.
func TestPerAppRules(t *testing.T) {
	echo := startEcho(t)
	_, port, _ := net.SplitHostPort(echo)
	dst := corpIP + ":" + port
	allowed, err := split.ParseAppList("com.example.*")
	if err != nil {
		t.Fatal(err)
	}

	for _, refuse := range []bool{true, false} {
		t.Run(fmt.Sprintf("refuse=%v", refuse), func(t *testing.T) {
			tunnel, direct := &appDialer{}, &appDialer{}
			policy := &split.Policy{
				Include: pfxs(corpNet),
				Apps:    split.AppRules{Allowed: allowed, Refuse: refuse},
			}
			socksAddr, httpAddr := servers(t, &Router{Policy: policy, Tunnel: tunnel, Direct: direct},
				Options{})

			ok := &SOCKSClient{Server: socksAddr, App: "com.example.ssh"}
			conn, err := ok.Dial(t.Context(), dst)
			if err != nil {
				t.Fatalf("allowed app: %v", err)
			}
			conn.Close()

			other := &SOCKSClient{Server: socksAddr, App: "org.other.app"}
			conn, err = other.Dial(t.Context(), dst)
			switch {
			case refuse && (err == nil || !strings.Contains(err.Error(), "not allowed")):
				t.Errorf("app outside allowed-apps: %v, want a not-allowed reply", err)
			case !refuse && err != nil:
				t.Errorf("app outside allowed-apps without refusal: %v", err)
			}
			if conn != nil {
				conn.Close()
			}

			hc, err := net.Dial("tcp", httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer hc.Close()
			hc.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(hc, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n",
				dst, dst, "Basic "+base64.StdEncoding.EncodeToString([]byte("org.other.app:x")))
			resp, err := http.ReadResponse(bufio.NewReader(hc), &http.Request{Method: "CONNECT"})
			if err != nil {
				t.Fatal(err)
			}
			want := http.StatusOK
			if refuse {
				want = http.StatusForbidden
			}
			if resp.StatusCode != want {
				t.Errorf("HTTP CONNECT for app outside allowed-apps: %d, want %d", resp.StatusCode, want)
			}

			wantT := []string{"tcp " + dst + " com.example.ssh"}
			if got := tunnel.seen(); !slices.Equal(got, wantT) {
				t.Errorf("tunnel dials %q, want %q", got, wantT)
			}
			var wantD []string
			if !refuse {
				wantD = []string{"tcp " + dst + " org.other.app", "tcp " + dst + " org.other.app"}
			}
			if got := direct.seen(); !slices.Equal(got, wantD) {
				t.Errorf("direct dials %q, want %q", got, wantD)
			}
		})
	}
}

// TestReplyCode checks that a name that does not resolve is reply 4 (host
// unreachable) however its resolver failed, even when the failure's text
// says "refused", and that only a refused connection is reply 5.
func TestReplyCode(t *testing.T) {
	dnsRefused := &net.DNSError{Err: "read udp 127.0.0.1:40000->127.0.0.53:53: " +
		"read: connection refused", Name: "intranet.example", Server: "127.0.0.53:53"}
	tcpRefused := &net.OpError{Op: "dial", Net: "tcp",
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	stackRefused := &net.OpError{Op: "connect", Net: "tcp",
		Err: errors.New("connection was refused")}

	tests := []struct {
		name string
		err  error
		want byte
	}{
		{"router resolve error", &resolveError{errors.New("lookup x: refused")},
			repHostUnreachable},
		{"local resolver refused, wrapped", fmt.Errorf("proxy: dial x:80: %w",
			&resolveError{fmt.Errorf("dnsproxy: lookup x (local): %w", dnsRefused)}),
			repHostUnreachable},
		{"gate dialled, DNS error", &net.OpError{Op: "dial", Net: "tcp", Err: dnsRefused},
			repHostUnreachable},
		{"tunnel DNS answered REFUSED", fmt.Errorf("dnsproxy: lookup x (tunnel): %w: %w",
			dnsproxy.ErrServerFailed, errors.New("server answered REFUSED")),
			repHostUnreachable},
		{"NXDOMAIN", fmt.Errorf("lookup x: %w", dnsproxy.ErrNotFound), repHostUnreachable},
		{"no tunnel DNS", dnsproxy.ErrNoServers, repHostUnreachable},
		{"resolver timeout", &net.DNSError{Err: "i/o timeout", IsTimeout: true},
			repHostUnreachable},
		{"direct connection refused", tcpRefused, repConnRefused},
		{"tunnel connection refused", fmt.Errorf("10.0.0.1:80 via tunnel: %w", stackRefused),
			repConnRefused},
		{"policy refused", fmt.Errorf("x: %w", ErrRefused), repNotAllowed},
		{"loop", ErrLoop, repNotAllowed},
		{"no tunnel", ErrNoTunnel, repNetUnreachable},
		{"net unreachable", syscall.ENETUNREACH, repNetUnreachable},
		{"deadline", context.DeadlineExceeded, repTTLExpired},
		{"other", errors.New("refused by test"), repHostUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replyCode(tt.err); got != tt.want {
				t.Errorf("replyCode(%v) = %d (%s), want %d (%s)", tt.err,
					got, replyText(got), tt.want, replyText(tt.want))
			}
		})
	}
}

// refusingDNS answers every query on a loopback UDP port with REFUSED, as
// a stub resolver that serves no one would. It returns its address.
func refusingDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			buf[2] |= 0x80                  // QR: a response
			buf[3] = buf[3]&0xf0 | 0x80 | 5 // RA, RCODE 5 REFUSED
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String()
}

// closedUDPPort returns a loopback UDP address nothing listens on, so a
// query there fails with "connection refused".
func closedUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// TestSOCKS5UnresolvedName runs the user's case: the local resolver
// refuses the query (or is not there at all). SOCKS5 must answer 4 (host
// unreachable), not 5 (connection refused), and the HTTP proxy 502.
func TestSOCKS5UnresolvedName(t *testing.T) {
	for _, tt := range []struct {
		name   string
		server string
	}{
		{"resolver answers REFUSED", refusingDNS(t)},
		{"resolver port closed", closedUDPPort(t)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			local := &net.Resolver{PreferGo: true,
				Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "udp", tt.server)
				}}
			direct := &failDialer{}
			r := &Router{
				Policy:   &split.Policy{Include: []netip.Prefix{fakeNet}},
				Resolver: dnsproxy.New(dnsproxy.Options{Local: local}),
				Direct:   direct,
			}
			socksAddr, httpAddr := servers(t, r, Options{})

			c, err := net.Dial("tcp", socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			name := "www.unresolved.example"
			req := append([]byte{5, 1, 0, 5, 1, 0, 3, byte(len(name))}, name...)
			c.Write(append(req, 0, 80))
			var rep [5]byte
			if _, err := io.ReadFull(c, rep[:]); err != nil {
				t.Fatal(err)
			}
			if rep[3] != repHostUnreachable {
				t.Errorf("SOCKS5 reply %d (%s), want %d (%s)", rep[3], replyText(rep[3]),
					repHostUnreachable, replyText(repHostUnreachable))
			}

			resp, err := httpVia(httpAddr, "http://"+name+"/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway ||
				!strings.Contains(string(body), "cannot reach "+name) {
				t.Errorf("HTTP proxy answered %d %q, want 502 naming %s",
					resp.StatusCode, body, name)
			}
			if len(direct.dsts) > 0 {
				t.Errorf("dialled %v for a name that did not resolve", direct.dsts)
			}
		})
	}
}

// httpVia GETs url through the HTTP proxy at proxyAddr.
func httpVia(proxyAddr, target string) (*http.Response, error) {
	pu, err := url.Parse("http://" + proxyAddr)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	return c.Get(target)
}
