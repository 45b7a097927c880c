package fuzz

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/ocnet/ocnet/proxy"
)

// FuzzForwardSpec feeds -L specifications to ParseForward. It must never
// panic; what it accepts must be a listen address and a target that
// net.SplitHostPort takes apart, with a target port of 1 to 65535, and
// every refusal must be ErrBadForward.
func FuzzForwardSpec(f *testing.F) {
	for _, s := range []string{
		"8022:build.corp.example:22", "127.0.0.1:8022:10.0.0.5:22",
		"[::1]:8022:[fd00::22]:22", "*:8080:intranet:80", ":0:h:1",
		"[::1:8022:h:22", "8022:h:ssh", "8022::22", "a:b:c:d:e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		fw, err := proxy.ParseForward(spec)
		if err != nil {
			if !errors.Is(err, proxy.ErrBadForward) {
				t.Fatalf("error %v is not ErrBadForward", err)
			}
			return
		}
		if _, lport, err := net.SplitHostPort(fw.Listen); err != nil || !isPort(lport, true) {
			t.Fatalf("accepted listen %q (%v)", fw.Listen, err)
		}
		host, port, err := net.SplitHostPort(fw.Target)
		if err != nil || host == "" || !isPort(port, false) {
			t.Fatalf("accepted target %q (%v)", fw.Target, err)
		}
	})
}

func isPort(s string, zeroOK bool) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n <= 65535 && (n > 0 || zeroOK && n == 0)
}

// FuzzHTTPProxyRequest reads a request head as the HTTP proxy's server
// does and classifies it. CONNECT and forwarded requests must name a
// host and a port of 1 to 65535; nothing may panic.
func FuzzHTTPProxyRequest(f *testing.F) {
	for _, s := range []string{
		"CONNECT intranet.corp.example:443 HTTP/1.1\r\nHost: intranet.corp.example:443\r\n\r\n",
		"CONNECT [fd00::1]:22 HTTP/1.1\r\nHost: [fd00::1]:22\r\n\r\n",
		"CONNECT intranet.corp.example HTTP/1.1\r\n\r\n",
		"CONNECT :0 HTTP/1.1\r\n\r\n",
		"GET http://intranet.corp.example/a?b=c HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://[fd00::1]:8080/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://user:pw@host:99999/ HTTP/1.1\r\n\r\n",
		"GET https://example.com/ HTTP/1.1\r\n\r\n",
		"GET /proxy.pac HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
		"HEAD /wpad.dat HTTP/1.0\r\n\r\n",
		"POST /proxy.pac HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
		"GET http:///nohost HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		kind, dst, err := proxy.ClassifyRequest(req)
		if err != nil {
			return
		}
		switch kind {
		case proxy.RequestConnect, proxy.RequestForward:
			host, port, err := net.SplitHostPort(dst)
			if err != nil || host == "" || !isPort(port, false) {
				t.Fatalf("%q classified as %d with destination %q (%v)", data, kind, dst, err)
			}
		case proxy.RequestPAC:
			if dst != "" {
				t.Fatalf("PAC request with destination %q", dst)
			}
		default:
			t.Fatalf("kind %d without an error", kind)
		}
	})
}

// FuzzSOCKSRequest reads SOCKS5 requests. An accepted request must have a
// "host:port" address whose host is an IP or a printable name.
func FuzzSOCKSRequest(f *testing.F) {
	for _, b := range [][]byte{
		{5, 1, 0, 1, 10, 0, 0, 1, 0, 22},
		{5, 1, 0, 3, 21, 'i', 'n', 't', 'r', 'a', 'n', 'e', 't', '.', 'c', 'o', 'r', 'p', '.',
			'e', 'x', 'a', 'm', 'p', 'l', 'e', 1, 187},
		{5, 3, 0, 1, 0, 0, 0, 0, 0, 0},
		append([]byte{5, 1, 0, 4}, append(netip.MustParseAddr("fd00::1").AsSlice(), 0, 80)...),
		{5, 1, 0, 3, 0, 0, 80},
		{5, 1, 0, 3, 255},
		{4, 1, 0, 1},
		{5, 1, 0, 9},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := proxy.ReadSOCKSRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(req.Addr)
		if err != nil || host == "" || !isPort(port, true) {
			t.Fatalf("request %v gave address %q (%v)", data, req.Addr, err)
		}
		if strings.ContainsAny(host, " \x00\r\n") {
			t.Fatalf("host %q has unprintable bytes", host)
		}
	})
}

// FuzzSOCKSUDP parses UDP ASSOCIATE datagrams. What is accepted must
// leave a payload that is a tail of the datagram, and re-encoding an IP
// destination must give back the same header.
func FuzzSOCKSUDP(f *testing.F) {
	f.Add(append(proxy.AppendSOCKSUDPHeader(nil, netip.MustParseAddrPort("10.0.0.53:53")), "query"...))
	f.Add(append(proxy.AppendSOCKSUDPHeader(nil, netip.MustParseAddrPort("[fd00::53]:53")), "q"...))
	f.Add([]byte{0, 0, 0, 3, 4, 'h', '.', 'e', 'x', 0, 53, 'q'})
	f.Add([]byte{0, 0, 1, 1, 10, 0, 0, 1, 0, 53})
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		dst, payload, err := proxy.ParseSOCKSUDP(data)
		if err != nil {
			return
		}
		if !bytes.HasSuffix(data, payload) {
			t.Fatalf("payload %q is not the datagram's tail", payload)
		}
		if ap, err := netip.ParseAddrPort(dst); err == nil && data[3] != 3 && !ap.Addr().Is4In6() {
			hdr := proxy.AppendSOCKSUDPHeader(nil, ap)
			if !bytes.Equal(hdr, data[:len(data)-len(payload)]) {
				t.Fatalf("header %x re-encodes as %x", data[:len(data)-len(payload)], hdr)
			}
		}
	})
}
