package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// Loops: a flow sent straight back to one of the proxy's own listeners
// (CONNECT 127.0.0.1:8080 to the HTTP proxy on 127.0.0.1:8080, a SOCKS5
// request for its own port, a name that resolves there) would be accepted
// by the proxy, which would dial it again, and so on until file
// descriptors run out. Two guards stop that:
//
//   - the Router refuses a direct dial to an address a listener of its
//     own serves, after resolution, so names such as localhost count;
//   - the HTTP proxy marks what it forwards with a Via header naming
//     itself, and refuses a request that already carries it: a loop
//     through another proxy or a port forward that leads back.

// ErrLoop means a flow's destination is the proxy itself.
var ErrLoop = errors.New("proxy: loop: the destination is this proxy itself")

// selfAddrs holds the addresses the Router's listeners serve. It is safe
// for concurrent use.
type selfAddrs struct {
	mu    sync.Mutex
	addrs []netip.AddrPort // one entry per registration; may repeat
}

// add registers a listener's address and returns the function that
// removes it again. Addresses that are not TCP or UDP are ignored.
func (s *selfAddrs) add(a net.Addr) (remove func()) {
	ap, ok := addrPortOf(a)
	if !ok {
		return func() {}
	}
	s.mu.Lock()
	s.addrs = append(s.addrs, ap)
	s.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for i, x := range s.addrs {
				if x == ap {
					s.addrs = append(s.addrs[:i], s.addrs[i+1:]...)
					return
				}
			}
		})
	}
}

// loops says whether a connection to dst would reach one of the
// registered listeners.
func (s *selfAddrs) loops(dst netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.addrs {
		if reaches(dst, l) {
			return true
		}
	}
	return false
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case *net.UDPAddr:
		return a.AddrPort(), true
	}
	return netip.AddrPort{}, false
}

// reaches says whether the host's stack delivers a connection to dst to a
// socket listening on l, as Linux does it: a wildcard listener takes
// every local address of its family (an IPv6 one, dual-stack as Go opens
// it, IPv4 too), and a connection to the unspecified address goes to the
// loopback address. Go's dialer tries 0.0.0.0 after [::] fails (Go issue
// 18806), so [::] reaches IPv4 listeners on loopback too.
func reaches(dst, l netip.AddrPort) bool {
	if dst.Port() != l.Port() {
		return false
	}
	d, la := dst.Addr().Unmap().WithZone(""), l.Addr().Unmap().WithZone("")
	if d.IsUnspecified() {
		if d.Is6() {
			v4 := netip.AddrPortFrom(netip.IPv4Unspecified(), dst.Port())
			if reaches(v4, l) {
				return true
			}
			d = netip.IPv6Loopback()
		} else {
			d = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	}
	if la.IsUnspecified() {
		if la.Is4() && !d.Is4() {
			return false
		}
		return isLocalAddr(d)
	}
	return d == la
}

// interfaceAddrs lists the host's addresses; a variable for tests.
var interfaceAddrs = net.InterfaceAddrs

// isLocalAddr says whether ip is one of the host's own addresses. It asks
// the kernel each time: only a destination on a wildcard listener's port
// gets here, and addresses come and go.
func isLocalAddr(ip netip.Addr) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := interfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil &&
			p.Addr().Unmap().WithZone("") == ip {
			return true
		}
	}
	return false
}

// isLocalName says whether a name always means the host itself (RFC 6761
// reserves localhost and every name under it).
func isLocalName(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// AddSelf registers a listener's address as the Router's own, so that a
// flow sent back to it fails with ErrLoop instead of looping. Call the
// returned function when the listener closes. The proxy front ends in
// this package register theirs; others (a listener served elsewhere)
// may. It is safe for concurrent use.
func (r *Router) AddSelf(a net.Addr) (remove func()) {
	return r.self.add(a)
}

// checkLoop fails a direct dial to one of the Router's own listeners.
func (r *Router) checkLoop(dst string) error {
	ap, err := netip.ParseAddrPort(dst)
	if err == nil && r.self.loops(ap) {
		return ErrLoop
	}
	return nil
}

// checkLoopHost is checkLoop before resolution, for flows a Gate carries:
// an IP literal, or localhost on every loopback address.
func (r *Router) checkLoopHost(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // the dial itself reports it
	}
	hosts := []string{host}
	if isLocalName(host) {
		hosts = []string{"127.0.0.1", "::1"}
	}
	for _, h := range hosts {
		if err := r.checkLoop(net.JoinHostPort(h, port)); err != nil {
			return fmt.Errorf("proxy: dial %s: %w", addr, err)
		}
	}
	return nil
}

// viaName is the pseudonym the HTTP proxy gives itself in Via headers
// (RFC 9110 section 7.6.3): random, so that only this proxy's own mark
// counts and the header tells the origin nothing about the host.
func viaName() string {
	var b [6]byte
	rand.Read(b[:])
	return "ocnet-" + hex.EncodeToString(b[:])
}

// hasVia says whether h has passed through the proxy called name: any
// Via entry whose received-by part is name.
func hasVia(h http.Header, name string) bool {
	for _, v := range h.Values("Via") {
		for entry := range strings.SplitSeq(v, ",") {
			f := strings.Fields(entry)
			if len(f) >= 2 && strings.EqualFold(f[1], name) {
				return true
			}
		}
	}
	return false
}
