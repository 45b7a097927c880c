package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ocnet/ocnet/internal/fakehead"
	"github.com/ocnet/ocnet/session"
)

// start runs a fake headend, logs in and starts a client without proxies.
func start(t *testing.T, mod func(*Options)) (*fakehead.Headend, *Client) {
	t.Helper()
	h, err := fakehead.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)

	echo, err := h.Corp.ListenTCP(netip.AddrPortFrom(fakehead.CorpHost, 7))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cookie, err := h.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}

	o := Options{URL: h.URL(), TLS: h.TLS(), Cookie: cookie, NoDTLS: true, Reauth: h.Login}
	if mod != nil {
		mod(&o)
	}
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return h, c
}

// echoFlow opens a flow through the tunnel to the corporate echo server.
func echoFlow(t *testing.T, c *Client) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := c.Router().DialContext(ctx, "tcp", "198.18.120.10:7")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// roundTrip sends msg and waits for the echo.
func roundTrip(conn net.Conn, msg string, wait time.Duration) error {
	conn.SetDeadline(time.Now().Add(wait))
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo differs")
	}
	return nil
}

func TestFlowSurvivesReconnect(t *testing.T) {
	t.Parallel()
	h, c := start(t, nil)
	conn := echoFlow(t, c)
	if err := roundTrip(conn, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	h.DropTunnel()
	if err := roundTrip(conn, "after", 15*time.Second); err != nil {
		t.Fatalf("flow did not survive the reconnect: %v", err)
	}
	if n := c.Status().Reconnects; n != 1 {
		t.Fatalf("reconnects = %d, want 1", n)
	}
}

func TestNewAddressResetsOldFlows(t *testing.T) {
	t.Parallel()
	h, c := start(t, nil)
	conn := echoFlow(t, c)
	if err := roundTrip(conn, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	p := netip.MustParsePrefix("198.19.20.77/24")
	h.Address.Store(&p)
	h.DropTunnel()
	if err := roundTrip(conn, "after", 5*time.Second); err == nil {
		t.Fatal("a flow from the old address kept working")
	}
	if err := roundTrip(echoFlow(t, c), "new", 5*time.Second); err != nil {
		t.Fatalf("new flow: %v", err)
	}
	if got := c.Config().Address; got != p {
		t.Fatalf("address %v, want %v", got, p)
	}
}

func TestForgottenCookieLogsInAgain(t *testing.T) {
	t.Parallel()
	h, c := start(t, nil)
	conn := echoFlow(t, c)
	h.ForgetCookie()
	h.DropTunnel()
	if err := roundTrip(conn, "after", 15*time.Second); err != nil {
		t.Fatalf("flow after re-login: %v", err)
	}
	if n := h.Logins.Load(); n != 2 {
		t.Fatalf("logins = %d, want 2", n)
	}
}

func TestTerminateWithoutReauthEnds(t *testing.T) {
	t.Parallel()
	h, c := start(t, func(o *Options) { o.Reauth = nil })
	echoFlow(t, c)
	h.Terminate()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client still running after TERMINATE")
	}
	if !errors.Is(c.Err(), ErrSessionGone) {
		t.Fatalf("err = %v, want ErrSessionGone", c.Err())
	}
}

func TestReconnectTimeout(t *testing.T) {
	t.Parallel()
	h, c := start(t, func(o *Options) { o.ReconnectTimeout = 2 * time.Second })
	h.Refuse.Store(true)
	h.DropTunnel()
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("client still retrying past its bound")
	}
	if !errors.Is(c.Err(), ErrReconnectTimeout) {
		t.Fatalf("err = %v, want ErrReconnectTimeout", c.Err())
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("gave up after %v, bound was 2s", d)
	}
}

// TestFlappingHeadendBounded: a headend that accepts every CONNECT and
// ends the tunnel at once is one outage, paced by the backoff and ended
// by the reconnect bound, not a reconnect every few milliseconds for ever.
func TestFlappingHeadendBounded(t *testing.T) {
	t.Parallel()
	h, c := start(t, func(o *Options) { o.ReconnectTimeout = 3 * time.Second })
	h.Flap.Store(true)
	h.DropTunnel()
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("client still reconnecting past its bound (%d reconnects)",
			c.Status().Reconnects)
	}
	if !errors.Is(c.Err(), ErrReconnectTimeout) {
		t.Fatalf("err = %v, want ErrReconnectTimeout", c.Err())
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("gave up after %v, bound was 3s", d)
	}
	if n := c.Status().Reconnects; n > 4 {
		t.Fatalf("%d reconnects in 3 s: the backoff was not applied", n)
	}
}

func TestRekeyKeepsFlows(t *testing.T) {
	t.Parallel()
	h, _ := fakeheadWithRekey(t)
	_ = h
}

func fakeheadWithRekey(t *testing.T) (*fakehead.Headend, *Client) {
	t.Helper()
	var hh *fakehead.Headend
	h, c := start(t, nil)
	hh = h
	// The knob applies from the next CONNECT: force one.
	h.RekeyTime.Store(1)
	conn := echoFlow(t, c)
	h.DropTunnel()
	if err := roundTrip(conn, "x", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Status().Reconnects < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := c.Status().Reconnects; n < 2 {
		t.Fatalf("no rekey reconnect after the rekey time (reconnects %d)", n)
	}
	if err := roundTrip(conn, "after rekey", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return hh, c
}

// TestStartSilentHeadend: a headend that takes the TCP connection and
// never answers the TLS handshake fails Start after connectTimeout with an
// error saying so, instead of holding it for ever.
func TestStartSilentHeadend(t *testing.T) {
	saved := connectTimeout
	connectTimeout = 300 * time.Millisecond
	t.Cleanup(func() { connectTimeout = saved })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	u, _ := url.Parse("https://" + ln.Addr().String() + "/")
	begin := time.Now()
	c, err := Start(context.Background(), Options{URL: u, Cookie: "x", NoDTLS: true})
	if err == nil {
		c.Close()
		t.Fatal("Start succeeded against a silent headend")
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("Start took %v", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "within") {
		t.Errorf("err = %v, want a deadline naming the bound", err)
	}
}

// TestAcceptBeforeListeners: Accept sees the CONNECT's banner before any
// proxy listens; refusing it ends Start with ErrNotAccepted and logs the
// session out on the headend.
func TestAcceptBeforeListeners(t *testing.T) {
	t.Parallel()
	h, c := start(t, nil)
	o := c.o
	c.Close()
	waitFor(t, "the first client's logout", func() bool { return h.Logouts.Load() > 0 })
	logouts := h.Logouts.Load()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.SOCKSAddr = ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if o.Cookie, err = h.Login(ctx); err != nil {
		t.Fatal(err)
	}
	declined := errors.New("declined")
	var banner string
	o.Accept = func(cfg *session.Config) error {
		banner = cfg.Banner
		if conn, err := net.Dial("tcp", o.SOCKSAddr); err == nil {
			conn.Close()
			t.Error("the SOCKS5 proxy listens before the banner was accepted")
		}
		return declined
	}
	c2, err := Start(ctx, o)
	if err == nil {
		c2.Close()
		t.Fatal("Start went on after Accept refused")
	}
	if !errors.Is(err, ErrNotAccepted) || !errors.Is(err, declined) {
		t.Fatalf("err %v, want ErrNotAccepted wrapping the refusal", err)
	}
	if banner != "fake headend" {
		t.Errorf("Accept saw banner %q", banner)
	}
	waitFor(t, "a logout after the refusal", func() bool { return h.Logouts.Load() > logouts })
}

// waitFor polls ok for up to 5 s.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
