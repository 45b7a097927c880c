package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ocnet/ocnet/split"
)

// TestReaches: which destinations a listener would accept, as Linux
// delivers them. The host's own non-loopback address is 198.18.5.5 here.
func TestReaches(t *testing.T) {
	saved := interfaceAddrs
	interfaceAddrs = func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.IPv4(127, 0, 0, 1), Mask: net.CIDRMask(8, 32)},
			&net.IPNet{IP: net.ParseIP("198.18.5.5"), Mask: net.CIDRMask(24, 32)},
		}, nil
	}
	t.Cleanup(func() { interfaceAddrs = saved })

	for _, tc := range []struct {
		dst, listener string
		want          bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"127.0.0.1:8081", "127.0.0.1:8080", false},
		{"127.0.0.2:8080", "127.0.0.1:8080", false},
		{"0.0.0.0:8080", "127.0.0.1:8080", true},
		// Go's dialer falls back from [::] to 0.0.0.0, so [::] reaches IPv4
		// listeners on loopback too (seen on the bed: a SOCKS5 CONNECT
		// to [::]:1080 connected to the proxy itself).
		{"[::]:8080", "127.0.0.1:8080", true},
		{"[::]:8080", "0.0.0.0:8080", true},
		{"[::]:8080", "198.18.5.5:8080", false},
		{"[::ffff:127.0.0.1]:8080", "127.0.0.1:8080", true},
		{"[::1]:1080", "[::1]:1080", true},
		{"[::]:1080", "[::1]:1080", true},

		// Wildcard listeners take every local address of their family.
		{"127.0.0.5:8080", "0.0.0.0:8080", true},
		{"198.18.5.5:8080", "0.0.0.0:8080", true},
		{"198.18.5.6:8080", "0.0.0.0:8080", false},
		{"0.0.0.0:8080", "0.0.0.0:8080", true},
		{"[::1]:8080", "0.0.0.0:8080", false},
		{"198.18.5.5:8080", "[::]:8080", true},
		{"[::1]:8080", "[::]:8080", true},
		{"198.18.5.6:8080", "[::]:8080", false},
		{"198.18.5.5:9090", "[::]:8080", false},
	} {
		dst, l := netip.MustParseAddrPort(tc.dst), netip.MustParseAddrPort(tc.listener)
		if got := reaches(dst, l); got != tc.want {
			t.Errorf("reaches(%s, listener %s) = %v, want %v", dst, l, got, tc.want)
		}
	}
}

func TestHasVia(t *testing.T) {
	const me = "ocnet-0123456789ab"
	for _, tc := range []struct {
		via  []string
		want bool
	}{
		{nil, false},
		{[]string{"1.1 " + me}, true},
		{[]string{"1.0 fred, 1.1 " + me + " (ocnet)"}, true},
		{[]string{"1.1 proxy.example", "HTTP/1.1 " + me}, true},
		{[]string{"1.1 ocnet-ffffffffffff"}, false},
		{[]string{me}, false}, // the name must be the received-by part
	} {
		h := http.Header{"Via": tc.via}
		if got := hasVia(h, me); got != tc.want {
			t.Errorf("hasVia(%q) = %v, want %v", tc.via, got, tc.want)
		}
	}
}

// TestProxyLoop sends both proxies' flows back to their own listeners and
// checks the refusals: 508 on HTTP, "not allowed" on SOCKS5, with nothing
// dialled. A Via header with the proxy's own name is refused too.
func TestProxyLoop(t *testing.T) {
	f := newFixture(t, corpNet)

	for _, tc := range []struct{ name, send string }{
		{"connect to itself", "CONNECT " + f.httpAddr + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"connect to the socks proxy", "CONNECT " + f.socksAddr + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"forward to itself", "GET http://" + f.httpAddr + "/ HTTP/1.1\r\nHost: " +
			f.httpAddr + "\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := rawHTTP(t, f.httpAddr, tc.send)
			if code != http.StatusLoopDetected || !strings.Contains(body, "loop") {
				t.Errorf("got %d %q, want 508 naming the loop", code, body)
			}
		})
	}

	for _, dst := range []string{f.socksAddr, f.httpAddr} {
		t.Run("socks5 to "+dst, func(t *testing.T) {
			ap := netip.MustParseAddrPort(dst)
			ip, port := ap.Addr().As4(), ap.Port()
			req := append([]byte{5, SOCKSConnect, 0, 1}, ip[:]...)
			req = append(req, byte(port>>8), byte(port))
			if rep := socksRequest(t, f.socksAddr, req); rep != repNotAllowed {
				t.Errorf("reply %d (%s), want not allowed", rep, replyText(rep))
			}
		})
	}
	t.Run("socks5 to [::] on its port", func(t *testing.T) {
		port := netip.MustParseAddrPort(f.socksAddr).Port()
		req := append([]byte{5, SOCKSConnect, 0, 4}, make([]byte, 16)...)
		req = append(req, byte(port>>8), byte(port))
		if rep := socksRequest(t, f.socksAddr, req); rep != repNotAllowed {
			t.Errorf("reply %d (%s), want not allowed", rep, replyText(rep))
		}
	})
	if used := f.direct.used(); len(used) != 0 {
		t.Errorf("loops were dialled %d times, first %q", len(used), used[0])
	}

	// The Via mark: learn the proxy's name from a forwarded request,
	// then send it back as if through another proxy.
	var via string
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		via = strings.Join(r.Header.Values("Via"), ", ")
	}))
	defer origin.Close()
	get := "GET " + origin.URL + "/ HTTP/1.1\r\nHost: x\r\n"
	if code, _ := rawHTTP(t, f.httpAddr, get+"Via: 1.0 other\r\n\r\n"); code != http.StatusOK {
		t.Fatalf("plain forward: %d", code)
	}
	name, ok := strings.CutPrefix(via, "1.0 other, 1.1 ")
	if !ok || !strings.HasPrefix(name, "ocnet-") {
		t.Fatalf("origin saw Via %q, want the client's entry then ours", via)
	}
	code, body := rawHTTP(t, f.httpAddr, get+"Via: 1.1 "+name+"\r\n\r\n")
	if code != http.StatusLoopDetected || !strings.Contains(body, name) {
		t.Errorf("request with our own Via: %d %q, want 508", code, body)
	}
}

// TestForwardLoop: "-L port:127.0.0.1:port" closes each connection
// instead of dialling itself.
func TestForwardLoop(t *testing.T) {
	ln := listen(t)
	fw := Forward{Listen: ln.Addr().String(), Target: ln.Addr().String()}
	d := &recordingDialer{}
	pol := &split.Policy{Include: []netip.Prefix{netip.MustParsePrefix(corpNet)}}
	s := &Server{Router: &Router{Policy: pol, Tunnel: d, Direct: d}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.ServeForward(ctx, ln, fw) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("read %d, %v; want EOF", n, err)
	}
	if used := d.used(); len(used) != 0 {
		t.Errorf("the forward dialled itself %d times", len(used))
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeForward returned %v", err)
	}
}

// TestAddSelfRemove: a listener's address stops counting once removed.
func TestAddSelfRemove(t *testing.T) {
	var r Router
	a := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	rm1, rm2 := r.AddSelf(a), r.AddSelf(a)
	rm1()
	rm1() // a second call does nothing
	if r.checkLoop("127.0.0.1:8080") == nil {
		t.Fatal("one registration left, but no loop seen")
	}
	rm2()
	if err := r.checkLoop("127.0.0.1:8080"); err != nil {
		t.Fatalf("all removed, but %v", err)
	}
	if len(r.self.addrs) != 0 {
		t.Errorf("left over: %v", r.self.addrs)
	}
}

// rawHTTP sends one raw request to the proxy and returns the answer.
func rawHTTP(t *testing.T, proxyAddr, send string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, send)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// socksRequest greets with no authentication, sends req and returns the
// reply code.
func socksRequest(t *testing.T, socksAddr string, req []byte) byte {
	t.Helper()
	c, err := net.Dial("tcp", socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(append([]byte{5, 1, 0}, req...))
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, 0} {
		t.Fatalf("method selection %v, %v", sel, err)
	}
	var rep [3]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatal(err)
	}
	return rep[1]
}
