package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/internal/fakehead"
	"github.com/ocnet/ocnet/session"
	"github.com/ocnet/ocnet/trust"
)

// TestOnDemandWrongPassword: a password the headend refuses, read from
// stdin where no person can answer again, ends ocnet --on-demand at the
// first flow with the login's message and status 3, as a plain connect
// does; it used to keep serving a proxy that failed every flow.
func TestOnDemandWrongPassword(t *testing.T) {
	h := startHead(t)
	socks := freePort(t)
	setStdin(t, "wrong\n")

	done := make(chan error, 1)
	go func() {
		done <- runCmd(context.Background(), "connect", "--on-demand", "--passwd-on-stdin",
			"--user", "alice", "--servercert", pinOf(t, h), "--socks", socks,
			"--http-proxy", "", "--control", "", h.URL().String())
	}()
	waitListen(t, socks)

	rep, err := socksConnect(socks, netip.AddrPortFrom(fakehead.CorpHost, 7))
	if err == nil && rep == 0 {
		t.Fatal("the flow went through with a wrong password")
	}
	select {
	case err := <-done:
		if code := exitCode(err); code != exitAuth {
			t.Fatalf("exit status %d, want 3 (%v)", code, err)
		}
		if !strings.Contains(err.Error(), "login") || strings.Contains(err.Error(), "wrong") {
			t.Errorf("message %q: want the login's, without the password", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ocnet still running after the headend refused the password")
	}
}

// TestExitStatusBannerDeclined: a declined banner is status 3 (the
// login's terms were refused), interrupted at the prompt or answered no.
func TestExitStatusBannerDeclined(t *testing.T) {
	for _, e := range []error{errBannerDeclined{}, errBannerDeclined{interrupted: true}} {
		err := errors.Join(client.ErrNotAccepted, e)
		if code := exitCode(err); code != exitAuth {
			t.Errorf("%v: exit status %d, want 3", err, code)
		}
	}
}

// TestOnDemandBanner: without a person the first bring-up logs the banner
// (it is never a prompt), later ones log it only when it changed.
func TestOnDemandBanner(t *testing.T) {
	var logged []string
	accept := onDemandBanner(context.Background(), true, func() string { return "" },
		newTestLogger(func(msg string) { logged = append(logged, msg) }))
	for _, b := range []string{"terms v1", "terms v1", "terms v2"} {
		if err := accept(&session.Config{Banner: b}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"banner", "banner changed"}
	if strings.Join(logged, ",") != strings.Join(want, ",") {
		t.Errorf("logged %q, want %q", logged, want)
	}
}

func startHead(t *testing.T) *fakehead.Headend {
	t.Helper()
	h, err := fakehead.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// pinOf is the headend's --servercert value.
func pinOf(t *testing.T, h *fakehead.Headend) string {
	t.Helper()
	conn, err := tls.Dial("tcp", h.Addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return trust.Pin(conn.ConnectionState().PeerCertificates[0])
}

// freePort is a loopback address nothing listens on, most likely.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListen(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

// socksConnect asks a SOCKS5 proxy for a CONNECT to dst and returns the
// reply code.
func socksConnect(proxyAddr string, dst netip.AddrPort) (byte, error) {
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	req := []byte{5, 1, 0, 5, 1, 0, 1}
	ip := dst.Addr().As4()
	req = append(req, ip[:]...)
	req = binary.BigEndian.AppendUint16(req, dst.Port())
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	rep := make([]byte, 12)
	if _, err := io.ReadFull(c, rep); err != nil {
		return 0, err
	}
	return rep[3], nil
}

// newTestLogger calls seen with the message of every record.
func newTestLogger(seen func(msg string)) *slog.Logger {
	return slog.New(msgHandler{seen})
}

type msgHandler struct{ seen func(string) }

func (h msgHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h msgHandler) Handle(_ context.Context, r slog.Record) error {
	h.seen(r.Message)
	return nil
}
func (h msgHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h msgHandler) WithGroup(string) slog.Handler      { return h }
