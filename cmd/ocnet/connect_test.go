package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocnet/ocnet/control"
	"github.com/ocnet/ocnet/proxy"
	"github.com/ocnet/ocnet/session"
)

// TestCookieHint: a refused cookie is an authentication failure (3) with
// advice that fits where the cookie came from; other connect errors pass
// untouched. (Refused on reconnect, with no re-login, it is exit 6: see
// client.ErrSessionGone.)
func TestCookieHint(t *testing.T) {
	refused := fmt.Errorf("%w (HTTP 401: Cookie is not acceptable)", session.ErrCookieRejected)
	busy := &session.ConnectError{Status: 503, Reason: "Server configuration error"}

	for _, tc := range []struct {
		name      string
		err       error
		fromStdin bool
		wantCode  int
		wantText  string
	}{
		{"stdin cookie", refused, true, exitAuth, "--authenticate"},
		{"fresh cookie", refused, false, exitAuth, "just issued"},
		{"server busy", busy, true, exitNetwork, "Server configuration error"},
		{"closed mid-CONNECT", fmt.Errorf("session: read connect reply: %w: %w",
			session.ErrHeadendClosed, io.ErrUnexpectedEOF), true, exitNetwork, "closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := cookieHint(tc.err, tc.fromStdin)
			if got := exitCode(err); got != tc.wantCode {
				t.Errorf("exit code %d, want %d (%v)", got, tc.wantCode, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("message %q lacks %q", err, tc.wantText)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("hint lost the cause: %v", err)
			}
		})
	}
}

// TestServerURLUser: "user@" in the server URL stands in for --user, a
// password there is refused without being repeated, and the URL handed on
// never carries user info.
func TestServerURLUser(t *testing.T) {
	const secret = "s3cr3t-pw"
	for _, tc := range []struct {
		name     string
		raw      string
		flagUser string
		wantUser string
		wantErr  string // "" = no error
	}{
		{"plain", "https://vpn.example.com/", "", "", ""},
		{"user in URL", "https://alice@vpn.example.com/", "", "alice", ""},
		{"no scheme", "alice@vpn.example.com:8443", "", "alice", ""},
		{"escaped user", "https://alice%40corp@vpn.example.com/", "", "alice@corp", ""},
		{"empty user", "https://@vpn.example.com/", "bob", "bob", ""},
		{"flag only", "https://vpn.example.com/", "bob", "bob", ""},
		{"both agree", "https://alice@vpn.example.com/", "alice", "alice", ""},
		{"both differ", "https://alice@vpn.example.com/", "bob", "", "disagree"},
		{"password", "https://alice:" + secret + "@vpn.example.com/", "", "",
			"--passwd-on-stdin"},
		{"password no scheme", "alice:" + secret + "@vpn.example.com", "", "",
			"holds a password"},
		{"empty password", "https://alice:@vpn.example.com/", "", "", "holds a password"},
		{"password, bad port", "https://alice:" + secret + "@vpn.example.com:x/", "", "",
			"invalid port"},
		{"password, http", "http://alice:" + secret + "@vpn.example.com/", "", "",
			"password"},
		{"password, extra slashes", "//alice:" + secret + "@vpn.example.com/", "", "",
			"has no host"},
		{"password, extra slashes, ftp", "ftp:////alice:" + secret + "@vpn.example.com/",
			"", "", "only https"},
		{"password, bad escape", "https://alice:" + secret[:2] + "%zz@vpn.example.com/",
			"", "", "invalid %-escape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, urlUser, err := session.ParseServerURL(tc.raw)
			var user string
			if err == nil {
				user, err = pickUser(tc.flagUser, urlUser)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) ||
					strings.Contains(err.Error(), "%zz") {
					t.Errorf("message repeats the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if user != tc.wantUser {
				t.Errorf("user %q, want %q", user, tc.wantUser)
			}
			if u.User != nil || strings.Contains(u.String(), "@") {
				t.Errorf("URL handed on has user info: %s", u)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://a:b@vpn.example.com/x@y": "https://xxxxx@y", // hides too much, safely
		"https:/alice:pw@vpn.example.com": "https:/xxxxx@vpn.example.com",
		"//://:pw@":                       "//xxxxx@",
		"a:b@c@vpn.example.com":           "xxxxx@vpn.example.com",
		"https://vpn.example.com/?u=a@b":  "https://vpn.example.com/?u=a@b",
		"corp0":                           "corp0",
		"https:////a:b@vpn.example.com/":  "https:////xxxxx@vpn.example.com/",
	} {
		if got := session.RedactURL(in); got != want {
			t.Errorf("session.RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckLocalAuthenticate: --authenticate opens no listener, so a busy
// proxy port (another ocnet running) must not fail it; a plain connect
// still reports the port.
func TestCheckLocalAuthenticate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	f := connectFlags{socks: ln.Addr().String(), authenticate: true}
	if err := checkLocal(f, proxy.Options{}); err != nil {
		t.Errorf("--authenticate with a busy --socks port: %v", err)
	}
	f.authenticate = false
	if err := checkLocal(f, proxy.Options{}); err == nil ||
		!strings.Contains(err.Error(), "--socks") {
		t.Errorf("connect with a busy --socks port: %v, want an error naming --socks", err)
	}
}

// TestDialAheadSilentHeadend: a headend that takes the TCP connection and
// never answers TLS holds neither a failed login's exit (close, at once)
// nor the CONNECT (get, at most dialAheadTimeout). Both waited for ever.
func TestDialAheadSilentHeadend(t *testing.T) {
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
	dialAhead(t.Context(), u, &tls.Config{}).close()
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("close took %v", took)
	}

	saved := dialAheadTimeout
	dialAheadTimeout = 200 * time.Millisecond
	defer func() { dialAheadTimeout = saved }()
	begin = time.Now()
	if c := dialAhead(t.Context(), u, &tls.Config{}).get(); c != nil {
		t.Error("get returned a connection from a silent headend")
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("get took %v", took)
	}
}

// TestCheckLocalControl: a --control path another ocnet serves is found
// before the login, not after the tunnel is up.
func TestCheckLocalControl(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl", "ocnet.sock")
	stop, err := control.Serve(t.Context(), path, func() any { return "ok" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	err = checkLocal(connectFlags{control: path}, proxy.Options{})
	if err == nil || !strings.Contains(err.Error(), "another ocnet") {
		t.Errorf("checkLocal with a busy --control: %v", err)
	}
	if err := checkLocal(connectFlags{control: path + ".2"}, proxy.Options{}); err != nil {
		t.Errorf("checkLocal with a free --control: %v", err)
	}
}
