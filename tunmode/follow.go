package tunmode

// After a reconnect the headend may hand out other DNS servers, domains,
// routes or MTU. The client has already taken the policy and the DNS
// servers over (the host stack's resolver shares the client's); what is
// the TUN's own is done here: the resolver addresses answered on port 53,
// the host-facing Router's policy and the MTU of the stack and the
// device. The host's routes and resolv.conf follow through the script
// (Script.Reconnect).

import (
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/ocnet/ocnet/client"
	"github.com/ocnet/ocnet/session"
)

// running is what Reconfigure needs of a running engine.
type running struct {
	mu  sync.Mutex // held by Reconfigure; guards mtu
	dev tun.Device
	c   *client.Client
	hs  *hostStack
	o   Options
	mtu int // the device's, as last set
}

// Reconfigure makes a running engine follow the configuration cfg that a
// reconnected tunnel came back with; call it from client.Options.
// OnReconnect, before the host configuration is redone. It does nothing
// before Run or after it. The error says what could not be followed (the
// device's MTU needs CAP_NET_ADMIN); the rest is followed anyway.
func (e *Engine) Reconfigure(cfg *session.Config) error {
	r := e.run.Load()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	if r.o.DNS == nil {
		r.hs.setDNS(cfg.DNS)
	}
	r.hs.router.SetPolicy(r.c.Router().CurrentPolicy())

	mtu := r.c.MTU()
	if mtu == r.mtu {
		return nil
	}
	r.hs.ep.SetMTU(uint32(mtu))
	if err := SetDeviceMTU(r.dev, mtu); err != nil {
		return fmt.Errorf("tunmode: device MTU %d: %w", mtu, err)
	}
	r.mtu = mtu
	return nil
}

// SetDeviceMTU sets the device's MTU, unless it has it already: through
// the device when it offers a way (devices of tests and embedders), else
// with SIOCSIFMTU on its name, as "ip link set mtu" does. The script sets
// it too when it runs with reason=connect, but not without a script or
// with reason=reconnect.
func SetDeviceMTU(dev tun.Device, mtu int) error {
	if cur, err := dev.MTU(); err == nil && cur == mtu {
		return nil
	}
	if d, ok := dev.(interface{ SetMTU(int) error }); ok {
		return d.SetMTU(mtu)
	}
	name, err := dev.Name()
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint32(uint32(mtu))
	return unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr)
}

// setDNS makes addrs the resolver addresses the host stack answers.
func (h *hostStack) setDNS(addrs []netip.Addr) {
	a := append([]netip.Addr(nil), addrs...)
	h.dns.Store(&a)
}

// dnsAddrs returns the resolver addresses the host stack answers now.
func (h *hostStack) dnsAddrs() []netip.Addr { return *h.dns.Load() }
