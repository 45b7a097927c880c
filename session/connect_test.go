package session

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCookie has the shape of an ocserv cookie: 32 bytes in base64.
const testCookie = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// headend is a loopback TLS server that records one CONNECT request and
// answers it with a canned reply.
type headend struct {
	ln    net.Listener
	roots *x509.CertPool
	reqC  chan string // the raw request head
	pskC  chan []byte // the server side of ExportPSK
	wg    sync.WaitGroup
}

// newCert makes a self-signed ECDSA certificate for 127.0.0.1.
func newCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vpn.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// startHeadend serves one connection, replying with reply (raw bytes,
// including the status line and any frames after the headers). An empty
// reply hangs up right after the request.
func startHeadend(t *testing.T, reply string) *headend {
	t.Helper()
	cert, pool := newCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	h := &headend{ln: ln, roots: pool, reqC: make(chan string, 1), pskC: make(chan []byte, 1)}
	t.Cleanup(func() {
		ln.Close()
		h.wg.Wait()
	})

	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))

		var head strings.Builder
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		h.reqC <- head.String()
		if reply == "" {
			return
		}

		tc := c.(*tls.Conn)
		st := tc.ConnectionState()
		psk, _ := st.ExportKeyingMaterial("EXPORTER-openconnect-psk", nil, 32)
		h.pskC <- psk

		io.WriteString(c, reply)
		// Wait for the client to hang up, so it can read everything.
		io.Copy(io.Discard, br)
	}()
	return h
}

// debugLogger logs everything, as text, into w.
func debugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (h *headend) options(t *testing.T, log *slog.Logger) Options {
	u, err := url.Parse("https://" + h.ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		URL:             u,
		TLS:             &tls.Config{RootCAs: h.roots},
		UserAgent:       "Open AnyConnect VPN Agent v9.01-ocnet",
		Cookie:          testCookie,
		Hostname:        "laptop1",
		BaseMTU:         1500,
		DTLSCipherSuite: "PSK-NEGOTIATE",
		Logger:          log,
	}
}

// reply200 is the ocserv reply followed by one CSTP DPD-REQ frame with a
// 4-byte payload, as if the server probed right away.
var reply200 = "HTTP/1.1 200 CONNECTED\r\n" +
	strings.ReplaceAll(ocservReply, "\n", "\r\n") +
	"X-Custom-Admin: hello\r\n" +
	"\r\n" +
	"STF\x01\x00\x04\x03\x00\xde\xad\xbe\xef"

func TestConnect(t *testing.T) {
	h := startHeadend(t, reply200)
	var logs bytes.Buffer
	o := h.options(t, debugLogger(&logs))
	o.PrevAddress = netip.MustParseAddr("198.19.0.50")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	tun, err := Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()

	t.Run("request", func(t *testing.T) {
		want := "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n" +
			"Host: " + h.ln.Addr().String() + "\r\n" +
			"User-Agent: Open AnyConnect VPN Agent v9.01-ocnet\r\n" +
			"Cookie: webvpn=" + testCookie + "\r\n" +
			"X-Transcend-Version: 1\r\n" +
			"X-Aggregate-Auth: 1\r\n" +
			"X-CSTP-Version: 1\r\n" +
			"X-CSTP-Hostname: laptop1\r\n" +
			"X-CSTP-Base-MTU: 1500\r\n" +
			"X-CSTP-MTU: 1391\r\n" +
			"X-CSTP-Address-Type: IPv6,IPv4\r\n" +
			"X-CSTP-Full-IPv6-Capability: true\r\n" +
			"X-CSTP-Address: 198.19.0.50\r\n" +
			"X-DTLS-CipherSuite: PSK-NEGOTIATE\r\n" +
			"\r\n"
		if got := <-h.reqC; got != want {
			t.Errorf("request =\n%s\nwant\n%s", got, want)
		}
	})

	t.Run("config", func(t *testing.T) {
		c := tun.Config
		if c.Address != pfx("198.19.0.50/24") || c.MTU != 1434 || c.DTLSMode() != "psk" {
			t.Errorf("config = %+v", c)
		}
		if c.Unknown.Get("X-Custom-Admin") != "hello" {
			t.Errorf("Unknown = %v", c.Unknown)
		}
	})

	t.Run("reader keeps the first frame", func(t *testing.T) {
		frame := make([]byte, 12)
		if _, err := io.ReadFull(tun.Reader, frame); err != nil {
			t.Fatal(err)
		}
		if want := []byte("STF\x01\x00\x04\x03\x00\xde\xad\xbe\xef"); !bytes.Equal(frame, want) {
			t.Errorf("frame = % x", frame)
		}
	})

	t.Run("psk", func(t *testing.T) {
		psk, err := tun.ExportPSK()
		if err != nil {
			t.Fatal(err)
		}
		if want := <-h.pskC; len(psk) != 32 || !bytes.Equal(psk, want) {
			t.Errorf("psk = %x, server has %x", psk, want)
		}
	})

	t.Run("logs", func(t *testing.T) {
		out := logs.String()
		if strings.Contains(out, testCookie) {
			t.Errorf("log leaks the cookie:\n%s", out)
		}
		if strings.Contains(out, fakeAppID[:16]) {
			t.Errorf("log leaks the DTLS App-ID:\n%s", out)
		}
		for _, want := range []string{"Cookie=[redacted]", "X-Dtls-App-Id=[redacted]",
			"unknown connect header", "X-Custom-Admin", "tunnel connected"} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
	})
}

func TestConnectRejected(t *testing.T) {
	tests := []struct {
		name  string
		reply string
		check func(t *testing.T, err error)
	}{
		{
			name:  "401 cookie rejected",
			reply: "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n",
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrCookieRejected) {
					t.Errorf("err = %v, want ErrCookieRejected", err)
				}
			},
		},
		{
			name: "503 with X-Reason",
			reply: "HTTP/1.1 503 Service Unavailable\r\n" +
				"X-Reason: Server configuration error\r\n\r\n",
			check: func(t *testing.T, err error) {
				var ce *ConnectError
				if !errors.As(err, &ce) || ce.Status != 503 ||
					ce.Reason != "Server configuration error" {
					t.Fatalf("err = %#v", err)
				}
				if !strings.Contains(err.Error(), "Server configuration error") {
					t.Errorf("message %q lacks the reason", err)
				}
			},
		},
		{
			// ocserv's answer to a cookie it cannot read, less the
			// access-denied alert it sends next: without the alert
			// it stays a retryable server error.
			name:  "bare 503 without alert",
			reply: "HTTP/1.1 503 Service Unavailable\r\n\r\n",
			check: func(t *testing.T, err error) {
				var ce *ConnectError
				if !errors.As(err, &ce) || ce.Status != 503 ||
					errors.Is(err, ErrCookieRejected) {
					t.Fatalf("err = %#v", err)
				}
			},
		},
		{
			name:  "404 without reason",
			reply: "HTTP/1.1 404 Not Found\r\n\r\n",
			check: func(t *testing.T, err error) {
				var ce *ConnectError
				if !errors.As(err, &ce) || ce.Status != 404 || ce.Reason != "Not Found" {
					t.Fatalf("err = %#v", err)
				}
			},
		},
		{
			name:  "200 with a bad MTU",
			reply: "HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 10.0.0.2\r\nX-CSTP-MTU: x\r\n\r\n",
			check: func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), "X-CSTP-MTU") {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name:  "not HTTP",
			reply: "STF\x01\x00\x00\x07\x00\r\n\r\n",
			check: func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), "not HTTP") {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name: "endless headers",
			reply: "HTTP/1.1 200 CONNECTED\r\n" +
				strings.Repeat("X-Pad: "+strings.Repeat("a", 100)+"\r\n", 1000),
			check: func(t *testing.T, err error) {
				if !errors.Is(err, errReplyTooLarge) {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name:  "connection closed",
			reply: "",
			check: func(t *testing.T, err error) {
				if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrHeadendClosed) {
					t.Errorf("err = %v", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startHeadend(t, tt.reply)
			var logs bytes.Buffer
			o := h.options(t, debugLogger(&logs))

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tun, err := Connect(ctx, o)
			if err == nil {
				tun.Close()
				t.Fatal("Connect succeeded")
			}
			tt.check(t, err)

			if strings.Contains(err.Error()+logs.String(), testCookie) {
				t.Errorf("cookie leaked into error or logs")
			}
		})
	}
}

// TestAccessDenied checks the test that tells ocserv's refusal of an
// unreadable cookie (a bare 503, then alert 49) from a busy headend. The
// alert is built here: a Go TLS server cannot be made to send it.
func TestAccessDenied(t *testing.T) {
	remote := func(a tls.AlertError) error {
		return fmt.Errorf("read: %w", &net.OpError{Op: "remote error", Err: a})
	}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"access denied from the peer", remote(49), true},
		{"another alert", remote(40), false},
		{"our own alert", &net.OpError{Op: "local error", Err: tls.AlertError(49)}, false},
		{"timeout", os.ErrDeadlineExceeded, false},
		{"eof", io.EOF, false},
		{"nil", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := isAccessDenied(tt.err); got != tt.want {
				t.Errorf("isAccessDenied(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}

	for _, tt := range []struct {
		status int
		hdr    http.Header
		want   bool
	}{
		{503, http.Header{}, true},
		{503, http.Header{"X-Reason": {"Server configuration error"}}, false},
		{503, http.Header{"Content-Length": {"0"}}, true},
		{401, http.Header{}, false},
		{500, http.Header{}, false},
	} {
		if got := bareUnavailable(tt.status, tt.hdr); got != tt.want {
			t.Errorf("bareUnavailable(%d, %v) = %v, want %v", tt.status, tt.hdr, got, tt.want)
		}
	}
}

func TestConnectCancel(t *testing.T) {
	// A server that stops half-way through its reply headers.
	h := startHeadend(t, "HTTP/1.1 200 CONNECTED\r\nX-CSTP-MTU: 1400\r\n")
	o := h.options(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()

	start := time.Now()
	_, err := Connect(ctx, o)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Connect took %v after its deadline", d)
	}
}

func TestBuildRequest(t *testing.T) {
	u := func(s string) *url.URL {
		p, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		o        Options
		wantHost string
		wantErr  string
	}{
		{"default port", Options{URL: u("https://vpn.example.com/"), Cookie: "c"},
			"vpn.example.com", ""},
		{"explicit 443", Options{URL: u("https://vpn.example.com:443/eng"), Cookie: "c"},
			"vpn.example.com", ""},
		{"other port", Options{URL: u("https://vpn.example.com:8443"), Cookie: "c"},
			"vpn.example.com:8443", ""},
		{"ipv6 literal", Options{URL: u("https://[2001:db8::1]/"), Cookie: "c"},
			"[2001:db8::1]", ""},
		{"ipv6 literal with port", Options{URL: u("https://[2001:db8::1]:4443/"), Cookie: "c"},
			"[2001:db8::1]:4443", ""},
		{"no cookie", Options{URL: u("https://vpn.example.com/")}, "", "cookie"},
		{"no url", Options{Cookie: "c"}, "", "URL"},
		{"cookie with CRLF", Options{URL: u("https://vpn.example.com/"),
			Cookie: "abc\r\nX-Evil: 1"}, "", "Cookie value contains a line break"},
		{"user agent with LF", Options{URL: u("https://vpn.example.com/"), Cookie: "c",
			UserAgent: "a\nb"}, "", "User-Agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := buildRequest(&tt.o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "X-Evil") {
					t.Errorf("error %q echoes the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.host != tt.wantHost {
				t.Errorf("Host = %q, want %q", r.host, tt.wantHost)
			}
			for _, h := range r.headers {
				if h.name == "X-DTLS-CipherSuite" || h.name == "X-DTLS-Master-Secret" {
					t.Errorf("unexpected %s without a DTLS offer", h.name)
				}
				if h.name == "X-CSTP-MTU" && h.value != "1297" {
					t.Errorf("default X-CSTP-MTU = %s, want 1406-109", h.value)
				}
			}
		})
	}
}

// TestConnectEarlyConn: a connection dialed ahead carries the CONNECT, and
// one the headend has since closed is replaced by a fresh dial.
func TestConnectEarlyConn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Run("used", func(t *testing.T) {
		// The headend accepts one connection only: a second dial would
		// hang until ctx ends.
		h := startHeadend(t, reply200)
		o := h.options(t, nil)
		conn, err := Dial(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		o.Conn = conn
		tun, err := Connect(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		defer tun.Close()
		if tun.Conn != conn {
			t.Error("Connect dialed again instead of using Options.Conn")
		}
	})

	t.Run("stale", func(t *testing.T) {
		cert, pool := newCert(t)
		ln, err := tls.Listen("tcp", "127.0.0.1:0",
			&tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		u, _ := url.Parse("https://" + ln.Addr().String() + "/")
		stale, err := Dial(ctx, Options{URL: u, TLS: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Fatal(err)
		}

		h := startHeadend(t, reply200)
		o := h.options(t, nil)
		o.Conn = stale
		tun, err := Connect(ctx, o)
		if err != nil {
			t.Fatalf("Connect over a closed early connection: %v", err)
		}
		defer tun.Close()
		if tun.Conn == stale {
			t.Error("tunnel runs over the closed connection")
		}
	})
}

// TestReadReplyClosed: a reply cut off anywhere before its blank line is
// ErrHeadendClosed, which ocnet reports as a network failure (exit 5).
func TestReadReplyClosed(t *testing.T) {
	for _, reply := range []string{
		"",
		"HTTP/1.1 200 CONN",
		"HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 198.19.9.9\r\n",
	} {
		_, _, _, err := readReply(bufio.NewReader(strings.NewReader(reply)))
		if !errors.Is(err, ErrHeadendClosed) {
			t.Errorf("reply %q: err = %v, want ErrHeadendClosed", reply, err)
		}
	}
	_, _, _, err := readReply(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\n\r\n")))
	if err != nil {
		t.Errorf("complete reply: %v", err)
	}
}
