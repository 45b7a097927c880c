package tunmode

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// BoundDialer returns a dialer for flows the policy sends direct, bound
// (SO_BINDTODEVICE) to the device the host reaches gateway through: the
// TUN's own underlay. Bound, a socket only uses routes through that
// device, so a destination the TUN routes cannot loop back into it; a
// destination the underlay has no route for fails rather than loops.
// Call it before the host configuration adds its routes.
func BoundDialer(gateway netip.Addr) (*net.Dialer, string, error) {
	dev, err := deviceTowards(gateway)
	if err != nil {
		return nil, "", err
	}
	d := &net.Dialer{
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.BindToDevice(int(fd), dev)
			})
			return errors.Join(err, serr)
		},
	}
	return d, dev, nil
}

// deviceTowards names the device of the host's route to dst, found by
// connecting a UDP socket (which sends nothing) and looking for the
// device that holds the chosen source address.
func deviceTowards(dst netip.Addr) (string, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return "", fmt.Errorf("tunmode: route to %v: %w", dst, err)
	}
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	c.Close()

	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("tunmode: interfaces: %w", err)
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == src {
				return ifc.Name, nil
			}
		}
	}
	return "", fmt.Errorf("tunmode: no device holds %v, the source towards %v", src, dst)
}
