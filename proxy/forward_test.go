package proxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseForward(t *testing.T) {
	tests := []struct {
		spec, listen, target string
	}{
		{"8022:build.corp.example:22", "127.0.0.1:8022", "build.corp.example:22"},
		{"127.0.0.2:8022:10.0.0.5:22", "127.0.0.2:8022", "10.0.0.5:22"},
		{"localhost:8022:h:22", "localhost:8022", "h:22"},
		{"[::1]:8022:[fd00::22]:22", "[::1]:8022", "[fd00::22]:22"},
		{"8022:[fd00::22]:22", "127.0.0.1:8022", "[fd00::22]:22"},
		{"*:8022:h:22", ":8022", "h:22"},
		{":8022:h:22", ":8022", "h:22"},
		{"0:h:22", "127.0.0.1:0", "h:22"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			f, err := ParseForward(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if f.Listen != tt.listen || f.Target != tt.target {
				t.Errorf("= %+v, want listen %s target %s", f, tt.listen, tt.target)
			}
		})
	}

	bad := []struct{ spec, why string }{
		{"", "want [addr:]port:host:hostport"},
		{"8022", "want [addr:]port:host:hostport"},
		{"8022:h", "want [addr:]port:host:hostport"},
		{"a:b:8022:h:22", "want [addr:]port:host:hostport"},
		{"8022:fd00::22:22", "want [addr:]port:host:hostport"},
		{"x:h:22", "listen port"},
		{"70000:h:22", "listen port"},
		{"-1:h:22", "listen port"},
		{"8022:h:0", "target port"},
		{"8022:h:ssh", "target port"},
		{"8022::22", "empty target host"},
		{"8022:h h:22", "not a host name"},
		{"8022:/tmp/sock:22", "not a host name"},
		{"a/b:8022:h:22", "listen address"},
		{"[::1:8022:h:22", "'['"},
		{"::1]:8022:h:22", "']'"},
		{"[::1]x:8022:h:22", "']'"},
		{"8022:h:22:", "listen port"},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.spec, func(t *testing.T) {
			_, err := ParseForward(tt.spec)
			if !errors.Is(err, ErrBadForward) || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("error %v, want ErrBadForward mentioning %q", err, tt.why)
			}
		})
	}
}

// TestServeForward forwards a local port to an echo server through the
// Router and checks the flow and the half-close.
func TestServeForward(t *testing.T) {
	echo := startEcho(t)
	_, port, _ := net.SplitHostPort(echo)
	f, err := ParseForward("0:" + corpIP + ":" + port)
	if err != nil {
		t.Fatal(err)
	}
	lns, err := ListenForwards([]Forward{f})
	if err != nil {
		t.Fatal(err)
	}

	d := &appDialer{}
	s := &Server{Router: &Router{Tunnel: d}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.ServeForward(ctx, lns[0], f) }()

	for range 2 {
		c, err := net.Dial("tcp", lns[0].Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "through the forward")
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("after half-close read %d, %v; want EOF", n, err)
		}
		c.Close()
	}
	if got := d.seen(); len(got) != 2 || got[0] != "tcp "+corpIP+":"+port+" " {
		t.Errorf("router dials %q", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeForward returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeForward did not stop")
	}
}

func TestListenForwardsCleansUp(t *testing.T) {
	busy := listen(t)
	defer busy.Close()
	fs := []Forward{{Listen: "127.0.0.1:0", Target: "h:1"}, {Listen: busy.Addr().String(), Target: "h:2"}}
	if _, err := ListenForwards(fs); err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("ListenForwards on a busy port: %v", err)
	}
}

// TestListenForwardToItself: "-L 9001:localhost:9001" is refused when it
// starts, not discovered one connection at a time.
func TestListenForwardToItself(t *testing.T) {
	free := listen(t)
	port := strconv.Itoa(free.Addr().(*net.TCPAddr).Port)
	free.Close()

	for _, target := range []string{"127.0.0.1:" + port, "localhost:" + port,
		"0.0.0.0:" + port} {
		fs := []Forward{{Listen: "127.0.0.1:" + port, Target: target}}
		lns, err := ListenForwards(fs)
		if err == nil {
			for _, l := range lns {
				l.Close()
			}
			t.Errorf("-L to %s on its own port: accepted", target)
			continue
		}
		if !strings.Contains(err.Error(), "own listening address") {
			t.Errorf("-L to %s: %v", target, err)
		}
	}

	fs := []Forward{{Listen: "127.0.0.1:" + port, Target: "127.0.0.2:" + port}}
	lns, err := ListenForwards(fs)
	if err != nil {
		t.Fatalf("-L to another address on the same port: %v", err)
	}
	for _, l := range lns {
		l.Close()
	}
}
