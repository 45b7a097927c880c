package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ocnet/ocnet/split"
)

// failDialer refuses every dial and remembers the destinations.
type failDialer struct{ dsts []string }

func (f *failDialer) DialContext(_ context.Context, _, addr string) (net.Conn, error) {
	f.dsts = append(f.dsts, addr)
	return nil, errors.New("refused by test")
}

func TestRouterErrors(t *testing.T) {
	incl := &split.Policy{Include: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}

	tests := []struct {
		name      string
		router    *Router
		network   string
		addr      string
		wantErr   error
		wantText  []string
		wantDials []string
	}{
		{"tunnel path named", &Router{Policy: incl, Tunnel: &failDialer{}},
			"tcp", "10.1.2.3:443", nil,
			[]string{"proxy: dial 10.1.2.3:443", "via tunnel", "refused by test"},
			[]string{"10.1.2.3:443"}},
		{"direct path named", &Router{Policy: incl, Direct: &failDialer{}},
			"tcp", "192.0.2.1:80", nil,
			[]string{"192.0.2.1:80 via direct"}, []string{"192.0.2.1:80"}},
		{"nil policy is full tunnel", &Router{Tunnel: &failDialer{}},
			"tcp", "192.0.2.1:80", nil, []string{"via tunnel"}, []string{"192.0.2.1:80"}},
		{"no tunnel", &Router{Policy: incl}, "tcp", "10.0.0.1:22",
			ErrNoTunnel, []string{"10.0.0.1:22 via tunnel"}, nil},
		{"bad address", &Router{}, "tcp", "no-port", nil,
			[]string{"proxy: dial no-port"}, nil},
		{"bad port", &Router{}, "tcp", "10.0.0.1:http", nil,
			[]string{"bad port"}, nil},
		{"family mismatch", &Router{Tunnel: &failDialer{}}, "tcp6", "10.0.0.1:80", nil,
			[]string{"no tcp6 address"}, nil},
		{"mapped address unmapped", &Router{Policy: incl, Tunnel: &failDialer{}},
			"tcp", "[::ffff:10.0.0.9]:80", nil, []string{"via tunnel"}, []string{"10.0.0.9:80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tt.router.DialContext(t.Context(), tt.network, tt.addr)
			if err == nil {
				conn.Close()
				t.Fatal("DialContext succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErr)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			var dialed []string
			for _, d := range []Dialer{tt.router.Tunnel, tt.router.Direct} {
				if fd, ok := d.(*failDialer); ok {
					dialed = append(dialed, fd.dsts...)
				}
			}
			if !slices.Equal(dialed, tt.wantDials) {
				t.Errorf("dialed %v, want %v", dialed, tt.wantDials)
			}
			if st := tt.router.Stats(); st.Failed != 1 {
				t.Errorf("Stats().Failed = %d, want 1", st.Failed)
			}
		})
	}
}

func TestMatchFamily(t *testing.T) {
	ips := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}
	tests := []struct {
		network string
		want    []netip.Addr
	}{
		{"tcp", ips},
		{"tcp4", ips[:1]},
		{"tcp6", ips[1:]},
		{"udp6", ips[1:]},
	}
	for _, tt := range tests {
		t.Run(tt.network, func(t *testing.T) {
			if got := matchFamily(tt.network, ips); !slices.Equal(got, tt.want) {
				t.Errorf("matchFamily(%s) = %v, want %v", tt.network, got, tt.want)
			}
		})
	}
}

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{
		"Connection":          {"close, X-Custom"},
		"X-Custom":            {"1"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Authorization": {"Basic c2VjcmV0"},
		"Proxy-Foo":           {"1"},
		"Te":                  {"trailers"},
		"Transfer-Encoding":   {"chunked"},
		"Upgrade":             {"websocket"},
		"Accept":              {"*/*"},
		"Authorization":       {"Bearer kept-for-origin"},
	}
	removeHopHeaders(h)

	var left []string
	for k := range h {
		left = append(left, k)
	}
	slices.Sort(left)
	if want := []string{"Accept", "Authorization"}; !slices.Equal(left, want) {
		t.Errorf("headers left %v, want %v", left, want)
	}
}
