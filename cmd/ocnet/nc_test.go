package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocnet/ocnet/proxy"
)

func TestNCConnectFailureIsStatus1(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	err = runNC(t.Context(), ncFlags{socks: dead, timeout: 5 * time.Second}, "build.corp.example", "22")
	if err == nil {
		t.Fatal("runNC succeeded with no proxy")
	}
	if code := exitCode(err); code != exitOther {
		t.Errorf("exit status %d, want 1 (error %v)", code, err)
	}
	want := "cannot connect to build.corp.example:22 through SOCKS5 proxy " + dead
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

// TestNCPipe runs nc's copy loop through a real SOCKS5 proxy to an echo
// server that answers once the input ends.
func TestNCPipe(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	socks, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// A nil policy tunnels everything; the "tunnel" here is the host.
	go proxy.ServeSOCKS5(ctx, socks, &proxy.Router{Tunnel: &net.Dialer{}}, nil)

	c := &proxy.SOCKSClient{Server: socks.Addr().String(), App: "ssh"}
	conn, err := c.Dial(ctx, echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	in := strings.NewReader("SSH-2.0-test\r\n")
	done := make(chan error, 1)
	go func() { done <- pipe(ctx, conn, in, &out) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pipe did not end after the input ended and the peer closed")
	}
	if out.String() != "SSH-2.0-test\r\n" {
		t.Errorf("out = %q", out.String())
	}
}

func TestProxyFlags(t *testing.T) {
	dir := t.TempDir()
	passFile := filepath.Join(dir, "pass")
	os.WriteFile(passFile, []byte("s3cret\nignored\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)

	tests := []struct {
		name    string
		f       proxyFlags
		busy    bool
		listens []string
		wantErr string
	}{
		{"defaults", proxyFlags{}, false, []string{"127.0.0.1:1080", "127.0.0.1:8080"}, ""},
		{"user without password", proxyFlags{user: "a"}, false, nil, "needs --proxy-pass-file"},
		{"password without user", proxyFlags{passFile: passFile}, false, nil, "needs --proxy-user"},
		{"missing file", proxyFlags{user: "a", passFile: dir + "/nope"}, false, nil, "no such file"},
		{"empty file", proxyFlags{user: "a", passFile: empty}, false, nil, "no password line"},
		{"stdin busy", proxyFlags{user: "a", passFile: "-"}, true, nil, "already used"},
		{"exposed without auth", proxyFlags{}, false, []string{"0.0.0.0:1080"}, "beyond loopback"},
		{"exposed with auth", proxyFlags{user: "a", passFile: passFile}, false,
			[]string{"0.0.0.0:1080"}, ""},
		{"bad forward", proxyFlags{forwards: []string{"22"}}, false, nil, "bad -L forward"},
		{"forwards", proxyFlags{forwards: []string{"2222:h:22", "[::1]:0:h:80"}}, false, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.f.options(tt.busy, tt.listens...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.f.user != "" && (o.Auth == nil || o.Auth.Pass != "s3cret") {
				t.Errorf("Auth = %v, want the file's first line", o.Auth)
			}
			if len(o.Forwards) != len(tt.f.forwards) {
				t.Errorf("Forwards = %v", o.Forwards)
			}
		})
	}
	if _, err := (&proxyFlags{}).options(false, "0.0.0.0:1080"); !errors.Is(err, proxy.ErrAuthRequired) {
		t.Errorf("exposure error %v does not wrap ErrAuthRequired", err)
	}
}
